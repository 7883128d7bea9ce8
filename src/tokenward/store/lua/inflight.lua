-- Inflight: add delta to a concurrency counter -> its value after (never below 0).
-- KEYS[1] hash {v = value, e = expiry}   ARGV: now, delta, ttl
local now = clock(ARGV[1])
local delta, ttl = tonumber(ARGV[2]), num(ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'v', 'e')
local value = 0
local e = tonumber(s[2])
if e and e > now then value = tonumber(s[1]) end
value = value + delta
if value < 0 then value = 0 end
redis.call('HSET', KEYS[1], 'v', string.format('%d', value), 'e', fmt(now + ttl))
redis.call('PEXPIRE', KEYS[1], ms(ttl))
return value
