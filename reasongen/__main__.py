"""``python -m reasongen ...``: see ``reasongen.cli``."""

import sys

from reasongen.cli import main

sys.exit(main())
