-- wrk script for the serving benchmark (bench/run, issue 8).
-- wrk -t2 -c8 -d10s --latency http://HOST:PORT -- LIST PREFIX MODE [SEED]
--   LIST    a file of paths, one a line, relative to the package root
--   PREFIX  the URL path the package root is served at (e.g. /content/PS100001/ or /files/)
--   MODE    "files": each request GETs a random path from LIST, whole;
--           "ranges:SIZE:FILESIZE": LIST's first line is one large file; each request GETs a
--           random SIZE-byte range of it (Range: bytes=a-b, a aligned to 4 KiB)
-- Each thread draws from its own seeded sequence, so both servers get the same requests.
-- Prints one JSON line at the end: requests, bytes read, seconds, latency percentiles (us),
-- and the count of non-2xx responses and socket errors.

local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local paths, prefix, mode, size, filesize = {}, "", "files", 0, 0

function init(args)
  for line in io.lines(args[1]) do
    table.insert(paths, line)
  end
  prefix = args[2]
  local m, s, fs = string.match(args[3], "^(%a+):?(%d*):?(%d*)$")
  mode = m
  size = tonumber(s) or 0
  filesize = tonumber(fs) or 0
  math.randomseed((tonumber(args[4]) or 1) * 1000 + id)
end

function request()
  if mode == "ranges" then
    local blocks = math.floor((filesize - size) / 4096)
    local a = math.random(0, blocks) * 4096
    return wrk.format("GET", prefix .. paths[1], { ["Range"] = "bytes=" .. a .. "-" .. (a + size - 1) })
  end
  return wrk.format("GET", prefix .. paths[math.random(1, #paths)])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "bytes": %d, "seconds": %.3f, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"non2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.bytes, summary.duration / 1e6, latency:percentile(50),
    latency:percentile(99), latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
