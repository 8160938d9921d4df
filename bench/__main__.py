"""`python -m bench`: the same as `python bench/run.py` (see bench/__init__.py)."""

import sys

from bench.cli import main

sys.exit(main())
