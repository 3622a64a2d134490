-- wrk script of bench/bench_server.py: replays pre-generated raw HTTP/1.1 requests.
--
--   wrk -t T -c C -d Ds -s bench/wrk_orders.lua http://127.0.0.1:PORT/v1/orders -- PREFIX WRAP
--
-- Thread k (1..T) reads "PREFIX.k": requests, each written as "<byte length>\n<raw request>".
-- Every request goes out once, in file order. WRAP=0 (signed orders: a replay is refused):
-- once a thread has used its whole slice it keeps re-sending its last request, which the server
-- refuses (a non-2xx response), and counts the overflow; the run is then invalid. WRAP=1 (the
-- echo baseline, which ignores the headers): start again from the first request.
--
-- done() prints one line "WRKJSON {...}" with the totals, the latency percentiles (µs) and the
-- overflow, for the Python side to parse.

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
   table.insert(threads, thread)
end

function init(args)
   local prefix = args[1]
   wrap = args[2] == "1"
   local f = assert(io.open(prefix .. "." .. id, "rb"))
   local data = f:read("*a")
   f:close()
   reqs = {}
   local pos, size_of = 1, #data
   while pos <= size_of do
      local nl = string.find(data, "\n", pos, true)
      local size = tonumber(string.sub(data, pos, nl - 1))
      reqs[#reqs + 1] = string.sub(data, nl + 1, nl + size)
      pos = nl + size + 1
   end
   n = #reqs
   sent = 0
   overflow = 0
   assert(n > 0, "no requests in " .. prefix .. "." .. id)
end

function request()
   sent = sent + 1
   if sent > n then
      if wrap then
         sent = 1
      else
         overflow = overflow + 1
         sent = n
      end
   end
   return reqs[sent]
end

function done(summary, latency, requests)
   local overflow_total, pool = 0, 0
   for _, thread in ipairs(threads) do
      overflow_total = overflow_total + (thread:get("overflow") or 0)
      pool = pool + (thread:get("n") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      "WRKJSON {\"duration_us\":%.0f,\"requests\":%.0f,\"bytes\":%.0f,\"connect\":%.0f," ..
      "\"read\":%.0f,\"write\":%.0f,\"status\":%.0f,\"timeout\":%.0f,\"p50_us\":%.1f," ..
      "\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"mean_us\":%.1f," ..
      "\"overflow\":%.0f,\"pool\":%.0f}\n",
      summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status,
      e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean, overflow_total, pool))
end
