-- Hit: sliding-window counter (current window + weighted previous one).
-- KEYS[1] hash {i = window index, p = previous total, c = current total, e = expiry}
-- ARGV: now, limit, window, cost  -> {allowed 0/1, count, retry_after}
local now = clock(ARGV[1])
local limit, window, cost = num(ARGV[2]), num(ARGV[3]), num(ARGV[4])
local index = math.floor(now / window)
local s = redis.call('HMGET', KEYS[1], 'i', 'p', 'c', 'e')
local wi, previous, current = index, 0, 0
local e = tonumber(s[4])
if e and e > now then
  wi, previous, current = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
end
if index ~= wi then
  if index == wi + 1 then previous = current else previous = 0 end
  current = 0
  wi = index
end
local elapsed = now / window - index -- fraction of the current window gone
local weighted = previous * (1 - elapsed) + current
local expires = (index + 2) * window
local allowed = not (weighted + cost > limit)
if allowed then current = current + cost end
redis.call('HSET', KEYS[1], 'i', fmt(wi), 'p', fmt(previous), 'c', fmt(current), 'e', fmt(expires))
redis.call('PEXPIRE', KEYS[1], ms(expires - now))
if allowed then
  return {1, fmt(weighted + cost), '0'}
end
local room = limit - current - cost
local retry
if room < 0 or previous <= 0 then
  retry = (1 - elapsed) * window
  if room < 0 then retry = retry + window end
else
  -- previous*(1-f) + current + cost <= limit  <=>  f >= 1 - room/previous
  retry = math.max(0, (1 - room / previous - elapsed) * window)
end
return {0, fmt(weighted), fmt(retry)}
