-- Gives back unused leases, charges usage beyond them, and keeps a node's slot leases alive.
-- Sent by a node's limiter link in batches (src/limits/cluster/link.rs); never refuses.
-- One item per KEYS entry; ARGV holds 6 values per item:
--   kind   'r' rate bucket | 'b' budget window | 's' concurrency slots
--   op     'g' give back | 'c' charge | 'h' heartbeat (slots) | 's' set this node's slot count
--   amount units to give back or charge
--   limit  r: the limit            b: unused            s: unused
--   p1     r: period in ms         b: window end (ms)   s: this node's id
--   p2     r: unused               b: seed if missing   s: lease ttl in ms
-- Levels never go below zero (a give back after Redis lost its data must not make room that was
-- never taken). Reply: the number of items applied.

local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)

for i = 1, #KEYS do
  local a = (i - 1) * 6
  local kind, op = ARGV[a + 1], ARGV[a + 2]
  local amount, limit = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local p1, p2 = ARGV[a + 5], ARGV[a + 6]
  local key = KEYS[i]
  if kind == 'r' then
    local period_us = tonumber(p1) * 1000
    local h = redis.call('HMGET', key, 'l', 't')
    local level = tonumber(h[1]) or 0
    local at = tonumber(h[2]) or now_us
    if now_us > at and limit > 0 then
      level = math.max(0, level - (now_us - at) * limit / period_us)
    end
    if op == 'g' then level = math.max(0, level - amount) else level = level + amount end
    redis.call('HSET', key, 'l', string.format('%.17g', level), 't', now_us)
    redis.call('PEXPIRE', key, math.ceil(period_us / 1000) * 2)
  elseif kind == 'b' then
    local used = tonumber(redis.call('GET', key) or p2) or 0
    if op == 'g' then used = math.max(0, used - amount) else used = used + amount end
    redis.call('SET', key, string.format('%d', used), 'PXAT', tonumber(p1) + 3600000)
  else
    local node, ttl = p1, tonumber(p2)
    if op == 'g' then
      local mine = tonumber(redis.call('HGET', key, node) or '0')
      redis.call('HSET', key, node, math.max(0, mine - amount))
    elseif op == 's' then
      redis.call('HSET', key, node, amount)
    end
    redis.call('HSET', key, node .. '#e', now_ms + ttl)
    redis.call('PEXPIRE', key, ttl * 10)
  end
end
return #KEYS
