-- Get: -> the bytes stored under a key, or nil.
-- KEYS[1] hash {v = value, e = expiry}   ARGV: now
local now = clock(ARGV[1])
local s = redis.call('HMGET', KEYS[1], 'v', 'e')
local e = tonumber(s[2])
if e and e > now then return s[1] end
return false
