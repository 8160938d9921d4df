"""Every subscriber this load-generator process holds, for pausing, closing and counting them."""

from __future__ import annotations

import asyncio
from typing import Any


class Clients:
    """Every subscriber this process holds, with the transports to pause or close them."""

    def __init__(self) -> None:
        self.ws: list[Any] = []  # picows WSTransport
        self.wsz: list[asyncio.Transport] = []
        self.sse: list[asyncio.Transport] = []
        self.open = 0
        self.paused = 0
        self.wire_bytes = 0  # read by wsz clients after their handshake, frame headers included
        self.deflated = 0  # wsz clients the server agreed permessage-deflate with

    def all_transports(self) -> list[Any]:
        return [t.underlying_transport for t in self.ws] + list(self.wsz) + list(self.sse)


CLIENTS = Clients()
