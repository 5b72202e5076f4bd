--- prelude ---
-- Shared by every script below (holds.py prepends it). Each script runs as one atomic step:
-- check, change seat state, maintain the hold's TTL key and the expiry index, take the next
-- sequence number, append the delta to the capped recovery stream and publish it.
--
-- Per screening (all keys share the hash tag {scr:ID}):
--   meta     hash  status, starts_ms, cap:<area> ... (absent => not loaded: caller rebuilds from PostgreSQL)
--   seats    hash  label -> "h:<token>" | "s" | "b"   (free seats are absent)
--   ga       hash  area -> units taken (held + sold)
--   seq      string, the screening's sequence
--   log      stream of recent deltas (field "d"), capped
--   expiry   zset  token -> expiry ms (the sweeper's index)
--   hold:<t> hash  owner, seats (comma separated), area, qty, created_ms, expires_ms, max_ms
--   ttl:<t>  string with the hold's TTL; its expiry is what the keyspace notification reports
--   user:<u> zset  token -> expiry ms (live holds of one user on this screening)
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

-- Emits one delta: next seq, recovery log entry, publish. `changes` is a Lua array of tables.
-- The envelope is written by hand because cjson prints numbers with 14 significant digits,
-- and a seq (which starts at the clock in microseconds) has 16.
local function emit(seq_key, log_key, channel, loglen, changes)
  local seq = string.format('%d', redis.call('INCR', seq_key))
  local _, ts = now_ms()
  local payload = '{"type":"delta","seq":' .. seq .. ',"ts":' .. string.format('%.1f', ts) ..
    ',"changes":' .. cjson.encode(changes) .. '}'
  redis.call('XADD', log_key, 'MAXLEN', '~', loglen, seq .. '-1', 'd', payload)
  redis.call('PUBLISH', channel, payload)
  return seq
end

local function split(s)
  local out = {}
  if s == nil or s == false or s == '' then return out end
  for item in string.gmatch(s, '([^,]+)') do out[#out + 1] = item end
  return out
end

local function ga_change(meta_key, ga_key, area)
  local cap = tonumber(redis.call('HGET', meta_key, 'cap:' .. area) or '0')
  local taken = tonumber(redis.call('HGET', ga_key, area) or '0')
  return {area = area, remaining = cap - taken}
end

-- Frees everything a hold has (seats still marked with its token, GA units) and forgets it.
-- Returns the list of changes (possibly empty).
local function drop_hold(meta_key, seats_key, ga_key, expiry_key, hold_key, ttl_key, user_key, token)
  local hold = redis.call('HMGET', hold_key, 'seats', 'area', 'qty')
  local changes = {}
  local mark = 'h:' .. token
  for _, label in ipairs(split(hold[1])) do
    if redis.call('HGET', seats_key, label) == mark then
      redis.call('HDEL', seats_key, label)
      changes[#changes + 1] = {seat = label, state = 'free'}
    end
  end
  if hold[2] and hold[2] ~= '' then
    local left = redis.call('HINCRBY', ga_key, hold[2], -tonumber(hold[3]))
    if left <= 0 then redis.call('HDEL', ga_key, hold[2]) end
    changes[#changes + 1] = ga_change(meta_key, ga_key, hold[2])
  end
  redis.call('DEL', hold_key, ttl_key)
  redis.call('ZREM', expiry_key, token)
  redis.call('ZREM', user_key, token)
  return changes
end

-- Status check shared by everything that takes inventory.
local function on_sale(meta_key, now)
  local meta = redis.call('HMGET', meta_key, 'status', 'starts_ms')
  if not meta[1] then return 'noinit' end
  if meta[1] ~= 'scheduled' then return meta[1] end
  if now >= tonumber(meta[2]) then return 'started' end
  return nil
end

-- Seats of a row segment: nb hash label -> "left|right" ('' at a gap or row end).
local function neighbour(nb_key, label, side)
  local v = redis.call('HGET', nb_key, label)
  if not v then return nil end
  local l, r = string.match(v, '^([^|]*)|([^|]*)$')
  local n = (side == 1) and l or r
  if n == '' then return nil end
  return n
end

-- The no-stranded-single-seat rule (seats.py explains it; stranded_by there is the same rule).
-- `taking` is a set of labels about to be taken. Returns the label of a seat that would be
-- left alone although another choice could have avoided it, or nil. The rule steps aside when
-- the screening has it off, or when the hall is fuller than `share`.
local function stranded_by(meta_key, seats_key, nb_key, taking, n_taking, share)
  if redis.call('HGET', meta_key, 'strand') ~= '1' then return nil end
  local total = tonumber(redis.call('HGET', meta_key, 'total') or '0')
  if total == 0 or (redis.call('HLEN', seats_key) + n_taking) / total > share then return nil end
  local function free_before(label) return label ~= nil and redis.call('HEXISTS', seats_key, label) == 0 end
  local function free_after(label) return free_before(label) and not taking[label] end
  for label, _ in pairs(taking) do
    for side = 1, 2 do
      local n = neighbour(nb_key, label, side)
      if free_after(n) and not free_after(neighbour(nb_key, n, side)) then
        local run, k = 1, 0
        for dir = 1, 2 do
          local cursor = neighbour(nb_key, n, dir)
          while free_before(cursor) do
            run = run + 1
            if taking[cursor] then k = k + 1 end
            cursor = neighbour(nb_key, cursor, dir)
          end
        end
        if run - k ~= 1 then return n end
      end
    end
  end
  return nil
end

-- Everything a new hold must pass before seats are even looked at. Returns a refusal or nil.
local function admit(meta_key, ga_key, user_key, per_user, area, qty, now)
  local refusal = on_sale(meta_key, now)
  if refusal == 'noinit' then return {'noinit'} elseif refusal then return {'not_on_sale', refusal} end
  redis.call('ZREMRANGEBYSCORE', user_key, '-inf', now)
  if redis.call('ZCARD', user_key) >= per_user then
    return {'hold_limit', unpack(redis.call('ZRANGE', user_key, 0, -1))}
  end
  if area ~= '' then
    local cap = redis.call('HGET', meta_key, 'cap:' .. area)
    if not cap then return {'unknown_area', area} end
    local used = tonumber(redis.call('HGET', ga_key, area) or '0')
    if used + qty > tonumber(cap) then return {'sold_out', tostring(tonumber(cap) - used)} end
  end
  return nil
end

-- Can these seats be taken now? nil if yes, else the refusal ({'taken', n, seats...} or {'strand', seat}).
local function refusal_for(meta_key, seats_key, nb_key, seats, share)
  local taken, blocked, taking = {}, {}, {}
  for _, label in ipairs(seats) do
    taking[label] = true
    local state = redis.call('HGET', seats_key, label)
    if state == 'b' then blocked[#blocked + 1] = label
    elseif state then taken[#taken + 1] = label end
  end
  if #taken > 0 or #blocked > 0 then
    local out = {'taken', #taken}
    for _, s in ipairs(taken) do out[#out + 1] = s end
    for _, s in ipairs(blocked) do out[#out + 1] = s end
    return out
  end
  local lone = stranded_by(meta_key, seats_key, nb_key, taking, #seats, share)
  if lone then return {'strand', lone} end
  return nil
end

-- Takes the chosen seats (and GA units) for a new hold and announces it.
local function create_hold(k, channel, token, owner, ttl_ms, max_ms, loglen, area, qty, chosen, now)
  local changes = {}
  for _, label in ipairs(chosen) do
    redis.call('HSET', k.seats, label, 'h:' .. token)
    changes[#changes + 1] = {seat = label, state = 'held'}
  end
  if area ~= '' then
    redis.call('HINCRBY', k.ga, area, qty)
    changes[#changes + 1] = ga_change(k.meta, k.ga, area)
  end
  local expires = now + ttl_ms
  redis.call('HSET', k.hold, 'owner', owner, 'seats', table.concat(chosen, ','), 'area', area,
    'qty', tostring(qty), 'created_ms', tostring(now), 'expires_ms', tostring(expires),
    'max_ms', tostring(now + max_ms))
  -- The hold hash outlives its TTL key, so the restock can still see what to free.
  redis.call('PEXPIRE', k.hold, max_ms + 3600000)
  redis.call('SET', k.ttl, owner, 'PX', ttl_ms)
  redis.call('ZADD', k.expiry, expires, token)
  redis.call('ZADD', k.user, expires, token)
  redis.call('PEXPIRE', k.user, max_ms)
  local seq = emit(k.seq, k.log, channel, loglen, changes)
  return {'ok', seq, tostring(expires), tostring(now + max_ms), table.concat(chosen, ',')}
end

local function hold_keys()
  return {meta = KEYS[1], seats = KEYS[2], ga = KEYS[3], seq = KEYS[4], log = KEYS[5], expiry = KEYS[6],
          hold = KEYS[7], ttl = KEYS[8], user = KEYS[9], nb = KEYS[10]}
end


--- hold ---
-- A new hold of explicit seats (one candidate), or of the first of several candidates that is
-- entirely free and strands no seat (best-available with split blocks).
-- KEYS: meta seats ga seq log expiry hold ttl user nb
-- ARGV: channel token owner ttl_ms max_ms per_user loglen area qty share n_candidates
--       then per candidate: n seat...
local k = hold_keys()
local channel, token, owner = ARGV[1], ARGV[2], ARGV[3]
local ttl_ms, max_ms, per_user, loglen = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local area, qty, share, n_candidates = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local now = now_ms()
local refusal = admit(k.meta, k.ga, k.user, per_user, area, qty, now)
if refusal then return refusal end
local i = 12
for _ = 1, n_candidates do
  local n = tonumber(ARGV[i])
  local seats = {}
  for j = i + 1, i + n do seats[#seats + 1] = ARGV[j] end
  i = i + n + 1
  refusal = refusal_for(k.meta, k.seats, k.nb, seats, share)
  if not refusal then
    return create_hold(k, channel, token, owner, ttl_ms, max_ms, loglen, area, qty, seats, now)
  end
end
if n_candidates > 1 or not refusal then return {'none'} end
return refusal

--- best ---
-- Best available: walks the screening's ranked list of blocks (best first, computed once from
-- the layout by seats.py) and holds the first that is free and strands no seat. In one step,
-- so concurrent requests never overlap and never fail while a block is left.
-- KEYS: meta seats ga seq log expiry hold ttl user nb ranked
-- ARGV: channel token owner ttl_ms max_ms per_user loglen share
local k = hold_keys()
local ranked = KEYS[11]
local channel, token, owner = ARGV[1], ARGV[2], ARGV[3]
local ttl_ms, max_ms, per_user, loglen = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local share = tonumber(ARGV[8])
local now = now_ms()
local refusal = admit(k.meta, k.ga, k.user, per_user, '', 0, now)
if refusal then return refusal end
local total = redis.call('LLEN', ranked)
if total == 0 then return {'nolist'} end
local start = 0
while start < total do
  for _, entry in ipairs(redis.call('LRANGE', ranked, start, start + 63)) do
    local seats = split(entry)
    if not refusal_for(k.meta, k.seats, k.nb, seats, share) then
      return create_hold(k, channel, token, owner, ttl_ms, max_ms, loglen, '', 0, seats, now)
    end
  end
  start = start + 64
end
return {'none'}

--- modify ---
-- Add and remove seats of a live hold, all or nothing.
-- KEYS: meta seats ga seq log expiry hold ttl user nb
-- ARGV: channel token owner max_seats loglen n_add share add... remove...
local meta_key, seats_key, ga_key, seq_key, log_key, expiry_key, hold_key, ttl_key, user_key, nb_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local channel, token, owner, max_seats, loglen = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local n_add, share = tonumber(ARGV[6]), tonumber(ARGV[7])
local now = now_ms()

if redis.call('HGET', hold_key, 'owner') ~= owner or redis.call('EXISTS', ttl_key) == 0 then
  return {'gone'}
end
local refusal = on_sale(meta_key, now)
if refusal == 'noinit' then return {'noinit'} elseif refusal then return {'not_on_sale', refusal} end

local current, set = split(redis.call('HGET', hold_key, 'seats')), {}
for _, s in ipairs(current) do set[s] = true end
local mark = 'h:' .. token
local taken, blocked, not_held = {}, {}, {}
for i = 8, 7 + n_add do
  local label = ARGV[i]
  if not set[label] then
    local state = redis.call('HGET', seats_key, label)
    if state == 'b' then blocked[#blocked + 1] = label
    elseif state then taken[#taken + 1] = label end
  end
end
for i = 8 + n_add, #ARGV do
  if not set[ARGV[i]] then not_held[#not_held + 1] = ARGV[i] end
end
if #taken > 0 or #blocked > 0 then
  local out = {'taken', #taken}
  for _, s in ipairs(taken) do out[#out + 1] = s end
  for _, s in ipairs(blocked) do out[#out + 1] = s end
  return out
end
if #not_held > 0 then return {'not_held', unpack(not_held)} end

local remove = {}
for i = 8 + n_add, #ARGV do remove[ARGV[i]] = true end
local labels, changes = {}, {}
for _, s in ipairs(current) do
  if remove[s] then
    redis.call('HDEL', seats_key, s)
    changes[#changes + 1] = {seat = s, state = 'free'}
  else
    labels[#labels + 1] = s
  end
end
local added = {}
for i = 8, 7 + n_add do
  local label = ARGV[i]
  if not set[label] and not added[label] and not remove[label] then
    added[label] = true
    labels[#labels + 1] = label
  end
end
if #labels > max_seats then
  -- Nothing is published yet; put back what was freed and refuse.
  for _, c in ipairs(changes) do redis.call('HSET', seats_key, c.seat, mark) end
  return {'too_many', tostring(#labels)}
end
local n_added = 0
for _ in pairs(added) do n_added = n_added + 1 end
if n_added > 0 then
  local lone = stranded_by(meta_key, seats_key, nb_key, added, n_added, share)
  if lone then
    for _, c in ipairs(changes) do redis.call('HSET', seats_key, c.seat, mark) end
    return {'strand', lone}
  end
end
for label, _ in pairs(added) do
  redis.call('HSET', seats_key, label, mark)
  changes[#changes + 1] = {seat = label, state = 'held'}
end
redis.call('HSET', hold_key, 'seats', table.concat(labels, ','))
local seq = '0'
if #changes > 0 then seq = emit(seq_key, log_key, channel, loglen, changes) end
return {'ok', seq, table.concat(labels, ',')}

--- extend ---
-- KEYS: meta hold ttl expiry user        ARGV: token owner ttl_ms
local meta_key, hold_key, ttl_key, expiry_key, user_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token, owner, ttl_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
if redis.call('HGET', hold_key, 'owner') ~= owner or redis.call('EXISTS', ttl_key) == 0 then
  return {'gone'}
end
local refusal = on_sale(meta_key, now)
if refusal == 'noinit' then return {'noinit'} elseif refusal then return {'not_on_sale', refusal} end
local max = tonumber(redis.call('HGET', hold_key, 'max_ms'))
local expires = math.min(now + ttl_ms, max)
redis.call('HSET', hold_key, 'expires_ms', tostring(expires))
redis.call('PEXPIREAT', ttl_key, expires)
redis.call('ZADD', expiry_key, expires, token)
redis.call('ZADD', user_key, expires, token)
local seats, area, qty = unpack(redis.call('HMGET', hold_key, 'seats', 'area', 'qty'))
return {'ok', '0', tostring(expires), tostring(max), seats or '', area or '', qty or ''}

--- release ---
-- The owner gives a hold back.
-- KEYS: meta seats ga seq log expiry hold ttl user     ARGV: channel token owner loglen
local meta_key, seats_key, ga_key, seq_key, log_key, expiry_key, hold_key, ttl_key, user_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local channel, token, owner, loglen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('HGET', hold_key, 'owner') ~= owner or redis.call('EXISTS', ttl_key) == 0 then
  return {'gone'}
end
local changes = drop_hold(meta_key, seats_key, ga_key, expiry_key, hold_key, ttl_key, user_key, token)
local seq = '0'
if #changes > 0 then seq = emit(seq_key, log_key, channel, loglen, changes) end
return {'ok', seq}

--- restock ---
-- An expired hold goes back on sale, exactly once: whoever runs this first (a keyspace
-- notification in any process, or any sweeper) frees the seats; every later run finds the
-- hold gone and does nothing. A hold whose TTL key is still there was extended: left alone.
-- KEYS: meta seats ga seq log expiry hold ttl user      ARGV: channel token loglen
local meta_key, seats_key, ga_key, seq_key, log_key, expiry_key, hold_key, ttl_key, user_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local channel, token, loglen = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', hold_key) == 0 then
  redis.call('ZREM', expiry_key, token)
  return {'gone'}
end
if redis.call('PTTL', ttl_key) > 0 then return {'alive'} end
local changes = drop_hold(meta_key, seats_key, ga_key, expiry_key, hold_key, ttl_key, user_key, token)
local seq = '0'
if #changes > 0 then seq = emit(seq_key, log_key, channel, loglen, changes) end
return {'ok', seq}

--- sell ---
-- The seats of a paid order become sold, after PostgreSQL committed the sale (the truth: a
-- seat sold there is sold here whatever Redis thought). Clears the hold. Runs once per order:
-- a marker makes a repeated call (a retried webhook) a no-op.
-- KEYS: meta seats ga seq log expiry hold ttl user sold_marker
-- ARGV: channel token loglen area qty marker_ttl_ms seat...
local meta_key, seats_key, ga_key, seq_key, log_key, expiry_key, hold_key, ttl_key, user_key, marker_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local channel, token, loglen, area, qty = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if redis.call('EXISTS', meta_key) == 0 then return {'noinit'} end
if not redis.call('SET', marker_key, '1', 'NX', 'PX', ARGV[6]) then return {'done'} end
local changes = {}
for i = 7, #ARGV do
  if redis.call('HGET', seats_key, ARGV[i]) ~= 's' then
    redis.call('HSET', seats_key, ARGV[i], 's')
    changes[#changes + 1] = {seat = ARGV[i], state = 'sold'}
  end
end
if area ~= '' then
  -- A live hold already counts its units as taken; if it was restocked meanwhile, take them again.
  if redis.call('HGET', hold_key, 'area') ~= area then redis.call('HINCRBY', ga_key, area, qty) end
  changes[#changes + 1] = ga_change(meta_key, ga_key, area)
end
if redis.call('EXISTS', hold_key) == 1 then
  -- Seats of the hold that were not sold (none, normally) go back on sale.
  local mark = 'h:' .. token
  for _, label in ipairs(split(redis.call('HGET', hold_key, 'seats'))) do
    if redis.call('HGET', seats_key, label) == mark then
      redis.call('HDEL', seats_key, label)
      changes[#changes + 1] = {seat = label, state = 'free'}
    end
  end
  redis.call('DEL', hold_key, ttl_key)
end
redis.call('ZREM', expiry_key, token)
redis.call('ZREM', user_key, token)
local seq = '0'
if #changes > 0 then seq = emit(seq_key, log_key, channel, loglen, changes) end
return {'ok', seq}

--- init ---
-- Loads a screening's durable state (from PostgreSQL) into an empty Redis, once. The
-- sequence restarts above any number used before (the server's clock in microseconds), so a
-- client resuming from before a Redis restart is told to take a snapshot, never replayed.
-- KEYS: meta seats ga seq nb
-- ARGV: status starts_ms strand total n_states (label state)... n_ga (area cap taken)... n_nb (label "l|r")...
local meta_key, seats_key, ga_key, seq_key, nb_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('EXISTS', meta_key) == 1 then return 0 end
redis.call('DEL', seats_key, ga_key, nb_key)
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
local t = redis.call('TIME')
local floor = tonumber(t[1]) * 1000000 + tonumber(t[2])
local seq = tonumber(redis.call('GET', seq_key) or '0')
if seq < floor then redis.call('SET', seq_key, string.format('%d', floor)) end
redis.call('HSET', meta_key, 'status', ARGV[1], 'starts_ms', ARGV[2], 'strand', ARGV[3], 'total', ARGV[4])
return 1

--- block ---
-- Takes free seats out of sale (admin); refuses, changing nothing, if any is held or sold.
-- KEYS: meta seats seq log     ARGV: channel loglen seat...
if redis.call('EXISTS', KEYS[1]) == 0 then return {'noinit'} end
local busy = {}
for i = 3, #ARGV do
  local state = redis.call('HGET', KEYS[2], ARGV[i])
  if state and state ~= 'b' then busy[#busy + 1] = ARGV[i] end
end
if #busy > 0 then return {'busy', unpack(busy)} end
local changes = {}
for i = 3, #ARGV do
  if not redis.call('HGET', KEYS[2], ARGV[i]) then
    redis.call('HSET', KEYS[2], ARGV[i], 'b')
    changes[#changes + 1] = {seat = ARGV[i], state = 'blocked'}
  end
end
local seq = '0'
if #changes > 0 then seq = emit(KEYS[3], KEYS[4], ARGV[1], ARGV[2], changes) end
return {'ok', seq}

--- unblock ---
-- KEYS: meta seats seq log     ARGV: channel loglen seat...
if redis.call('EXISTS', KEYS[1]) == 0 then return {'noinit'} end
local changes = {}
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == 'b' then
    redis.call('HDEL', KEYS[2], ARGV[i])
    changes[#changes + 1] = {seat = ARGV[i], state = 'free'}
  end
end
local seq = '0'
if #changes > 0 then seq = emit(KEYS[3], KEYS[4], ARGV[1], ARGV[2], changes) end
return {'ok', seq}

--- snapshot ---
-- KEYS: meta seats ga seq      Returns: seq status starts_ms {seats flat} {ga taken flat} {caps flat}
if redis.call('EXISTS', KEYS[1]) == 0 then return {'noinit'} end
local meta = redis.call('HGETALL', KEYS[1])
return {redis.call('GET', KEYS[4]) or '0', redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), meta}

--- status ---
-- Changes a screening's status (cancel, publish) and tells every viewer, in order with deltas.
-- KEYS: meta seq log       ARGV: channel status starts_ms loglen
if redis.call('EXISTS', KEYS[1]) == 0 then return {'noinit'} end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'starts_ms', ARGV[3])
local seq = string.format('%d', redis.call('INCR', KEYS[2]))
local payload = '{"type":"status","seq":' .. seq .. ',"status":' .. cjson.encode(ARGV[2]) .. '}'
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], seq .. '-1', 'd', payload)
redis.call('PUBLISH', ARGV[1], payload)
return {'ok', seq}

--- free ---
-- A refunded order's seats and GA units stop being sold (on sale again, unless the screening
-- was cancelled), after PostgreSQL voided its tickets. Once per order: a marker makes a
-- repeated call (a retried refund job) a no-op, so it never frees a seat sold again since.
-- Not loaded ('noinit'): nothing to do, a load from PostgreSQL already shows the seats free.
-- KEYS: meta seats ga seq log marker
-- ARGV: channel loglen area qty marker_ttl_ms seat...
local meta_key, seats_key, ga_key, seq_key, log_key, marker_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local channel, loglen, area, qty = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('EXISTS', meta_key) == 0 then return {'noinit'} end
if not redis.call('SET', marker_key, '1', 'NX', 'PX', ARGV[5]) then return {'done'} end
local changes = {}
for i = 6, #ARGV do
  if redis.call('HGET', seats_key, ARGV[i]) == 's' then
    redis.call('HDEL', seats_key, ARGV[i])
    changes[#changes + 1] = {seat = ARGV[i], state = 'free'}
  end
end
if area ~= '' and qty > 0 then
  local left = redis.call('HINCRBY', ga_key, area, -qty)
  if left <= 0 then redis.call('HDEL', ga_key, area) end
  changes[#changes + 1] = ga_change(meta_key, ga_key, area)
end
local seq = '0'
if #changes > 0 then seq = emit(seq_key, log_key, channel, loglen, changes) end
return {'ok', seq}

--- drop_holds ---
-- Every live hold of a cancelled screening goes at once, in one delta. Run after the status
-- became `cancelled` (so no new hold can appear); the caller lists the holds from the expiry
-- index, with each one's keys.
-- KEYS: meta seats ga seq log expiry, then per hold: hold ttl user
-- ARGV: channel loglen token...
local meta_key, seats_key, ga_key, seq_key, log_key, expiry_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local channel, loglen = ARGV[1], ARGV[2]
if redis.call('EXISTS', meta_key) == 0 then return {'noinit'} end
local changes, dropped = {}, 0
for i = 3, #ARGV do
  local k = 7 + (i - 3) * 3
  if redis.call('EXISTS', KEYS[k]) == 1 then dropped = dropped + 1 end
  for _, c in ipairs(drop_hold(meta_key, seats_key, ga_key, expiry_key, KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[i])) do
    changes[#changes + 1] = c
  end
end
local seq = '0'
if #changes > 0 then seq = emit(seq_key, log_key, channel, loglen, changes) end
return {'ok', seq, dropped}
