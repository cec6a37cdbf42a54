-- wrk script for benchmarks/serving_bench.py: single-text POST /predict requests, texts taken in
-- turn from the file named by WRK_TEXTS (one text per line, JSON-escaped), every request's latency
-- recorded by its status.
--
--   WRK_TEXTS=texts.txt WRK_LATENCY_OUT=lat.json wrk -t64 -c64 -d20s -s benchmarks/wrk_predict.lua URL
--
-- Run it with as many threads as connections (-t = -c): each thread then drives one connection, so
-- its request() and response() calls alternate and the time between them is that request's latency,
-- measured here with a monotonic clock (LuaJIT's FFI) and kept per status in 0.1 ms buckets. wrk's
-- own latency figures are not used for that: wrk 4 adds synthetic samples to its histogram for
-- every response slower than twice the mean interval (a coordinated-omission correction for constant-
-- rate tests) and cannot tell a 200 from a 503.
--
-- done() prints one JSON line (prefix "WRK_JSON ") with the request count, status counts, socket
-- errors and wrk's own percentiles, and writes the per-status histograms to WRK_LATENCY_OUT as JSON:
-- {"<status>:<bucket of 0.1 ms>": count, ...}.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1e6 + tonumber(timespec.tv_nsec) / 1e3
end

local threads = {}
local bodies = {}

local function load_bodies()
  local path = os.getenv("WRK_TEXTS") or "texts.txt"
  for line in io.lines(path) do
    bodies[#bodies + 1] = '{"texts": [' .. line .. ']}'
  end
end

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  load_bodies()
  counter = id * 7919
  statuses = {}
  latency = {} -- "status:bucket (0.1 ms)" -> count (flat: wrk copies only flat tables between threads)
  sent_at = nil
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  sent_at = now_us()
  local body = bodies[(counter % #bodies) + 1]
  return wrk.format("POST", "/predict", nil, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if sent_at then
    local key = status .. ":" .. math.floor((now_us() - sent_at) / 100)
    latency[key] = (latency[key] or 0) + 1
    sent_at = nil
  end
end

function done(summary, wrk_latency, requests)
  local counts, merged = {}, {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do
      counts[code] = (counts[code] or 0) + n
    end
    for key, n in pairs(thread:get("latency")) do
      merged[key] = (merged[key] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(counts) do
    parts[#parts + 1] = string.format('"%d": %d', code, n)
  end
  local out_path = os.getenv("WRK_LATENCY_OUT")
  if out_path then
    local items = {}
    for key, n in pairs(merged) do
      items[#items + 1] = string.format('"%s": %d', key, n)
    end
    local file = assert(io.open(out_path, "w"))
    file:write("{" .. table.concat(items, ", ") .. "}\n")
    file:close()
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_s": %.3f, "statuses": {%s}, "socket_errors": ' ..
    '{"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}, ' ..
    '"wrk_p50_ms": %.3f, "wrk_p99_ms": %.3f, "wrk_max_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.timeout, e.status,
    wrk_latency:percentile(50) / 1e3, wrk_latency:percentile(99) / 1e3, wrk_latency.max / 1e3))
end
