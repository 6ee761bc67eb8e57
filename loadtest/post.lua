-- wrk script for loadtest/run.sh: POST the chat request in $BODY_FILE to the URL given to wrk,
-- check every response, and print one machine-readable summary line from done().
--
--   BODY_FILE=loadtest/body-json.json MODE=json wrk -t1 -c32 -d15s -s loadtest/post.lua \
--       http://127.0.0.1:8080/v1/chat/completions
--
-- A response counts as ok when its status is 200 and its body is complete: for MODE=stream the
-- body ends with `data: [DONE]` (wrk reads the whole chunked SSE body before calling response()),
-- for MODE=json it carries a "choices" array. wrk's latency is request sent -> last body byte.
--
-- Output (one line, parsed by run.sh and limits.sh; latencies in microseconds):
--   WRK_RESULT requests=N duration_us=N p50_us=N p90_us=N p99_us=N mean_us=N ok=N bad_status=N
--   bad_body=N connect_errors=N read_errors=N write_errors=N timeouts=N statuses=200:N,502:N

local body_file = os.getenv("BODY_FILE")
if not body_file then
   error("post.lua: set BODY_FILE to the request body file")
end
local f = assert(io.open(body_file, "rb"))
local body = f:read("*a")
f:close()

local mode = os.getenv("MODE") or "json"
if mode ~= "json" and mode ~= "stream" then
   error("post.lua: MODE must be json or stream, not " .. mode)
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
-- The mock provider wants a bearer key when hit directly; the gateway serves an unknown key
-- anonymously unless `auth.required`. AUTH_TOKEN sends a virtual key (loadtest/limits.sh).
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("AUTH_TOKEN") or "test")

-- VARY=1: every request's last message starts with a new number ("#17 ..."), so nothing
-- that depends on the exact prompt (the tokenizer's prompt cache, a response cache) sees the
-- same text twice; earlier messages (the system prompt) repeat, as in real traffic.
local vary = os.getenv("VARY") == "1"
local head, tail = body, ""
if vary then
   -- vary.lua sits next to this script.
   local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
   head, tail = dofile(dir .. "vary.lua")(body, "post.lua")
end
local counter = 0

-- RATE=N (requests/s, over all of wrk's WRK_THREADS threads): every request gets a due time on a
-- fixed schedule (t0 + k / rate per thread) and waits for it in delay(); a request whose due time
-- has passed (the load fell behind) goes at once, so the average rate holds. wrk's delay is in
-- whole milliseconds: a request may go up to half a millisecond before or after its due time.
local rate = tonumber(os.getenv("RATE") or "")
if rate then
   local ffi = require("ffi")
   ffi.cdef [[
   typedef struct { long tv_sec; long tv_nsec; } tg_post_timespec;
   int clock_gettime(int clk_id, tg_post_timespec *tp);
   ]]
   local ts = ffi.new("tg_post_timespec")
   local function now_us()
      ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
   end
   local interval = 1e6 * (tonumber(os.getenv("WRK_THREADS") or "1") or 1) / rate
   local due = nil
   function delay()
      local now = now_us()
      due = (due or now) + interval
      local wait = due - interval - now
      if wait <= 0 then
         return 0
      end
      return math.floor(wait / 1000 + 0.5)
   end
end

function request()
   if not vary then
      return wrk.format()
   end
   counter = counter + 1
   return wrk.format(nil, nil, nil, head .. "#" .. counter .. " " .. tail)
end

-- setup() runs in the main Lua state once per thread; done() reads the threads' counters.
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(_)
   ok = 0
   bad_status = 0
   bad_body = 0
   statuses = {}
end

local function complete(b)
   if b == nil then
      return false
   end
   if mode == "stream" then
      return string.find(b, "data: %[DONE%]%s*$") ~= nil
   end
   return string.find(b, '"choices"', 1, true) ~= nil
end

function response(status, _, b)
   statuses[status] = (statuses[status] or 0) + 1
   if status ~= 200 then
      bad_status = bad_status + 1
   elseif complete(b) then
      ok = ok + 1
   else
      bad_body = bad_body + 1
   end
end

function done(summary, latency, _)
   local t_ok, t_bad_status, t_bad_body, by_status = 0, 0, 0, {}
   for _, thread in ipairs(threads) do
      t_ok = t_ok + (thread:get("ok") or 0)
      t_bad_status = t_bad_status + (thread:get("bad_status") or 0)
      t_bad_body = t_bad_body + (thread:get("bad_body") or 0)
      for code, n in pairs(thread:get("statuses") or {}) do
         by_status[code] = (by_status[code] or 0) + n
      end
   end
   local codes = {}
   for code, _ in pairs(by_status) do
      table.insert(codes, code)
   end
   table.sort(codes)
   local parts = {}
   for _, code in ipairs(codes) do
      table.insert(parts, string.format("%d:%d", code, by_status[code]))
   end
   local e = summary.errors
   io.write(string.format(
      "WRK_RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d mean_us=%d ok=%d"
         .. " bad_status=%d"
         .. " bad_body=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d statuses=%s\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99),
      latency.mean, t_ok, t_bad_status, t_bad_body, e.connect, e.read, e.write, e.timeout,
      (#parts > 0) and table.concat(parts, ",") or "none"))
end
