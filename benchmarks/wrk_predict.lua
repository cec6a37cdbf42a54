-- wrk script for benchmarks/serving_bench.py: single-text POST /predict requests, texts taken in
-- turn from the file named by WRK_TEXTS (one text per line, JSON-escaped), every status counted.
--
--   WRK_TEXTS=texts.txt wrk -t1 -c64 -d20s --latency -s benchmarks/wrk_predict.lua http://127.0.0.1:8000
--
-- done() prints one JSON line (prefix "WRK_JSON ") with the request count, status counts, socket
-- errors and latency percentiles. wrk's latency record does not say which status a request got, so the
-- p99 of admitted (200) requests is estimated as the overall quantile 1 - 0.01 * n200 / n: exact when
-- every refused request is faster than every admitted one (a 503 at admission is answered at once),
-- an over-estimate when some 503s (missed deadlines) are slow.

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
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local body = bodies[(counter % #bodies) + 1]
  return wrk.format("POST", "/predict", nil, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    local st = thread:get("statuses")
    for code, n in pairs(st) do
      counts[code] = (counts[code] or 0) + n
    end
  end
  local total, ok = 0, 0
  local parts = {}
  for code, n in pairs(counts) do
    total = total + n
    if code == 200 then ok = n end
    parts[#parts + 1] = string.format('"%d": %d', code, n)
  end
  local q_admitted = 99.0
  if total > 0 and ok > 0 then q_admitted = 100.0 - 1.0 * ok / total end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_s": %.3f, "statuses": {%s}, "socket_errors": ' ..
    '{"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}, ' ..
    '"p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "p99_admitted_ms": %.3f, "max_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency:percentile(q_admitted) / 1e3, latency.max / 1e3))
end
