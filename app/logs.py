"""Logging: one line per record, as text or (LOG_FORMAT=json) one JSON object, and the access log.

The access log replaces Tornado's: a subscribe token in a query string
never reaches the log, and each line carries the request id nginx passes
on (``X-Request-ID``, nginx's ``$request_id``), so one request can be
followed from nginx's log to the worker's. A WebSocket's line is written at
its upgrade (101), an SSE stream's when it ends, a publish's when answered.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
import tornado.web

from app.config import Settings

__all__ = ["JsonFormatter", "access_log", "configure_logging", "redact"]

access = logging.getLogger("windsock.access")

# What every LogRecord has; anything else on a record is a field the caller added.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "worker", "logger", "event", ...fields}`` on one line; tracebacks as ``error``."""

    def __init__(self, worker: str) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, Any] = {
            "time": f"{moment}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "worker": self.worker,
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        # default=str: a field no JSON type fits is shown, never a crash in the logger.
        return orjson.dumps(entry, default=str).decode()


def configure_logging(settings: Settings) -> None:
    """Send every record to stderr in LOG_FORMAT at LOG_LEVEL."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(settings.worker_name))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {settings.worker_name} %(levelname)s %(name)s: %(message)s")
        )
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)


def redact(uri: str) -> str:
    """The request URI with any ``token`` in its query replaced, so a secret never reaches a log."""
    path, sep, query = uri.partition("?")
    if not sep:
        return path
    pairs = [(k, "REDACTED" if k == "token" else v) for k, v in parse_qsl(query, keep_blank_values=True)]
    return f"{path}?{urlencode(pairs, safe='=,:.')}"


def access_log(handler: tornado.web.RequestHandler) -> None:
    """Tornado's ``log_function``: one line per request, with its request id and no secrets."""
    request = handler.request
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if not access.isEnabledFor(level):
        return
    uri = redact(request.uri or "")
    duration = round(1000.0 * request.request_time(), 2)
    request_id = request.headers.get("X-Request-ID")
    access.log(
        level,
        "%d %s %s (%s) %.2fms%s",
        status,
        request.method,
        uri,
        request.remote_ip,
        duration,
        f" request_id={request_id}" if request_id else "",
        extra={
            "status": status,
            "method": request.method,
            "path": uri,
            "ip": request.remote_ip,
            "duration_ms": duration,
            "request_id": request_id,
        },
    )
