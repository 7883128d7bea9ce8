-- Range: -> every item of a list, oldest first ({} when none).
-- KEYS[1] list, KEYS[2] its logical expiry   ARGV: now
local now = clock(ARGV[1])
local e = tonumber(redis.call('GET', KEYS[2]))
if not e or e <= now then return {} end
return redis.call('LRANGE', KEYS[1], 0, -1)
