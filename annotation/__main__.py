"""``python -m annotation ...``: the researcher command line (see annotation/cli.py)."""

import sys

from annotation.cli import main

if __name__ == "__main__":
    sys.exit(main())
