"""``python -m reasongen.rewards score --rewards shapes,hps --images DIR [--prompts FILE]``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
