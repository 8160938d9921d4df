"""python -m app sub|pub: subscribe (one envelope per line, for jq) or publish, from a shell.

Exit status: 0 when done (sub: after --count messages), 1 on an error (an
error answer, an unreachable server, a refused token), 2 on bad arguments,
130 on Ctrl-C. Every error is one line on stderr, ``windsock: CODE: text``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any, Literal, NoReturn

__all__ = ["main"]

DEFAULT_URL = "http://127.0.0.1:8888"
# Before the first connection, an unreachable server is an error after this many attempts;
# once connected, the client reconnects for ever.
FIRST_ATTEMPTS = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"windsock: bad_arguments: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m app", description="The Windsock client: sub and pub.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub = commands.add_parser(
        "sub",
        help="print each message of the channels as one JSON envelope per line",
        description="Subscribe and print each message as one JSON envelope per line (resets too); "
        "reconnects and resumes by itself, losing nothing.",
    )
    sub.add_argument("channels", nargs="+", metavar="CHANNEL")
    sub.add_argument("--url", default=DEFAULT_URL, help=f"the server (default {DEFAULT_URL})")
    sub.add_argument(
        "--since",
        default=None,
        metavar="ID|0|latest",
        help="resume after this id on every channel (0: the whole history; latest: each channel's "
        "newest message, then live), or a cursor a=17,b=latest; default: from now on",
    )
    sub.add_argument("--transport", choices=["websocket", "sse"], default="websocket")
    sub.add_argument("--count", type=_positive, default=None, metavar="N", help="exit 0 after N messages")
    sub.add_argument("--token", default=None, metavar="T", help="the subscribe token (SUBSCRIBE_SECRET)")
    pub = commands.add_parser(
        "pub", help="publish one JSON value and print the answer", description="Publish over HTTP."
    )
    pub.add_argument("channel", metavar="CHANNEL")
    pub.add_argument("data", metavar="JSON", help="the data, as JSON: '{\"t\": 21.4}', 42, '\"text\"'")
    pub.add_argument("--url", default=DEFAULT_URL, help=f"the server (default {DEFAULT_URL})")
    pub.add_argument(
        "--key", default=os.environ.get("PUBLISH_KEY") or None, help="the PUBLISH_KEY (default: $PUBLISH_KEY)"
    )
    pub.add_argument(
        "--idempotency-key",
        default=None,
        metavar="K",
        help="run again with the same K, it publishes nothing and prints the first id with duplicate: true",
    )
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def _since(text: str | None) -> int | Literal["latest"] | dict[str, int | Literal["latest"]] | None:
    if text is None:
        return None
    try:
        if "=" not in text:
            return _start(text)
        result = {}
        for part in text.split(","):
            name, _, pos = part.partition("=")
            result[name] = _start(pos)
        return result
    except ValueError:
        raise _Bad(
            "bad_since", f"--since must be an id, 0, latest, or a cursor a=17,b=latest, not {text!r}"
        ) from None


def _start(text: str) -> int | Literal["latest"]:
    if text == "latest":
        return "latest"
    value = int(text)
    if value < 0:
        raise ValueError
    return value


class _Bad(Exception):
    """Bad arguments found after parsing: exit 2."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")


def _print(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _say(text: str) -> None:
    sys.stderr.write(f"windsock: {text}\n")
    sys.stderr.flush()


async def _sub(args: argparse.Namespace) -> int:
    from app.client import Client, ClientError, Message, Reset, ServerError, Status

    since = _since(args.since)
    try:
        client = Client(
            args.url, args.channels, since=since, transport=args.transport, token=args.token or None
        )
    except ClientError as exc:
        raise _Bad(exc.code, exc.message) from None
    received = 0
    been_live = False
    async with client:
        async for event in client:
            if isinstance(event, Message):
                _print(event.envelope())
                received += 1
                if args.count is not None and received >= args.count:
                    return 0
            elif isinstance(event, Reset):
                _print(event.envelope())
            elif isinstance(event, ServerError):
                _say(f"{event.code}: {event.message}" + (f" ({event.channel})" if event.channel else ""))
            elif isinstance(event, Status):
                if event.status == "live":
                    been_live = True
                    _say(f"live ({event.transport}, {client.url})")
                elif event.status == "reconnecting" and event.error is not None:
                    if not been_live and event.attempt >= FIRST_ATTEMPTS:
                        raise event.error
                    _say(f"reconnecting in {event.retry_in:.1f} s: {event.error}")
    return 0


def _pub(args: argparse.Namespace) -> int:
    from app.client import ClientError
    from app.client.sync import publish_answer

    try:
        data = json.loads(args.data)
    except ValueError as exc:
        raise _Bad("bad_json", f"the JSON argument is not JSON: {exc}") from None
    try:
        answer = publish_answer(args.url, args.channel, data, args.key, idempotency_key=args.idempotency_key)
    except ClientError as exc:
        if exc.code in ("bad_url", "bad_channel", "bad_json", "bad_idempotency_key"):
            raise _Bad(exc.code, exc.message) from None
        raise
    _print(answer)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from app.client import ClientError
    except ImportError as exc:  # websockets, httpx or httpx-sse missing
        _say(f"missing_dependency: {exc}; install the client: pip install 'windsock[client]'")
        return 2
    try:
        if args.command == "pub":
            return _pub(args)
        return asyncio.run(_sub(args))
    except _Bad as exc:
        _say(str(exc))
        return 2
    except ClientError as exc:
        _say(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader (head, say) has gone: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
