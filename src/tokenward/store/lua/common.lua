-- Prelude shared by every tokenward store script (prepended when the scripts load).
--
-- ARGV[1] is the time: empty means "ask Redis" (TIME, one clock for every gateway that
-- shares this server); a number is a caller's clock, accepted only from tests or from a
-- deployment that explicitly accepts clock skew between instances.
-- Numbers travel as strings and are written back with 17 significant digits, so every
-- float survives a round trip exactly and the arithmetic matches the memory store.
-- Each value stores its own logical expiry (field or value "e"); the Redis TTL only
-- collects garbage and is never shorter than the logical lifetime.

if redis.replicate_commands then
  redis.replicate_commands() -- no-op on Redis >= 5; needed before writes after TIME on 3.2/4
end

local function num(s)
  if s == 'inf' then return math.huge end
  if s == '-inf' then return -math.huge end
  return tonumber(s)
end

local function fmt(x)
  return string.format('%.17g', x)
end

local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- Milliseconds for PEXPIRE/PX: rounded up (never shorter than the logical lifetime), >= 1.
local function ms(seconds)
  local m = math.ceil(seconds * 1000)
  if m < 1 then m = 1 end
  return string.format('%d', m)
end

-- A budget bucket is a hash {u = units held and spent, e = window end} plus a sorted set
-- "<bucket>:x" of its live holds (member "amount|slot|reservation", score = hold expiry).
-- Reading a bucket first releases the holds that expired: a reservation that was never
-- committed gives its amount back exactly when its ttl ends, whoever looks next.
-- -> the units in use, or nil when the bucket does not exist (or its window ended).
local function bucket_used(name, now)
  local s = redis.call('HMGET', name, 'u', 'e')
  local e = tonumber(s[2])
  if not e or e <= now then return nil end
  local used = tonumber(s[1])
  local holds = name .. ':x'
  local expired = redis.call('ZRANGEBYSCORE', holds, '-inf', fmt(now))
  if #expired > 0 then
    for _, member in ipairs(expired) do
      local bar = string.find(member, '|', 1, true)
      used = used - tonumber(string.sub(member, 1, bar - 1))
    end
    redis.call('ZREMRANGEBYSCORE', holds, '-inf', fmt(now))
    redis.call('HSET', name, 'u', fmt(used))
  end
  return used
end

