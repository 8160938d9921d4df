"""`make bench` runs this: the bench's entry point as a script (the bench itself is the package).

Run as a script, Python puts bench/ itself first on sys.path, where its
modules would shadow top-level ones and the package `bench` is not
importable; the checkout's root takes its place.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    from bench.cli import main

    sys.exit(main())
