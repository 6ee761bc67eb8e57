-- wrk script for loadtest/limits-ab.sh: alternate every request between two virtual keys on ONE
-- gateway (KEY_A: no limits anywhere, KEY_B: limits on its key and team) and time each request
-- on the client, so both keys' latencies come from the same seconds of the same process and the
-- machine's noise falls on both alike.
--
--   BODY_FILE=loadtest/body-json.json KEY_A=... KEY_B=... VARY=1 \
--       wrk -t1 -c1 -d30s -s loadtest/ab.lua http://127.0.0.1:8080/v1/chat/completions
--
-- One thread and ONE connection only: request() and response() then strictly alternate, which
-- is what pairs a response with its start time. The clock is CLOCK_MONOTONIC through LuaJIT's
-- FFI, read in request() (just before wrk writes the request) and in response() (after the last
-- body byte), so a latency here is what wrk itself would measure.
--
-- Checks: every answer is 200 with a "choices" array; KEY_B's answers carry
-- x-ratelimit-limit-requests (its limiter ran) and KEY_A's do not (its did not).
--
-- Output (one line, parsed by limits-ab.sh; µs):
--   AB_RESULT a_n=N b_n=N a_p50=N b_p50=N a_p90=N b_p90=N a_p99=N b_p99=N a_mean=N b_mean=N
--   diff_p50=N block_diffs=d1,d2,... paired_median=N bad=N header_mismatch=N a_overhead_p50=N
--   b_overhead_p50=N
-- a/b_overhead_p50: the median of the gateway's own x-tollgate-overhead-us per key (its time
-- for the request minus the provider's).
-- block_diffs: the run cut into BLOCKS (default 10) consecutive stretches, p50(B) - p50(A) in
-- each; paired_median: the median over adjacent pairs of (B's latency - A's latency).

local b_limited = os.getenv("B_LIMITED") ~= "0"
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } tg_ab_timespec;
int clock_gettime(int clk_id, tg_ab_timespec *tp);
]]
local ts = ffi.new("tg_ab_timespec")
local function now_us()
   ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
   return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

local function need(name)
   local v = os.getenv(name)
   if not v or v == "" then
      error("ab.lua: set " .. name)
   end
   return v
end

local f = assert(io.open(need("BODY_FILE"), "rb"))
local body = f:read("*a")
f:close()
local key_a, key_b = need("KEY_A"), need("KEY_B")
local blocks = tonumber(os.getenv("BLOCKS") or "10")

-- VARY=1: a new number at the start of the last message's content, as in post.lua.
local vary = os.getenv("VARY") == "1"
local head, tail = body, ""
if vary then
   -- vary.lua sits next to this script.
   local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
   head, tail = dofile(dir .. "vary.lua")(body, "ab.lua")
end

local threads = {}
function setup(thread)
   table.insert(threads, thread)
end

local counter, started, current = 0, 0, "a"
function init(_)
   lat_a, lat_b = {}, {}
   over_a, over_b = {}, {}
   bad, header_mismatch = 0, 0
end

local headers_a = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key_a }
local headers_b = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key_b }

function request()
   counter = counter + 1
   current = (counter % 2 == 1) and "a" or "b"
   local b = body
   if vary then
      b = head .. "#" .. counter .. " " .. tail
   end
   local req = wrk.format("POST", nil, current == "a" and headers_a or headers_b, b)
   started = now_us()
   return req
end

function response(status, hdrs, b)
   local took = now_us() - started
   if status ~= 200 or b == nil or not string.find(b, '"choices"', 1, true) then
      bad = bad + 1
      return
   end
   -- Direct lookups (the gateway sends lower-case names): the same cost for both keys, however
   -- many headers an answer has.
   local limited = hdrs["x-ratelimit-limit-requests"] ~= nil
   local overhead = tonumber(hdrs["x-tollgate-overhead-us"])
   -- (With B_LIMITED=0 the keys differ by something else, e.g. a guardrail policy: neither is limited.)
   if limited ~= (current == "b" and b_limited) then
      header_mismatch = header_mismatch + 1
   end
   if current == "a" then
      table.insert(lat_a, took)
      table.insert(over_a, overhead or 0)
   else
      table.insert(lat_b, took)
      table.insert(over_b, overhead or 0)
   end
end

local function pct(sorted, p)
   if #sorted == 0 then
      return 0
   end
   local i = math.max(1, math.ceil(#sorted * p / 100))
   return sorted[i]
end

local function sorted_copy(t, from, to)
   local s = {}
   for i = from, to do
      s[#s + 1] = t[i]
   end
   table.sort(s)
   return s
end

local function mean(t)
   local s = 0
   for _, v in ipairs(t) do
      s = s + v
   end
   return (#t > 0) and s / #t or 0
end

function done(_, _, _)
   local a, b, oa, ob, t_bad, t_mismatch = {}, {}, {}, {}, 0, 0
   for _, thread in ipairs(threads) do
      for _, v in ipairs(thread:get("lat_a") or {}) do a[#a + 1] = v end
      for _, v in ipairs(thread:get("lat_b") or {}) do b[#b + 1] = v end
      for _, v in ipairs(thread:get("over_a") or {}) do oa[#oa + 1] = v end
      for _, v in ipairs(thread:get("over_b") or {}) do ob[#ob + 1] = v end
      t_bad = t_bad + (thread:get("bad") or 0)
      t_mismatch = t_mismatch + (thread:get("header_mismatch") or 0)
   end
   local n = math.min(#a, #b)
   local sa, sb = sorted_copy(a, 1, #a), sorted_copy(b, 1, #b)
   local soa, sob = sorted_copy(oa, 1, #oa), sorted_copy(ob, 1, #ob)
   local diffs = {}
   if n >= blocks then
      local size = math.floor(n / blocks)
      for k = 0, blocks - 1 do
         local from, to = k * size + 1, (k + 1) * size
         diffs[#diffs + 1] = string.format("%.0f",
            pct(sorted_copy(b, from, to), 50) - pct(sorted_copy(a, from, to), 50))
      end
   end
   local pairs_d = {}
   for i = 1, n do
      pairs_d[i] = b[i] - a[i]
   end
   table.sort(pairs_d)
   io.write(string.format(
      "AB_RESULT a_n=%d b_n=%d a_p50=%.0f b_p50=%.0f a_p90=%.0f b_p90=%.0f a_p99=%.0f b_p99=%.0f"
         .. " a_mean=%.0f b_mean=%.0f diff_p50=%.0f block_diffs=%s paired_median=%.0f bad=%d"
         .. " header_mismatch=%d a_overhead_p50=%.0f b_overhead_p50=%.0f\n",
      #a, #b, pct(sa, 50), pct(sb, 50), pct(sa, 90), pct(sb, 90), pct(sa, 99), pct(sb, 99),
      mean(a), mean(b), pct(sb, 50) - pct(sa, 50),
      (#diffs > 0) and table.concat(diffs, ",") or "-", pct(pairs_d, 50), t_bad, t_mismatch,
      pct(soa, 50), pct(sob, 50)))
end
