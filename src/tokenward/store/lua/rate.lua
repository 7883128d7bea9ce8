-- Rate: add to a per-bucket total, keep an EWMA baseline of past totals.
-- KEYS[1] hash {i = bucket index, c = current, p = previous, b = baseline, n = buckets, e = expiry}
-- ARGV: now, amount, bucket seconds, half_life -> {current, previous, baseline, buckets}
local now = clock(ARGV[1])
local amount, bucket, half_life = num(ARGV[2]), num(ARGV[3]), num(ARGV[4])
local index = math.floor(now / bucket)
local s = redis.call('HMGET', KEYS[1], 'i', 'c', 'p', 'b', 'n', 'e')
local si, current, previous, baseline, n = index, 0, 0, 0, 0
local e = tonumber(s[6])
if e and e > now then
  si, current, previous = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
  baseline, n = tonumber(s[4]), tonumber(s[5])
end
if index ~= si then
  local alpha = 1 - 0.5 ^ (bucket / half_life)
  -- Fold the finished bucket, then one zero per bucket that saw nothing.
  local zeros = math.max(0, math.min(index - si - 1, 10000))
  local total = current
  for _ = 0, zeros do
    if n == 0 then baseline = total else baseline = baseline + alpha * (total - baseline) end
    n = math.min(n + 1, 1000000)
    total = 0
  end
  if index == si + 1 then previous = current else previous = 0 end
  si, current = index, 0
end
current = current + amount
local expires = now + math.max(half_life * 8, bucket * 2)
redis.call('HSET', KEYS[1], 'i', fmt(si), 'c', fmt(current), 'p', fmt(previous), 'b', fmt(baseline),
  'n', string.format('%d', n), 'e', fmt(expires))
redis.call('PEXPIRE', KEYS[1], ms(expires - now))
return {fmt(current), fmt(previous), fmt(baseline), n}
