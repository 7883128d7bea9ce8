-- Append: push an item, keep the last max_items -> the list's length after.
-- KEYS[1] list, KEYS[2] its logical expiry   ARGV: now, item, max_items, ttl
local now = clock(ARGV[1])
local max_items, ttl = tonumber(ARGV[3]), num(ARGV[4])
local e = tonumber(redis.call('GET', KEYS[2]))
if not e or e <= now then
  redis.call('DEL', KEYS[1])
end
local n = redis.call('RPUSH', KEYS[1], ARGV[2])
if n > max_items then
  redis.call('LTRIM', KEYS[1], n - max_items, -1)
  n = max_items
end
redis.call('PEXPIRE', KEYS[1], ms(ttl))
redis.call('SET', KEYS[2], fmt(now + ttl), 'PX', ms(ttl))
return n
