"""The closing handshake of /ws (RFC 6455 section 7): a close frame, the peer's, a FIN, then the close."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from asyncio import Future

from tornado.iostream import StreamBufferFullError, StreamClosedError

from app.transports.tornado_compat import FrameProtocol
from app.transports.ws_frames import CLOSE_INTERNAL_ERROR, close_payload

__all__ = ["ClosingProtocol"]


class ClosingProtocol(FrameProtocol):
    """A protocol that closes as RFC 6455 asks, so its close frame reaches the peer.

    After its close frame the worker no longer acts on input, but reads and
    discards it (the subclass's receive loop), so that the kernel never
    answers a peer that is still sending with a TCP RST (which can destroy
    the close frame on its way). Once the peer's close arrives, or after
    ``close_timeout``, it half-closes (FIN), reads on until the peer's FIN
    or ``linger_timeout``, and closes.
    """

    close_timeout = 3.0  # for the peer's close frame, after ours
    linger_timeout = 2.0  # for the peer's FIN, after ours

    # Per-connection state, at class level until a connection needs it.
    _close_written: Future[None] | None = None
    _close_timer: asyncio.TimerHandle | None = None
    _linger_timer: asyncio.TimerHandle | None = None
    _half_closed = False

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Send a close frame (once); then wait for the peer's, or ``close_timeout``, and half-close."""
        stream = self.stream
        if stream is None or stream.closed():
            self.server_terminated = True
            self._end()
            return
        if not self.server_terminated:
            self.server_terminated = True
            with contextlib.suppress(StreamClosedError, StreamBufferFullError):
                self._close_written = self.write_frame(True, 0x8, close_payload(code, reason))
            if not self.client_terminated:
                self._close_timer = asyncio.get_running_loop().call_later(
                    self.close_timeout, self._half_close
                )
        if self.client_terminated:
            self._half_close()
        self.stop_ping_task()

    def _half_close(self) -> None:
        """Send FIN once the close frame is out; close the stream at the peer's FIN or ``linger_timeout``."""
        if self._half_closed:
            return
        self._half_closed = True
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        stream = self.stream
        if stream is None or stream.closed():
            return
        self._linger_timer = asyncio.get_running_loop().call_later(self.linger_timeout, stream.close)
        written = self._close_written
        if written is None or written.done():
            self._shutdown_write()
        else:
            written.add_done_callback(lambda _: self._shutdown_write())

    def _shutdown_write(self) -> None:
        stream = self.stream
        if stream is not None and not stream.closed() and stream.socket is not None:
            with contextlib.suppress(OSError):
                stream.socket.shutdown(socket.SHUT_WR)

    def _end(self) -> None:
        """The connection is over: timers off, stream closed."""
        self.client_terminated = self.server_terminated = True
        for timer in (self._close_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._close_timer = self._linger_timer = None
        if self.stream is not None:
            self.stream.close()

    def callback_failed(self) -> bool:
        # on_message or open raised: a server fault, so 1011, with the same
        # handshake as any close.
        if self.stream is not None and not self.stream.closed() and not self.server_terminated:
            self.close(CLOSE_INTERNAL_ERROR, "internal error")
            return True
        return False
