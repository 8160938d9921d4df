"""python -m app [serve|ingest]: run one Windsock worker, or the ingest sources (see README.md).

python -m app sub|pub: the client's command line (app/client/cli.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from app.config import ConfigError, add_arguments, check_exposure, load_settings
from app.ingest import run_ingest
from app.logs import configure_logging
from app.namespaces import Namespaces
from app.server import run
from app.sources import check_sources


def main(argv: list[str] | None = None) -> int:
    args_given = sys.argv[1:] if argv is None else argv
    if args_given[:1] in (["sub"], ["pub"]):
        from app.client.cli import main as client_main  # needs the client extra; the server does not

        return client_main(args_given)
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Windsock: live JSON on named channels over WebSocket and SSE.",
        epilog="Every flag can also be set by the environment variable it names. "
        "The client: python -m app sub --help, python -m app pub --help.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["serve", "ingest"],
        default="serve",
        help="serve: a worker, running SOURCES too (the default); ingest: the sources and /healthz only",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the settings and exit: 0 if this command would start, else 2 and the reason",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(flags=args)
        check_sources(settings)
        Namespaces.from_settings(settings)
        check_exposure(settings, serves_api=args.command == "serve")
    except ConfigError as exc:
        print(f"windsock: {exc}", file=sys.stderr)
        return 2
    if args.check:
        return 0
    configure_logging(settings)
    try:
        asyncio.run(run_ingest(settings) if args.command == "ingest" else run(settings))
    except ConfigError as exc:  # found only on starting, such as a UDP port in use
        print(f"windsock: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
