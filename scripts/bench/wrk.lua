-- wrk script for scripts/bench.py: POSTs bodies read from a file, one JSON body per line.
--
--   wrk -t1 -c16 -d20s -s scripts/bench/wrk.lua URL -- BODIES MODE NONCE START [HEADER: VALUE]...
--
-- MODE  rotate: each request sends the next line, starting at line START (threads after the
--               first start 7919 lines further each)
--       unique: as rotate, and every "{N}" in the line is replaced by a string unique to this
--               request (NONCE, thread number, request number), so no two requests are alike
-- At the end it prints one line "BENCHJSON {...}": counts, errors and latency percentiles (µs).

-- SEMCACHE_WRK_DELAY_MS (whole ms): a pause before each request on every connection, so the
-- server idles between requests as it does inside a longer path (wrk times from the send).
local delay_ms = tonumber(os.getenv("SEMCACHE_WRK_DELAY_MS") or "") or 0
if delay_ms > 0 then
   function delay()
      return delay_ms
   end
end

local bodies = {}
local mode = "rotate"
local nonce = "0"
local counter = 0
local start = 0

local threads = {}
local next_thread = 0

function setup(thread)
   thread:set("thread_no", next_thread)
   next_thread = next_thread + 1
   table.insert(threads, thread)
end

function init(args)
   local file = args[1]
   mode = args[2] or "rotate"
   nonce = args[3] or "0"
   start = tonumber(args[4] or "0") or 0
   for line in io.lines(file) do
      if #line > 0 then
         table.insert(bodies, line)
      end
   end
   if #bodies == 0 then
      error("no bodies in " .. tostring(file))
   end
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   for i = 5, #args do
      local k, v = string.match(args[i], "^([^:]+):%s*(.*)$")
      if k then
         wrk.headers[k] = v
      end
   end
   -- Threads start at different lines.
   counter = start + (thread_no or 0) * 7919
end

function request()
   counter = counter + 1
   local body = bodies[(counter % #bodies) + 1]
   if mode == "unique" then
      local tag = nonce .. "-" .. tostring(thread_no or 0) .. "-" .. tostring(counter)
      body = string.gsub(body, "{N}", tag)
   end
   return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {"min": %d, "mean": %.1f, "stdev": %.1f, "max": %d, ' ..
      '"p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9)))
end
