-- Cadence: note an arrival -> {count, EWMA of intervals, EWMA variance of intervals}.
-- KEYS[1] hash {l = last arrival, n = count, m = mean, v = variance, e = expiry}
-- ARGV: now, span, ttl
local now = clock(ARGV[1])
local span, ttl = tonumber(ARGV[2]), num(ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'l', 'n', 'm', 'v', 'e')
local e = tonumber(s[5])
local count, mean, var = 1, 0, 0
if e and e > now then
  local last = tonumber(s[1])
  count, mean, var = tonumber(s[2]), tonumber(s[3]), tonumber(s[4])
  local interval = math.max(0, now - last)
  if count == 1 then
    mean, var = interval, 0
  else
    local alpha = 2 / (math.min(count, span) + 1)
    local delta = interval - mean
    mean = mean + alpha * delta
    var = (1 - alpha) * (var + alpha * delta * delta)
  end
  count = math.min(count + 1, 1000000)
end
redis.call('HSET', KEYS[1], 'l', fmt(now), 'n', string.format('%d', count), 'm', fmt(mean),
  'v', fmt(var), 'e', fmt(now + ttl))
redis.call('PEXPIRE', KEYS[1], ms(ttl))
return {count, fmt(mean), fmt(var)}
