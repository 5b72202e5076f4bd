-- A screening's state as a whole: loaded from PostgreSQL, read at once, its status changed.

--- init ---
-- Loads a screening's durable state (from PostgreSQL) into an empty Redis, once. The
-- sequence restarts above any number used before (the server's clock in microseconds), so a
-- client resuming from before a Redis restart is told to take a snapshot, never replayed.
-- Each sold seat and GA unit remembers the order it was sold to (`owners`, `ga_orders`), so a
-- refund frees only what is still its own (restock.lua `free`).
-- KEYS: meta seats ga seq nb owners ga_orders
-- ARGV: status starts_ms strand total n_states (label state)... n_ga (area cap taken)... n_nb (label "l|r")...
--       n_owners (label order)... n_ga_orders (order units)...
-- Reply: Loaded(fresh): fresh is 0 when another process loaded it first
local meta_key, seats_key, ga_key, seq_key, nb_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local owners_key, ga_orders_key = KEYS[6], KEYS[7]
if redis.call('EXISTS', meta_key) == 1 then return reply('ok', 0) end
redis.call('DEL', seats_key, ga_key, nb_key, owners_key, ga_orders_key)
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  redis.call('HSET', seats_key, ARGV[i], ARGV[i + 1])
  i = i + 2
end
local n_ga = tonumber(ARGV[i])
i = i + 1
for _ = 1, n_ga do
  redis.call('HSET', meta_key, 'cap:' .. ARGV[i], ARGV[i + 1])
  if tonumber(ARGV[i + 2]) > 0 then redis.call('HSET', ga_key, ARGV[i], ARGV[i + 2]) end
  i = i + 3
end
local n_nb = tonumber(ARGV[i])
i = i + 1
for _ = 1, n_nb do
  redis.call('HSET', nb_key, ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _, key in ipairs({owners_key, ga_orders_key}) do
  local n = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, n do
    redis.call('HSET', key, ARGV[i], ARGV[i + 1])
    i = i + 2
  end
end
local t = redis.call('TIME')
local floor = tonumber(t[1]) * 1000000 + tonumber(t[2])
local seq = tonumber(redis.call('GET', seq_key) or '0')
if seq < floor then redis.call('SET', seq_key, string.format('%d', floor)) end
-- `owned`: this load recorded the owners (a screening loaded by an older version did not).
redis.call('HSET', meta_key, 'status', ARGV[1], 'starts_ms', ARGV[2], 'strand', ARGV[3], 'total', ARGV[4], 'owned', '1')
return reply('ok', 1)

--- snapshot ---
-- Every seat that is not free with its public state, the units left per GA area, the status,
-- and the seq they are current at.
-- KEYS: meta seats ga seq
-- Reply: SeatMap(seq, {label: held|sold|blocked}, {area: units left}, status), not tagged
if redis.call('EXISTS', KEYS[1]) == 0 then return reply('noinit') end
local flat = redis.call('HGETALL', KEYS[2])
local seats = {}
for i = 1, #flat, 2 do
  local state = flat[i + 1]
  seats[flat[i]] = (state == 's' and 'sold') or (state == 'b' and 'blocked') or 'held'
end
local meta = redis.call('HGETALL', KEYS[1])
local ga, status = {}, 'scheduled'
for i = 1, #meta, 2 do
  local field = meta[i]
  if field == 'status' then status = meta[i + 1]
  elseif string.sub(field, 1, 4) == 'cap:' then
    local area = string.sub(field, 5)
    ga[area] = tonumber(meta[i + 1]) - tonumber(redis.call('HGET', KEYS[3], area) or '0')
  end
end
-- By hand: the seq has 16 digits (see `reply`), and seats and ga are objects, {} when empty.
return '[' .. (redis.call('GET', KEYS[4]) or '0') .. ',' .. cjson.encode(seats) .. ',' .. cjson.encode(ga) ..
  ',' .. cjson.encode(status) .. ']'

--- status ---
-- Changes a screening's status (cancel, publish) and tells every viewer, in order with deltas.
-- KEYS: meta seq log       ARGV: channel status starts_ms loglen
-- Reply: Changed(seq)
if redis.call('EXISTS', KEYS[1]) == 0 then return reply('noinit') end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'starts_ms', ARGV[3])
return reply('ok', emit(KEYS[2], KEYS[3], ARGV[1], ARGV[4], 'status', ',"status":' .. cjson.encode(ARGV[2])))
