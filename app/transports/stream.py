"""The last step of the fan-out: the same bytes written to many client streams.

Tornado's ``IOStream.write`` costs, per call, a Future with a done callback
(run later as its own event-loop callback), buffer bookkeeping and a memoryview,
besides the ``send()`` itself. A broadcast makes that call once per message
per subscriber, so that overhead was most of the server's CPU per delivered
message. ``write_now`` sends straight to the socket when nothing is queued
ahead, which is the common case, and hands anything the kernel did not take
(and every error) to ``IOStream.write``, which queues it behind, enforces
``max_write_buffer_size`` and closes the stream on errors as before. It reads
Tornado's private counters, so it lives in app.transports.tornado_compat.

Under load, several messages reach the hub in one turn of the event loop
(a burst of publishes, or several Redis messages read at once). ``Coalescing``
then joins a connection's second and later writes of that turn into one
write at the turn's end: one ``send()`` per connection per turn instead of
one per message. The first write of a turn still goes out at once, so a
lightly loaded server adds no delay and no cost.
"""

from __future__ import annotations

import asyncio
import logging

__all__ = ["Coalescing", "WriteTurns"]

log = logging.getLogger("windsock.stream")


class WriteTurns:
    """The event-loop turn in progress, and the connections with writes deferred to its end.

    One per process, owned by its ``Connections`` and shared by its
    connections: joining writes needs to know which ones came in the same turn.
    """

    __slots__ = ("deferred", "ending", "number")

    def __init__(self) -> None:
        self.number = 0
        # The loop that will run end(), once one is scheduled.
        self.ending: asyncio.AbstractEventLoop | None = None
        self.deferred: list[Coalescing] = []

    def end(self) -> None:
        # Runs at the start of the next loop iteration, before its I/O callbacks.
        self.number += 1
        self.ending = None
        deferred, self.deferred = self.deferred, []
        for conn in deferred:
            try:
                conn._flush_deferred()
            except Exception:
                # One connection's failure must not hold back the others' writes.
                log.exception("deferred write failed")

    def schedule_end(self) -> None:
        loop = asyncio.get_running_loop()
        if self.ending is not None and self.ending is not loop:
            # A loop closed with the turn's end still pending: what it
            # deferred went with its connections.
            self.number += 1
            self.deferred = []
        self.ending = loop
        loop.call_soon(self.end)


class Coalescing:
    """Mixin for a connection: writes ``_emit`` at once, or joined at the end of a busy turn.

    The connection sets ``_turns`` to its process's ``WriteTurns`` before its first write.
    """

    _turns: WriteTurns
    _turn = -1
    _deferred: list[bytes] | None = None

    def _emit(self, data: bytes) -> None:
        """Write ``data`` to the client now (checks the connection is still writable)."""
        raise NotImplementedError

    def _coalesce(self, data: bytes) -> None:
        """Write ``data`` after everything written before, coalescing within a loop turn."""
        deferred = self._deferred
        if deferred is not None:
            deferred.append(data)
            return
        turns = self._turns
        if self._turn == turns.number:
            if turns.ending is not asyncio.get_running_loop():
                turns.schedule_end()
            if self._turn == turns.number:
                # The second write this turn: it and any later ones go out together.
                self._deferred = [data]
                turns.deferred.append(self)
                return
        self._turn = turns.number
        self._emit(data)
        if turns.ending is None:
            turns.schedule_end()

    def _flush_deferred(self) -> None:
        deferred, self._deferred = self._deferred, None
        if deferred:
            self._emit(b"".join(deferred))
