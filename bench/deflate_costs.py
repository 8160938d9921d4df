"""What permessage-deflate costs alone, timed in the bench process: no server, no load, no noise.

Printed under the ws-deflate table, for the compression share of a delivery.
"""

from __future__ import annotations

import sys
import time

from bench import ROOT
from bench.publisher import sensor_message


def deflate_costs(levels: list[int], subscribers: int = 1000, n: int = 2000) -> str:
    """Compression alone, timed in this process on real envelopes of sensor JSON (no server, no noise).

    Windsock deflates each message once, for every subscriber (no context
    takeover). The usual alternative, a compressor per connection keeping its
    context, is timed too: it is paid per delivery, compresses better, and
    holds zlib's state (about 256 KiB at the defaults) per connection.
    """
    import zlib

    sys.path.insert(0, str(ROOT))
    from app.messages import Message, ws_deflated_frame, ws_text_frame

    envelopes = [
        Message.build("sensors.greenhouse-3", 1763683200000001 + i, sensor_message(10**15 + i * 10**8, 1, i))
        for i in range(n)
    ]
    plain = sum(len(ws_text_frame(m.envelope)) for m in envelopes) / n
    lines = [
        f"deflate alone ({n} sensor envelopes, {plain:.0f} B plain frames; {subscribers:,} subscribers):"
    ]
    for level in [lv for lv in levels if lv > 0]:
        started = time.perf_counter()
        size = sum(len(ws_deflated_frame(m.envelope, level)) for m in envelopes)
        shared = (time.perf_counter() - started) / n * 1e6
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        started = time.perf_counter()
        kept = sum(
            len(compressor.compress(m.envelope) + compressor.flush(zlib.Z_SYNC_FLUSH)) - 4 for m in envelopes
        )
        own = (time.perf_counter() - started) / n * 1e6
        lines.append(
            f"  level {level}: once per message {shared:.1f} us = {shared / subscribers * 1000:.1f} ns per "
            f"delivery, {size / n:.0f} B frames; a compressor per connection (context kept): "
            f"{own:.1f} us per delivery, {kept / n + 2:.0f} B frames"
        )
    return "\n".join(lines)
