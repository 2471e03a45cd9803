"""``python -m reasongen.eval shapes [--model PATH] [--n N] [--seed S] [--recipe R] --out DIR``."""

import sys

from reasongen.eval.cli import main

sys.exit(main())
