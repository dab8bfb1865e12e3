-- wrk script: POSTs prepared signHash bodies, one per request, never reusing one.
-- BENCH_BODIES names a file with one JSON body per line; each wrk thread takes every n-th line
-- so that no two threads spend the same gateway SAD.
local counter = 1
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local total = tonumber(os.getenv("BENCH_THREADS") or "1")
  bodies = {}
  local n = 0
  for line in io.lines(os.getenv("BENCH_BODIES")) do
    if n % total == thread_id then table.insert(bodies, line) end
    n = n + 1
  end
  headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or ""),
  }
end

function request()
  local body = bodies[counter]
  if body == nil then body = bodies[#bodies] end
  counter = counter + 1
  return wrk.format("POST", os.getenv("BENCH_PATH"), headers, body)
end
