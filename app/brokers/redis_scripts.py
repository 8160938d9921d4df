"""The Lua scripts of the Redis broker: each publish and each history read is one round trip."""

from __future__ import annotations

__all__ = ["HISTORY", "PUBLISH"]

# One script does the whole publish, so it costs one round trip, and since
# scripts run atomically, pub/sub order is id order on every subscriber.
# The envelope is built exactly as app.messages.encode_envelope builds it.
PUBLISH = """
local seq_key, hist_key, last_key, idem_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local channel, data, size, skip, start, ttl, topic, window =
    ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7], ARGV[8]
if idem_key then
    local first = redis.call('GET', idem_key)
    if first then
        return {first, 0, 1}
    end
end
if skip == '1' and redis.call('GET', last_key) == data then
    local seq = redis.call('GET', seq_key) or '0'
    if idem_key then
        redis.call('SET', idem_key, seq, 'EX', window)
    end
    return {seq, 1, 0}
end
if redis.call('EXISTS', seq_key) == 0 then
    redis.call('SET', seq_key, start)
end
local sid = string.format('%d', redis.call('INCR', seq_key))
local envelope = '{"type":"message","channel":"' .. channel .. '","id":' .. sid ..
    ',"data":' .. data .. '}'
redis.call('ZADD', hist_key, sid, envelope)
redis.call('ZREMRANGEBYRANK', hist_key, 0, -(size + 1))
redis.call('SET', last_key, data)
if ttl > 0 then
    redis.call('EXPIRE', seq_key, ttl)
    redis.call('EXPIRE', hist_key, ttl)
    redis.call('EXPIRE', last_key, ttl)
end
redis.call('PUBLISH', topic, sid .. ' ' .. envelope)
if idem_key then
    redis.call('SET', idem_key, sid, 'EX', window)
end
return {sid, 0, 0}
"""

# Reading the latest id and the history together keeps them consistent.
# ARGV[2] == '1' asks for the newest message only.
HISTORY = """
local seq = redis.call('GET', KEYS[1]) or '0'
if ARGV[2] == '1' then
    return {seq, redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')}
end
return {seq, redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'WITHSCORES')}
"""
