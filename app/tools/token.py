"""python -m app.tools.token: mint a subscribe token, as a backend would.

python -m app.tools.token --secret "$SUBSCRIBE_SECRET" --channel 'sensors.*' --ttl 3600
"""

from __future__ import annotations

import argparse
import os
import sys

from app.auth import mint_token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.tools.token", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--secret",
        default=os.environ.get("SUBSCRIBE_SECRET", ""),
        help="the workers' SUBSCRIBE_SECRET (default: from the environment)",
    )
    parser.add_argument(
        "--channel", action="append", required=True, help="channel glob the token allows (repeatable)"
    )
    parser.add_argument("--ttl", type=float, default=3600, help="seconds until it expires")
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("--secret or SUBSCRIBE_SECRET is required")
    print(mint_token(args.secret, args.channel, args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
