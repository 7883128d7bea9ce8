-- Commit: replace a live hold by the amount actually spent (0 releases it).
-- KEYS[1] the hold (see reserve.lua)   ARGV: now, actual, reservation -> 1 if a hold was live
local now = clock(ARGV[1])
local actual = num(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'a', 'e', 'n')
if not h[1] then
  return 0 -- unknown, already committed, or gone with its ttl
end
local n = tonumber(h[3])
local fields = {}
for i = 1, n do fields[i] = tostring(i) end
local names = {}
if n > 0 then names = redis.call('HMGET', KEYS[1], unpack(fields)) end
redis.call('DEL', KEYS[1])
if tonumber(h[2]) <= now then
  return 0 -- expired: its buckets release it when next read
end
local amount = tonumber(h[1])
for i = 1, n do
  local name = names[i]
  local used = bucket_used(name, now)
  if used ~= nil then
    redis.call('HSET', name, 'u', fmt(used + (actual - amount)))
  end
  redis.call('ZREM', name .. ':x', h[1] .. '|' .. i .. '|' .. ARGV[3])
end
return 1
