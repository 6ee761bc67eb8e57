-- wrk script for loadtest/ledger.sh: mixed chat traffic for the spend-ledger check. Every request
-- picks (seeded per thread) a team, a feature and a user (the x-tollgate-* headers), one of the
-- model aliases, a prompt size, max_tokens, and a kind:
--   json         non-streamed                                          (55 % of the rest)
--   stream       streamed with stream_options.include_usage            (45 % of the rest)
--   stream_bare  streamed without it: BARE_STREAMS percent (default 0). The gateway passes the
--                client's body through, so the provider reports no usage and the gateway
--                estimates the tokens: the ledger then no longer equals the provider's usage.
-- After ACTIVE_SECONDS the script only sends `GET /v1/models` (answered by the gateway itself,
-- no provider call, no tokens), ten a second per connection, so the chat requests have all
-- finished when wrk stops and cuts whatever is in flight: the ledger and the mock then agree
-- exactly.
--
--   ACTIVE_SECONDS=27 MODELS=chat-a,chat-b TEAMS=5 FEATURES=8 \
--       wrk -t2 -c16 -d30s -s loadtest/ledger.lua http://127.0.0.1:8080
--
-- Output of done() (one line each, parsed by ledger.sh):
--   LEDGER_WRK requests=N ok=N bad_status=N bad_body=N json=N stream=N stream_bare=N models=N
--       connect_errors=N read_errors=N write_errors=N timeouts=N statuses=200:N,...
--   LEDGER_PAIRS team-1/feature-1,team-1/feature-2,...   (team x feature pairs of chat requests sent)
-- `requests` is wrk's count of completed responses; the kind counts are requests sent.

local function env_int(name, default)
   local v = tonumber(os.getenv(name) or "")
   return v and math.floor(v) or default
end

local active_seconds = env_int("ACTIVE_SECONDS", 1000000)
local n_teams = env_int("TEAMS", 5)
local n_features = env_int("FEATURES", 8)
local bare_percent = env_int("BARE_STREAMS", 0)
local models = {}
for m in string.gmatch(os.getenv("MODELS") or "chat-a,chat-b", "[^,]+") do
   table.insert(models, m)
end

-- Words for prompts of varying length (4-5 chars each plus a space).
local words = { "ledger", "spend", "token", "price", "team", "model", "usage", "cost", "gate", "toll" }

local threads = {}
local next_id = 0

function setup(thread)
   next_id = next_id + 1
   thread:set("id", next_id)
   table.insert(threads, thread)
end

function init(_)
   math.randomseed(1000 + (id or 0))
   deadline = os.time() + active_seconds
   counts = { json = 0, stream = 0, stream_bare = 0, models = 0 }
   pairs_used = {}
   ok, bad_status, bad_body = 0, 0, 0
   statuses = {}
end

local function prompt(n)
   local t = {}
   for i = 1, n do
      t[i] = words[math.random(#words)]
   end
   return table.concat(t, " ")
end

function request()
   if os.time() >= deadline then
      counts.models = counts.models + 1
      return wrk.format("GET", "/v1/models", {}, nil)
   end
   local team = "team-" .. math.random(n_teams)
   local feature = "feature-" .. math.random(n_features)
   local user = "user-" .. math.random(50)
   local model = models[math.random(#models)]
   local kind
   if math.random(100) <= bare_percent then
      kind = "stream_bare"
   else
      kind = (math.random(100) <= 55) and "json" or "stream"
   end
   counts[kind] = counts[kind] + 1
   pairs_used[team .. "/" .. feature] = true

   local messages
   if math.random(3) == 1 then
      messages = string.format('[{"role":"system","content":"%s"},{"role":"user","content":"%s"}]',
         prompt(math.random(3, 12)), prompt(math.random(1, 80)))
   else
      messages = string.format('[{"role":"user","content":"%s"}]', prompt(math.random(1, 80)))
   end
   local extra = ""
   if kind == "stream" then
      extra = ',"stream":true,"stream_options":{"include_usage":true}'
   elseif kind == "stream_bare" then
      extra = ',"stream":true'
   end
   local body = string.format('{"model":"%s","max_tokens":%d,"messages":%s%s}',
      model, math.random(1, 40), messages, extra)
   return wrk.format("POST", "/v1/chat/completions", {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer test",
      ["x-tollgate-team"] = team,
      ["x-tollgate-feature"] = feature,
      ["x-tollgate-user"] = user,
   }, body)
end

local function complete(b)
   if b == nil then
      return false
   end
   if string.find(b, "data: %[DONE%]%s*$") then
      return true -- a whole stream
   end
   -- a chat completion, or the model list of the drain phase
   return string.find(b, '"choices"', 1, true) ~= nil or string.find(b, '"object":"list"', 1, true) ~= nil
end

-- In the drain phase, pace the model-list requests (they are there only to keep wrk busy).
function delay()
   if os.time() >= deadline then
      return 100
   end
   return 0
end

-- response() is not told which request it answers, so completeness is judged from the body.
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

function done(summary, _, _)
   local t = { ok = 0, bad_status = 0, bad_body = 0, json = 0, stream = 0, stream_bare = 0, models = 0 }
   local by_status, all_pairs = {}, {}
   for _, thread in ipairs(threads) do
      t.ok = t.ok + (thread:get("ok") or 0)
      t.bad_status = t.bad_status + (thread:get("bad_status") or 0)
      t.bad_body = t.bad_body + (thread:get("bad_body") or 0)
      local c = thread:get("counts") or {}
      for _, k in ipairs({ "json", "stream", "stream_bare", "models" }) do
         t[k] = t[k] + (c[k] or 0)
      end
      for code, n in pairs(thread:get("statuses") or {}) do
         by_status[code] = (by_status[code] or 0) + n
      end
      for p, _ in pairs(thread:get("pairs_used") or {}) do
         all_pairs[p] = true
      end
   end
   local codes, parts = {}, {}
   for code, _ in pairs(by_status) do
      table.insert(codes, code)
   end
   table.sort(codes)
   for _, code in ipairs(codes) do
      table.insert(parts, string.format("%d:%d", code, by_status[code]))
   end
   local plist = {}
   for p, _ in pairs(all_pairs) do
      table.insert(plist, p)
   end
   table.sort(plist)
   local e = summary.errors
   io.write(string.format(
      "LEDGER_WRK requests=%d ok=%d bad_status=%d bad_body=%d json=%d stream=%d stream_bare=%d models=%d"
         .. " connect_errors=%d read_errors=%d write_errors=%d timeouts=%d statuses=%s\n",
      summary.requests, t.ok, t.bad_status, t.bad_body, t.json, t.stream, t.stream_bare, t.models,
      e.connect, e.read, e.write, e.timeout, (#parts > 0) and table.concat(parts, ",") or "none"))
   io.write("LEDGER_PAIRS " .. ((#plist > 0) and table.concat(plist, ",") or "none") .. "\n")
end
