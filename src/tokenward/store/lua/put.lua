-- Put: store bytes for ttl seconds -> 1; with only_new, 0 when a live value exists.
-- KEYS[1] hash {v = value, e = expiry}   ARGV: now, value, ttl, only_new (1/0)
local now = clock(ARGV[1])
local ttl = num(ARGV[3])
if ARGV[4] == '1' then
  local e = tonumber(redis.call('HGET', KEYS[1], 'e'))
  if e and e > now then return 0 end
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'e', fmt(now + ttl))
redis.call('PEXPIRE', KEYS[1], ms(ttl))
return 1
