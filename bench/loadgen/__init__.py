"""The load generator: one process holding many WebSocket/SSE subscribers, timing what they receive.

``python -m bench.loadgen`` (from the checkout's root) is started by the
bench, several at once, each pinned away from the server's core. It is
driven by JSON lines on stdin and answers with JSON lines on stdout. It is
written to cost as little as possible per received message: picows
(Cython WebSocket client) on uvloop, and from every frame it reads only the
publish timestamp and the phase number, never the whole JSON.

Commands:
    {"cmd": "connect", "url": U, "kind": "ws"|"wsz"|"sse", "n": N, "concurrency": C}
        wsz: a plain-asyncio WebSocket client that offers permessage-deflate
        as Chromium does, inflates what it gets, and counts the bytes it
        reads off the socket (for bytes on the wire per message)
    {"cmd": "pause", "n": N}      stop reading on N clients (slow consumers)
    {"cmd": "stats", "phase": P}  counts and latency histogram of phase P, bytes read by wsz clients
    {"cmd": "close"}              disconnect every client
    {"cmd": "ping"}               answers {"pong": true} (the bench waits for it at start-up)
    {"cmd": "quit"}

Modules: stats (latency histograms), clients (who is connected), ws and
sse (the client protocols), __main__ (the command loop).
"""
