"""Settings, read once from the environment and command-line flags.

Every setting has an environment variable (``PORT``) and a matching flag
(``--port``); a flag wins over the environment, the environment over the
default. A bad value stops the program at start with one line naming the
variable, instead of failing later in some handler.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "Settings", "check_exposure", "is_loopback", "load_settings"]

STATIC_DIR = Path(__file__).parent / "static"


class ConfigError(Exception):
    """A setting has a value that cannot be used."""


def _setting(default: Any, help: str, *, lo: float | None = None, hi: float | None = None) -> Any:
    return field(default=default, metadata={"help": help, "lo": lo, "hi": hi})


@dataclass(frozen=True)
class Settings:
    """All of Windsock's settings; the environment variable is the upper-cased name."""

    # Serving.
    host: str = _setting("127.0.0.1", "address to bind (0.0.0.0 in containers)")
    port: int = _setting(8888, "HTTP port of this worker", lo=0, hi=65535)
    worker_id: str = _setting("", "name reported by /healthz (default: hostname:port)")
    static_dir: str = _setting(str(STATIC_DIR), "directory of the demo page served at /")
    log_level: str = _setting("INFO", "DEBUG, INFO, WARNING or ERROR")
    log_format: str = _setting("text", "text, or json: one JSON object per line (time, level, worker, event)")
    ops_interval: float = _setting(
        1.0, "seconds between this process's reports on the ops channel (ops page); 0: none", lo=0, hi=3600
    )
    shutdown_timeout: float = _setting(5.0, "seconds to drain connections on SIGTERM", lo=0, hi=600)

    # Broker and history.
    redis_url: str = _setting("", "redis://host:port/db for the Redis broker; empty = memory")
    redis_prefix: str = _setting("windsock", "prefix of every Redis key and pub/sub channel")
    history_size: int = _setting(100, "messages kept per channel", lo=1, hi=100_000)
    history_ttl: int = _setting(86_400, "seconds an idle channel's history lives (0 = forever)", lo=0)
    idempotency_window: int = _setting(
        300, "seconds a publish's Idempotency-Key is remembered per channel", lo=1, hi=86_400
    )
    unsubscribe_grace: float = _setting(
        2.0, "seconds a channel stays subscribed after its last local subscriber", lo=0, hi=3600
    )

    # Transports.
    heartbeat_interval: float = _setting(
        15.0, "seconds between SSE comments and WebSocket pings", lo=0.05, hi=3600
    )
    sse_retry_ms: int = _setting(2000, "reconnect delay sent to EventSource clients", lo=0)
    max_message_bytes: int = _setting(65_536, "largest accepted message or body", lo=16)
    max_queue_bytes: int = _setting(
        1_048_576, "outgoing bytes buffered per connection before it is dropped", lo=1024
    )
    max_channels: int = _setting(100, "channels one connection may subscribe to", lo=1)
    ws_deflate_level: int = _setting(
        0, "permessage-deflate for WebSocket clients that offer it: zlib level 1-9, 0 off", lo=0, hi=9
    )

    # Access.
    publish_key: str = _setting("", "if set, HTTP publishers need 'Authorization: Bearer KEY'")
    http_bind: str = _setting(
        "", "address clients reach this worker's HTTP on, where a port mapping binds for it; empty: HOST"
    )
    open_publish: bool = _setting(
        False, "true: allow keyless publishing on a non-loopback HTTP_BIND/HOST or UDP_BIND/UDP_HOST"
    )
    allowed_origins: tuple[str, ...] = _setting(
        (), "comma list of browser origins allowed for /ws and /events (default: same origin)"
    )
    client_publish: tuple[str, ...] = _setting(
        ("chat.*",), "comma list of channel globs WebSocket clients may publish to"
    )
    skip_unchanged: tuple[str, ...] = _setting(
        (), "comma list of channel globs where a publish equal to the latest data is skipped"
    )
    subscribe_secret: str = _setting(
        "", "if set, subscribing needs an HS256 JWT signed with it (claims: channels, exp)"
    )

    # Limits.
    client_rate: float = _setting(20.0, "frames per second a WebSocket client may send", lo=0.1)
    client_burst: int = _setting(50, "frames a WebSocket client may send in a burst", lo=1)
    max_sse_connections: int = _setting(10_000, "SSE streams one worker holds at most", lo=1)
    header_timeout: float = _setting(
        10.0, "seconds a client may take to send its request headers (slowloris)", lo=0.1
    )

    # Ingest (app/sources/): where live data comes from.
    sources: tuple[str, ...] = _setting(
        ("udp", "demo", "pollers"),
        "comma list of sources this process runs: udp, demo, pollers (empty: none)",
    )
    udp_host: str = _setting("127.0.0.1", "address of the UDP sensor listener")
    udp_port: int = _setting(9999, "UDP port for sensor datagrams (0: any free port)", lo=0, hi=65535)
    udp_token: str = _setting("", "if set, datagrams must carry this in a 'token' field")
    udp_bind: str = _setting(
        "", "address sensors reach the UDP listener on, where a port mapping binds for it; empty: UDP_HOST"
    )
    sources_file: str = _setting(
        "", "TOML file declaring [[pollers]] and [[namespaces]] (see sources.example.toml)"
    )
    demo_rate: float = _setting(2.0, "messages per second per demo channel", lo=0.01, hi=1000)
    udp_max_bytes: int = _setting(8192, "largest accepted sensor datagram", lo=64, hi=65507)
    lease_seconds: float = _setting(
        10.0, "seconds a dead ingest process keeps its pollers before a standby takes over", lo=0.5, hi=3600
    )

    @property
    def broker_url(self) -> str:
        return self.redis_url or "memory://"

    @property
    def worker_name(self) -> str:
        return self.worker_id or f"{os.uname().nodename}:{self.port}"


def _fields() -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(Settings))


def _env_name(name: str) -> str:
    return name.upper()


_BOOLS = {"": False, "0": False, "false": False, "no": False, "off": False}
_BOOLS |= {"1": True, "true": True, "yes": True, "on": True}


def _convert(f: dataclasses.Field[Any], raw: str) -> Any:
    """Turn one raw string into the field's type, or raise ConfigError naming the variable."""
    env = _env_name(f.name)
    kind: type[Any] = type(f.default)
    try:
        value: Any
        if kind is tuple:
            value = tuple(part.strip() for part in raw.split(",") if part.strip())
        elif kind is bool:
            word = raw.strip().lower()
            if word not in _BOOLS:
                raise ConfigError(f"{env}={raw!r} must be true or false")
            value = _BOOLS[word]
        elif kind is int:
            value = int(raw.strip())
        elif kind is float:
            value = float(raw.strip())
            if value != value:  # NaN passes every range check, so refuse it here
                raise ValueError
        else:
            value = raw.strip()
    except ValueError:
        raise ConfigError(f"{env}={raw!r} is not a valid {kind.__name__}") from None
    lo, hi = f.metadata["lo"], f.metadata["hi"]
    if lo is not None and value < lo:
        raise ConfigError(f"{env}={raw!r} must be at least {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{env}={raw!r} must be at most {hi}")
    return value


def _check(settings: Settings) -> None:
    if settings.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"LOG_LEVEL={settings.log_level!r} must be DEBUG, INFO, WARNING or ERROR")
    if settings.log_format not in {"text", "json"}:
        raise ConfigError(f"LOG_FORMAT={settings.log_format!r} must be text or json")
    scheme = settings.broker_url.split("://", 1)[0]
    if scheme not in {"memory", "redis", "rediss", "unix"}:
        raise ConfigError(f"REDIS_URL={settings.redis_url!r} must start with redis:// or rediss://")
    for origin in settings.allowed_origins:
        if "://" not in origin:
            raise ConfigError(f"ALLOWED_ORIGINS entry {origin!r} must look like https://host[:port]")


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches: 127.0.0.0/8, ::1 or localhost.

    Anything else counts as reachable from elsewhere: "" and 0.0.0.0 (every
    interface), a routable address, or a name that may resolve to one.
    """
    host = host.strip()
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings, *, serves_api: bool) -> None:
    """Refuse to publish keyless on an address other machines can reach (secure by default).

    A worker (``serves_api``) whose HTTP is reached on a non-loopback address
    needs PUBLISH_KEY, and a process running the UDP source on one needs
    UDP_TOKEN, unless OPEN_PUBLISH says an open publish API is wanted. The
    address is HTTP_BIND (UDP_BIND) when set, as compose sets it to the host
    address it publishes on, and otherwise the HOST (UDP_HOST) bound.

    Raises:
        ConfigError: one line naming the address's variable and the missing one.
    """
    if settings.open_publish:
        return
    checks: list[tuple[str, str, str, str, str, str]] = []
    if serves_api:
        checks.append(
            ("HTTP_BIND", settings.http_bind, "HOST", settings.host, "PUBLISH_KEY", settings.publish_key)
        )
    if "udp" in settings.sources:
        checks.append(
            ("UDP_BIND", settings.udp_bind, "UDP_HOST", settings.udp_host, "UDP_TOKEN", settings.udp_token)
        )
    for bind_name, bind, host_name, host, key_name, key in checks:
        name, address = (bind_name, bind) if bind.strip() else (host_name, host)
        if not key and not is_loopback(address):
            raise ConfigError(
                f"{name}={address!r} is reachable from other machines and {key_name} is empty, so anyone "
                f"could publish: set {key_name}, or bind 127.0.0.1, or set OPEN_PUBLISH=true to allow it"
            )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per setting, each defaulting to 'not given'."""
    for f in _fields():
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=None,
            metavar=_env_name(f.name),
            help=f"{f.metadata['help']} (default: {_show_default(f.default)})",
        )


def _show_default(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value) or "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if value != "" else "none"


def load_settings(
    environ: Mapping[str, str] | None = None,
    flags: argparse.Namespace | None = None,
    **overrides: Any,
) -> Settings:
    """Build Settings from the environment, flags and keyword overrides (in rising priority).

    Raises:
        ConfigError: a value does not parse or is out of range; the message names it.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in _fields():
        raw = environ.get(_env_name(f.name))
        flag = getattr(flags, f.name, None) if flags is not None else None
        if flag is not None:
            raw = flag
        if raw is not None:
            values[f.name] = _convert(f, raw)
    values.update(overrides)
    settings = Settings(**values)
    _check(settings)
    return settings
