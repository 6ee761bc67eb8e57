-- Leases quota for one request from every shared counter it needs, all or nothing.
-- Called by the gateway's limiter when a node's local lease of some counter cannot cover a
-- request (src/limits/cluster/). One item per KEYS entry; ARGV holds 7 values per item:
--   kind   'r' rate bucket (rpm, tpm, tpd) | 'b' budget window | 's' concurrency slots
--   min    the least the request can use (its shortfall)
--   want   what the node would like (min plus a lease chunk)
--   limit  the counter's limit
--   p1     r: period in ms      b: window end (Unix ms)   s: this node's id
--   p2     r: ceiling 0..1      b: seed (spend known for the window if the key is missing)
--          s: lease ttl in ms
--   p3     r: unused            b: unused                 s: unused
-- Reply, success: {1, grant_1, level_1, ..., grant_n, level_n}, `level` the counter's use after
-- the grant (rates: units in the bucket; budgets: spend plus leases; slots: leased cluster-wide).
-- Reply, refusal: {0, item index (1-based), retry after ms, over_ceiling 0|1, level}, `level` the
-- refused counter's use as it stands (the node remembers it briefly, to refuse locally what
-- would not fit either). Nothing is written.
--
-- Rates are leaky buckets in units: {l = level, t = time in us}; the level drains at limit/period.
-- That is the same bucket as the local GCRA (a reservation fits if the level after it is at most
-- the limit), kept in units so a limit change does not rescale what was used.

local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local n = #KEYS
local grants, levels, writes = {}, {}, {}

for i = 1, n do
  local a = (i - 1) * 7
  local kind = ARGV[a + 1]
  local min, want, limit = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local p1, p2 = ARGV[a + 5], ARGV[a + 6]
  local key = KEYS[i]
  if kind == 'r' then
    local period_us = tonumber(p1) * 1000
    local ceiling = tonumber(p2)
    local h = redis.call('HMGET', key, 'l', 't')
    local level = tonumber(h[1]) or 0
    local at = tonumber(h[2]) or now_us
    if now_us > at then
      level = math.max(0, level - (now_us - at) * limit / period_us)
    end
    local cap = limit * ceiling
    if level + min > cap then
      local over = level + min - cap
      local retry
      if min > cap then
        retry = period_us / 1000
      else
        retry = math.ceil(over * period_us / limit / 1000)
      end
      local over_ceiling = 0
      if ceiling < 1 and level + min <= limit then over_ceiling = 1 end
      return {0, i, math.max(1, retry), over_ceiling, math.floor(level)}
    end
    local grant = math.min(want, math.floor(cap - level))
    if grant < min then grant = min end
    grants[i], levels[i] = grant, level + grant
    writes[i] = {'r', level + grant, period_us}
  elseif kind == 'b' then
    local used = tonumber(redis.call('GET', key) or p2) or 0
    if used + min > limit then
      return {0, i, math.max(1, tonumber(p1) - now_ms), 0, used}
    end
    local grant = math.min(want, limit - used)
    grants[i], levels[i] = grant, used + grant
    writes[i] = {'b', used + grant, tonumber(p1)}
  else
    local node, ttl = p1, tonumber(p2)
    local all = redis.call('HGETALL', key)
    local total, expired = 0, {}
    for j = 1, #all, 2 do
      local field = all[j]
      if string.sub(field, -2) == '#e' then
        if tonumber(all[j + 1]) < now_ms then
          local owner = string.sub(field, 1, -3)
          expired[#expired + 1] = owner
        end
      end
    end
    local dead = {}
    for _, owner in ipairs(expired) do dead[owner] = true end
    for j = 1, #all, 2 do
      local field = all[j]
      if string.sub(field, -2) ~= '#e' and not dead[field] and field ~= node then
        total = total + math.max(0, tonumber(all[j + 1]))
      end
    end
    local mine = 0
    if not dead[node] then mine = math.max(0, tonumber(redis.call('HGET', key, node) or '0')) end
    total = total + mine
    if total + min > limit then
      return {0, i, 1000, 0, total}
    end
    local grant = math.min(want, limit - total)
    grants[i], levels[i] = grant, total + grant
    writes[i] = {'s', mine + grant, node, ttl, expired}
  end
end

local reply = {1}
for i = 1, n do
  local w, key = writes[i], KEYS[i]
  if w[1] == 'r' then
    redis.call('HSET', key, 'l', string.format('%.17g', w[2]), 't', now_us)
    redis.call('PEXPIRE', key, math.ceil(w[3] / 1000) * 2)
  elseif w[1] == 'b' then
    redis.call('SET', key, string.format('%d', w[2]), 'PXAT', w[3] + 3600000)
  else
    for _, owner in ipairs(w[5]) do redis.call('HDEL', key, owner, owner .. '#e') end
    redis.call('HSET', key, w[3], w[2], w[3] .. '#e', now_ms + w[4])
    redis.call('PEXPIRE', key, w[4] * 10)
  end
  reply[#reply + 1] = grants[i]
  reply[#reply + 1] = math.floor(levels[i])
end
return reply
