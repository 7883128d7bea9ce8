-- Reserve: hold an amount against every budget, all or nothing.
-- KEYS[1] the hold {a = amount, e = expiry, n = bucket count, 1..n = bucket keys}
-- ARGV: now, amount, reservation, ttl, bucket key prefix, n, then n x (key, limit, window, window as %g)
-- -> {1, 0, '0'} or {0, index of the first budget that would overflow, retry_after}
-- Bucket keys are built here from the time, so they cannot be declared in KEYS; they
-- share KEYS[1]'s hash tag (every budget of the store lives in one slot).
local now = clock(ARGV[1])
local amount, reservation, ttl = num(ARGV[2]), ARGV[3], num(ARGV[4])
local prefix, n = ARGV[5], tonumber(ARGV[6])
local names, ends = {}, {}
for i = 1, n do
  local at = 6 + (i - 1) * 4
  local limit, window = num(ARGV[at + 2]), num(ARGV[at + 3])
  local index = math.floor(now / window)
  local name = prefix .. ARGV[at + 1] .. '@' .. ARGV[at + 4] .. ':' .. string.format('%d', index)
  local used = bucket_used(name, now) or 0
  if used + amount > limit then
    return {0, i, fmt((index + 1) * window - now)}
  end
  names[i] = name
  ends[i] = (index + 1) * window
end
local amount_s = fmt(amount)
local expires = now + ttl
local hold = {'a', amount_s, 'e', fmt(expires), 'n', tostring(n)}
for i = 1, n do
  local name = names[i]
  local used = bucket_used(name, now)
  if used == nil then
    redis.call('DEL', name .. ':x') -- holds of an older bucket under the same name
    used = 0
  end
  redis.call('HSET', name, 'u', fmt(used + amount), 'e', fmt(ends[i]))
  redis.call('ZADD', name .. ':x', fmt(expires), amount_s .. '|' .. i .. '|' .. reservation)
  local life = ms(ends[i] - now)
  redis.call('PEXPIRE', name, life)
  redis.call('PEXPIRE', name .. ':x', life)
  hold[#hold + 1] = tostring(i)
  hold[#hold + 1] = name
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(hold))
redis.call('PEXPIRE', KEYS[1], ms(ttl))
return {1, 0, '0'}
