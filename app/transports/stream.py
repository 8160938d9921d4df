"""The last step of the fan-out: the same bytes written to many client streams.

Tornado's ``IOStream.write`` costs, per call, a Future with a done callback
(run later as its own event-loop callback), buffer bookkeeping and a memoryview,
besides the ``send()`` itself. A broadcast makes that call once per message
per subscriber, so that overhead was most of the server's CPU per delivered
message. ``write_now`` sends straight to the socket when nothing is queued
ahead, which is the common case, and hands anything the kernel did not take
(and every error) to ``IOStream.write``, which queues it behind, enforces
``max_write_buffer_size`` and closes the stream on errors as before.
"""

from __future__ import annotations

from tornado.iostream import IOStream

__all__ = ["write_now"]


def write_now(stream: IOStream, data: bytes) -> None:
    """Write ``data`` to ``stream``, in order after anything already queued.

    Raises:
        StreamBufferFullError: queueing the rest would exceed the stream's limit.
        StreamClosedError: the stream is closed.
    """
    # Only a plain socket stream with nothing queued: SSL streams, and bytes
    # waiting in Tornado's buffer, must go through IOStream.write.
    sock = stream.socket
    if not stream._write_buffer and sock is not None and type(stream) is IOStream:
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            # IOStream.write meets the same error and closes the stream its way.
            sent = 0
        if sent == len(data):
            return
        if sent:
            data = data[sent:]
    stream.write(data)
