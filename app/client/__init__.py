"""The Python client: subscribe with resume over WebSocket or SSE, and publish (docs/python-client.md).

    from app.client import Client, Message

    async with Client("http://127.0.0.1:8888", ["sensors.demo-1"], since=0) as client:
        async for event in client:
            if isinstance(event, Message):
                print(event.channel, event.id, event.data)

Needs the ``client`` extra: ``pip install 'windsock[client]'``.
"""

from __future__ import annotations

from app.client.core import DEFAULT_URL, Client
from app.client.errors import ClientError
from app.client.frames import Event, Message, Reset, ServerError, Status
from app.client.sync import publish, subscribe

__all__ = [
    "DEFAULT_URL",
    "Client",
    "ClientError",
    "Event",
    "Message",
    "Reset",
    "ServerError",
    "Status",
    "publish",
    "subscribe",
]
