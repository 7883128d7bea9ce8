-- Consume: mark a key used for ttl seconds -> 1 only for the first caller.
-- KEYS[1] marker (value: its logical expiry)   ARGV: now, ttl
local now = clock(ARGV[1])
local ttl = num(ARGV[2])
local expires = tonumber(redis.call('GET', KEYS[1]))
if expires and expires > now then
  return 0
end
redis.call('SET', KEYS[1], fmt(now + ttl), 'PX', ms(ttl))
return 1
