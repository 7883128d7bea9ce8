-- Distinct: note a member -> how many distinct members were seen in the window.
-- KEYS[1] sorted set member -> last seen, KEYS[2] the set's logical expiry
-- ARGV: now, member, window, cap
local now = clock(ARGV[1])
local window, cap = num(ARGV[3]), tonumber(ARGV[4])
local e = tonumber(redis.call('GET', KEYS[2]))
if not e or e <= now then
  redis.call('DEL', KEYS[1]) -- the whole set lapsed (its last note was a window ago)
end
redis.call('ZADD', KEYS[1], fmt(now), ARGV[2])
local n = redis.call('ZCARD', KEYS[1])
if n > cap then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - cap - 1) -- the oldest go first
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - window))
redis.call('PEXPIRE', KEYS[1], ms(window))
redis.call('SET', KEYS[2], fmt(now + window), 'PX', ms(window))
return redis.call('ZCARD', KEYS[1])
