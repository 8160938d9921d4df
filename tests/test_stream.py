"""The fan-out's last step on its own: writes joined per event-loop turn, and direct socket writes."""

from __future__ import annotations

import asyncio
import socket

import pytest
from tornado.iostream import IOStream, StreamClosedError

from app.transports.stream import Coalescing, WriteTurns
from app.transports.tornado_compat import write_now


class Conn(Coalescing):
    """A connection whose writes are recorded instead of sent."""

    def __init__(self, turns: WriteTurns, fail: bool = False) -> None:
        self._turns = turns
        self.writes: list[bytes] = []
        self.fail = fail

    def _emit(self, data: bytes) -> None:
        if self.fail:
            raise OSError("gone")
        self.writes.append(data)

    def write(self, data: bytes) -> None:
        self._coalesce(data)


async def next_turn() -> None:
    """Let the loop run the end of the current turn."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_first_write_of_a_turn_goes_out_at_once() -> None:
    """A lone write is emitted immediately: a quiet server adds no delay."""
    conn = Conn(WriteTurns())
    conn.write(b"a")
    assert conn.writes == [b"a"]


async def test_later_writes_of_a_busy_turn_are_joined_in_order() -> None:
    """The second and later writes of one turn leave as one write at its end, in order."""
    conn = Conn(WriteTurns())
    for chunk in (b"a", b"b", b"c", b"d"):
        conn.write(chunk)
    assert conn.writes == [b"a"]
    await next_turn()
    assert conn.writes == [b"a", b"bcd"]


async def test_a_new_turn_writes_at_once_again() -> None:
    """After the turn ends, the next first write is immediate again."""
    conn = Conn(WriteTurns())
    conn.write(b"a")
    conn.write(b"b")
    await next_turn()
    conn.write(b"c")
    assert conn.writes == [b"a", b"b", b"c"]


async def test_connections_sharing_turns_are_joined_each_on_its_own() -> None:
    """Each connection's deferred bytes stay its own; one failing flush does not hold back the rest."""
    turns = WriteTurns()
    broken, ok = Conn(turns), Conn(turns)
    for conn in (broken, ok):
        conn.write(b"1")
        conn.write(b"2")
        conn.write(b"3")
    broken.fail = True
    await next_turn()
    assert ok.writes == [b"1", b"23"]
    assert broken.writes == [b"1"]


async def test_turns_of_different_processes_do_not_mix() -> None:
    """Two WriteTurns (two apps in one process) count their turns apart."""
    one, two = Conn(WriteTurns()), Conn(WriteTurns())
    one.write(b"a")
    two.write(b"x")  # another app's first write this turn: immediate too
    assert (one.writes, two.writes) == ([b"a"], [b"x"])


@pytest.fixture
async def stream_pair() -> tuple[IOStream, socket.socket]:
    """A Tornado IOStream over one end of a socket pair, and the other end."""
    left, right = socket.socketpair()
    stream = IOStream(left)
    yield stream, right
    stream.close()
    right.close()


async def test_write_now_sends_straight_to_the_socket(stream_pair: tuple[IOStream, socket.socket]) -> None:
    """With nothing queued, write_now sends the bytes itself: they are readable at once, in order."""
    stream, peer = stream_pair
    write_now(stream, b"hello ")
    write_now(stream, b"world")
    peer.settimeout(2)
    assert peer.recv(64) == b"hello world"


async def test_write_now_queues_what_the_kernel_does_not_take(
    stream_pair: tuple[IOStream, socket.socket],
) -> None:
    """When the socket is full the rest goes through IOStream, which delivers it after, in order."""
    stream, peer = stream_pair
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    blob = bytes(range(256)) * 4096  # 1 MiB: far more than the kernel takes at once
    write_now(stream, blob)
    write_now(stream, b"tail")
    received = bytearray()
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    while len(received) < len(blob) + 4:
        received += await loop.sock_recv(peer, 65536)
    assert bytes(received) == blob + b"tail"


async def test_write_now_on_a_closed_stream_raises(stream_pair: tuple[IOStream, socket.socket]) -> None:
    """A closed stream makes write_now raise StreamClosedError, as IOStream.write does."""
    stream, _ = stream_pair
    stream.close()
    with pytest.raises(StreamClosedError):
        write_now(stream, b"x")
