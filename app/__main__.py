"""python -m app: run one Windsock worker (see README.md for the settings)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from app.config import ConfigError, add_arguments, load_settings
from app.server import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Windsock: live JSON on named channels over WebSocket and SSE.",
        epilog="Every flag can also be set by the environment variable it names.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(flags=args)
    except ConfigError as exc:
        print(f"windsock: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s {settings.worker_name} %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
