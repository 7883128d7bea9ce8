-- wrk script shared by every scenario of bench/gateway.py: the same per-request Lua
-- work whether or not a proof is attached, so only the server side differs.
--
-- BENCH_DATA  directory holding slice-<thread id>.tsv, one request per line:
--             "<Tokenward-Proof value or ->\t<body>"
-- BENCH_WRAP  "1": walk the slice in a loop (requests without proofs);
--             "0": each line is used once (proofs are single use). When a thread runs
--             out it resends its last line (a replay: the gateway answers 401, which
--             shows up as non-2xx) and counts it in "exhausted".
--
-- setup() numbers the threads, so each thread reads its own disjoint slice; done()
-- prints one machine-readable line, BENCH_JSON {...}, after wrk's usual report.

local threads = {}
local next_id = 0

function setup(thread)
   next_id = next_id + 1
   thread:set("tid", next_id)
   table.insert(threads, thread)
end

local proofs, bodies = {}, {}
local count, i = 0, 0
local wrap = false
used, exhausted = 0, 0
local headers_plain, headers_proof

function init(args)
   local dir = os.getenv("BENCH_DATA")
   wrap = os.getenv("BENCH_WRAP") == "1"
   local path = dir .. "/slice-" .. tid .. ".tsv"
   for line in io.lines(path) do
      local tab = string.find(line, "\t", 1, true)
      count = count + 1
      proofs[count] = string.sub(line, 1, tab - 1)
      bodies[count] = string.sub(line, tab + 1)
   end
   if count == 0 then
      error("empty request slice " .. path)
   end
end

function request()
   i = i + 1
   if i > count then
      if wrap then
         i = 1
      else
         i = count
         exhausted = exhausted + 1
      end
   end
   used = used + 1
   local h = {
      ["Content-Type"] = "application/json",
      ["x-demo-chunk-delay"] = "0",
   }
   local proof = proofs[i]
   if proof ~= "-" then
      h["Tokenward-Proof"] = proof
   end
   return wrk.format("POST", nil, h, bodies[i])
end

function done(summary, latency, requests)
   local u, x = 0, 0
   for _, t in ipairs(threads) do
      u = u + (t:get("used") or 0)
      x = x + (t:get("exhausted") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},' ..
      '"used":%d,"exhausted":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean, u, x))
end
