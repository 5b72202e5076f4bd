-- A hold's life: taken (explicit seats, GA units or best available), changed, extended,
-- given back, sold. The helpers below are shared by these scripts only.

-- A neighbour of a seat in its row segment (nb hash label -> "left|right"), or nil.
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

-- Is this the owner's live hold? nil if yes, else the reply: Expired when its deadline passed
-- (restocked or about to be), Gone when it never was the owner's, was released or sold.
local function owned(hold_key, ttl_key, expired_key, owner)
  if redis.call('HGET', hold_key, 'owner') == owner then
    if redis.call('EXISTS', ttl_key) == 1 then return nil end
    return reply('expired')
  end
  if redis.call('GET', expired_key) == owner then return reply('expired') end
  return reply('gone')
end

-- Everything a new hold must pass before seats are even looked at. Returns a refusal or nil.
local function admit(meta_key, ga_key, user_key, per_user, area, qty, now)
  local refusal = on_sale(meta_key, now)
  if refusal == 'noinit' then return reply('noinit') elseif refusal then return reply('not_on_sale', refusal) end
  redis.call('ZREMRANGEBYSCORE', user_key, '-inf', now)
  if redis.call('ZCARD', user_key) >= per_user then
    return reply('hold_limit', redis.call('ZRANGE', user_key, 0, -1))
  end
  if area ~= '' then
    local cap = redis.call('HGET', meta_key, 'cap:' .. area)
    if not cap then return reply('unknown_area', area) end
    local used = tonumber(redis.call('HGET', ga_key, area) or '0')
    if used + qty > tonumber(cap) then return reply('sold_out', tonumber(cap) - used) end
  end
  return nil
end

-- Would `units` more held seats take the address past its cap? The refusal, or nil.
-- An empty address (a hold made without one) or a cap of 0 is not capped.
local function address_refusal(addrs_key, addr, cap, units)
  if addr == '' or cap == 0 or units <= 0 then return nil end
  local held = tonumber(redis.call('HGET', addrs_key, addr) or '0')
  if held + units > cap then return reply('address_limit', cap, held) end
  return nil
end

-- Seats held or sold by others, and blocked seats, among `labels` (skipping those in `mine`).
local function unavailable(seats_key, labels, mine)
  local taken, blocked = {}, {}
  for _, label in ipairs(labels) do
    if not mine[label] then
      local state = redis.call('HGET', seats_key, label)
      if state == 'b' then blocked[#blocked + 1] = label
      elseif state then taken[#taken + 1] = label end
    end
  end
  return taken, blocked
end

-- Can these seats be taken now? nil if yes, else the refusal: Taken(taken, blocked) or Strand(seat).
local function refusal_for(meta_key, seats_key, nb_key, seats, share)
  local taken, blocked = unavailable(seats_key, seats, {})
  if #taken > 0 or #blocked > 0 then return reply('taken', taken, blocked) end
  local taking = {}
  for _, label in ipairs(seats) do taking[label] = true end
  local lone = stranded_by(meta_key, seats_key, nb_key, taking, #seats, share)
  if lone then return reply('strand', lone) end
  return nil
end

-- Takes the chosen seats (and GA units) for a new hold and announces it. Reply: Held.
local function create_hold(k, channel, token, owner, ttl_ms, max_ms, loglen, area, qty, chosen, now, addr)
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
    'max_ms', tostring(now + max_ms), 'addr', addr)
  if addr ~= '' then
    redis.call('HINCRBY', k.addrs, addr, #chosen + qty)
    redis.call('PEXPIRE', k.addrs, max_ms + 3600000)
  end
  -- The hold hash outlives its TTL key, so the restock can still see what to free.
  redis.call('PEXPIRE', k.hold, max_ms + 3600000)
  redis.call('SET', k.ttl, owner, 'PX', ttl_ms)
  redis.call('ZADD', k.expiry, expires, token)
  redis.call('ZADD', k.user, expires, token)
  redis.call('PEXPIRE', k.user, max_ms)
  local seq = emit_changes(k.seq, k.log, channel, loglen, changes)
  return reply('ok', seq, expires, now + max_ms, chosen)
end

local function hold_keys()
  return {meta = KEYS[1], seats = KEYS[2], ga = KEYS[3], seq = KEYS[4], log = KEYS[5], expiry = KEYS[6],
          hold = KEYS[7], ttl = KEYS[8], user = KEYS[9], nb = KEYS[10], addrs = KEYS[#KEYS]}
end


--- hold ---
-- A new hold of explicit seats (one candidate), or of the first of several candidates that is
-- entirely free and strands no seat (best-available with split blocks).
-- KEYS: meta seats ga seq log expiry hold ttl user nb addrs
-- ARGV: channel token owner ttl_ms max_ms per_user loglen area qty share addr addr_cap n_candidates
--       then per candidate: n seat...
-- Reply: Held | Taken | Strand | NotOnSale | HoldLimit | UnknownArea | SoldOut | AddressLimit | NoneFree
local k = hold_keys()
local channel, token, owner = ARGV[1], ARGV[2], ARGV[3]
local ttl_ms, max_ms, per_user, loglen = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local area, qty, share = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local addr, addr_cap, n_candidates = ARGV[11], tonumber(ARGV[12]), tonumber(ARGV[13])
local now = now_ms()
local refusal = admit(k.meta, k.ga, k.user, per_user, area, qty, now)
if refusal then return refusal end
local i = 14
for _ = 1, n_candidates do
  local n = tonumber(ARGV[i])
  local seats = {}
  for j = i + 1, i + n do seats[#seats + 1] = ARGV[j] end
  i = i + n + 1
  local over = address_refusal(k.addrs, addr, addr_cap, n + qty)
  if over then return over end
  refusal = refusal_for(k.meta, k.seats, k.nb, seats, share)
  if not refusal then
    return create_hold(k, channel, token, owner, ttl_ms, max_ms, loglen, area, qty, seats, now, addr)
  end
end
if n_candidates > 1 or not refusal then return reply('none') end
return refusal

--- best ---
-- Best available: walks the screening's ranked list of blocks (best first, computed once from
-- the layout by seats.py) and holds the first that is free and strands no seat. In one step,
-- so concurrent requests never overlap and never fail while a block is left.
-- KEYS: meta seats ga seq log expiry hold ttl user nb ranked addrs
-- ARGV: channel token owner ttl_ms max_ms per_user loglen share addr addr_cap count
-- Reply: Held | NotOnSale | HoldLimit | AddressLimit | NoneFree | NoList (the ranked list is not stored)
local k = hold_keys()
local ranked = KEYS[11]
local channel, token, owner = ARGV[1], ARGV[2], ARGV[3]
local ttl_ms, max_ms, per_user, loglen = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local share, addr, addr_cap = tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10])
local now = now_ms()
local refusal = admit(k.meta, k.ga, k.user, per_user, '', 0, now)
if refusal then return refusal end
local over = address_refusal(k.addrs, addr, addr_cap, tonumber(ARGV[11]))
if over then return over end
local total = redis.call('LLEN', ranked)
if total == 0 then return reply('nolist') end
local start = 0
while start < total do
  for _, entry in ipairs(redis.call('LRANGE', ranked, start, start + 63)) do
    local seats = split(entry)
    if not refusal_for(k.meta, k.seats, k.nb, seats, share) then
      return create_hold(k, channel, token, owner, ttl_ms, max_ms, loglen, '', 0, seats, now, addr)
    end
  end
  start = start + 64
end
return reply('none')

--- modify ---
-- Add and remove seats of a live hold, all or nothing.
-- KEYS: meta seats ga seq log expiry hold ttl user nb expired addrs
-- ARGV: channel token owner max_seats loglen n_add share addr_cap add... remove...
-- Reply: Modified | Gone | Expired | NotOnSale | Taken | NotHeld | TooMany | Strand | AddressLimit
local meta_key, seats_key, hold_key, ttl_key, nb_key, expired_key = KEYS[1], KEYS[2], KEYS[7], KEYS[8], KEYS[10], KEYS[11]
local seq_key, log_key, addrs_key = KEYS[4], KEYS[5], KEYS[12]
local channel, token, owner, max_seats, loglen = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local n_add, share, addr_cap = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local now = now_ms()

local gone = owned(hold_key, ttl_key, expired_key, owner)
if gone then return gone end
local refusal = on_sale(meta_key, now)
if refusal == 'noinit' then return reply('noinit') elseif refusal then return reply('not_on_sale', refusal) end

local current, set = split(redis.call('HGET', hold_key, 'seats')), {}
for _, s in ipairs(current) do set[s] = true end
local mark = 'h:' .. token
local adding, removing = {}, {}
for i = 9, 8 + n_add do adding[#adding + 1] = ARGV[i] end
for i = 9 + n_add, #ARGV do removing[#removing + 1] = ARGV[i] end
local taken, blocked = unavailable(seats_key, adding, set)
if #taken > 0 or #blocked > 0 then return reply('taken', taken, blocked) end
local not_held = {}
for _, label in ipairs(removing) do
  if not set[label] then not_held[#not_held + 1] = label end
end
if #not_held > 0 then return reply('not_held', not_held) end

local remove = {}
for _, label in ipairs(removing) do remove[label] = true end
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
for _, label in ipairs(adding) do
  if not set[label] and not added[label] and not remove[label] then
    added[label] = true
    labels[#labels + 1] = label
  end
end
if #labels > max_seats then
  -- Nothing is published yet; put back what was freed and refuse.
  for _, c in ipairs(changes) do redis.call('HSET', seats_key, c.seat, mark) end
  return reply('too_many', #labels, max_seats)
end
local n_added = 0
for _ in pairs(added) do n_added = n_added + 1 end
local addr = redis.call('HGET', hold_key, 'addr') or ''
local over = address_refusal(addrs_key, addr, addr_cap, #labels - #current)
if over then
  for _, c in ipairs(changes) do redis.call('HSET', seats_key, c.seat, mark) end
  return over
end
if n_added > 0 then
  local lone = stranded_by(meta_key, seats_key, nb_key, added, n_added, share)
  if lone then
    for _, c in ipairs(changes) do redis.call('HSET', seats_key, c.seat, mark) end
    return reply('strand', lone)
  end
end
for label, _ in pairs(added) do
  redis.call('HSET', seats_key, label, mark)
  changes[#changes + 1] = {seat = label, state = 'held'}
end
redis.call('HSET', hold_key, 'seats', table.concat(labels, ','))
if addr ~= '' and #labels ~= #current then
  if #labels > #current then redis.call('HINCRBY', addrs_key, addr, #labels - #current)
  else uncount_address(addrs_key, addr, #current - #labels) end
end
local seq = 0
if #changes > 0 then seq = emit_changes(seq_key, log_key, channel, loglen, changes) end
return reply('ok', seq, labels)

--- extend ---
-- Pushes a live hold's deadline out by its TTL, never past its maximum lifetime.
-- KEYS: meta hold ttl expiry user expired        ARGV: token owner ttl_ms
-- Reply: Extended | Gone | Expired | NotOnSale
local meta_key, hold_key, ttl_key, expiry_key, user_key, expired_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local token, owner, ttl_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local gone = owned(hold_key, ttl_key, expired_key, owner)
if gone then return gone end
local refusal = on_sale(meta_key, now)
if refusal == 'noinit' then return reply('noinit') elseif refusal then return reply('not_on_sale', refusal) end
local max = tonumber(redis.call('HGET', hold_key, 'max_ms'))
local expires = math.min(now + ttl_ms, max)
redis.call('HSET', hold_key, 'expires_ms', tostring(expires))
redis.call('PEXPIREAT', ttl_key, expires)
redis.call('ZADD', expiry_key, expires, token)
redis.call('ZADD', user_key, expires, token)
local seats, area, qty = unpack(redis.call('HMGET', hold_key, 'seats', 'area', 'qty'))
return reply('ok', expires, max, split(seats), area or '', tonumber(qty) or 0)

--- release ---
-- The owner gives a hold back.
-- KEYS: meta seats ga seq log expiry hold ttl user expired addrs     ARGV: channel token owner loglen
-- Reply: Changed | Gone | Expired
local meta_key, seats_key, ga_key, seq_key, log_key, expiry_key, hold_key, ttl_key, user_key, expired_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local channel, token, owner, loglen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local gone = owned(hold_key, ttl_key, expired_key, owner)
if gone then return gone end
local changes = drop_hold(meta_key, seats_key, ga_key, expiry_key, hold_key, ttl_key, user_key, token, KEYS[11])
local seq = 0
if #changes > 0 then seq = emit_changes(seq_key, log_key, channel, loglen, changes) end
return reply('ok', seq)

--- sell ---
-- The seats of a paid order become sold, after PostgreSQL committed the sale (the truth: a
-- seat sold there is sold here whatever Redis thought), and remember the order they are sold
-- to (`owners`, `ga_orders`: a refund frees only what is still its own). Clears the hold. Runs
-- once per order: a marker makes a repeated call (a retried webhook) a no-op, and GA units
-- already counted for the order (a rebuild from PostgreSQL counted them) are not counted again.
-- KEYS: meta seats ga seq log expiry hold ttl user sold_marker addrs owners ga_orders
-- ARGV: channel token loglen area qty marker_ttl_ms order_ref seat...
-- Reply: Changed | Done (sold before)
local meta_key, seats_key, ga_key, seq_key, log_key, expiry_key, hold_key, ttl_key, user_key, marker_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local owners_key, ga_orders_key = KEYS[12], KEYS[13]
local channel, token, loglen, area, qty = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local order_ref = ARGV[7]
if redis.call('EXISTS', meta_key) == 0 then return reply('noinit') end
if not redis.call('SET', marker_key, '1', 'NX', 'PX', ARGV[6]) then return reply('done') end
local changes = {}
for i = 8, #ARGV do
  if redis.call('HGET', seats_key, ARGV[i]) ~= 's' then
    redis.call('HSET', seats_key, ARGV[i], 's')
    changes[#changes + 1] = {seat = ARGV[i], state = 'sold'}
  end
  redis.call('HSET', owners_key, ARGV[i], order_ref)
end
if area ~= '' then
  -- A live hold already counts its units as taken; if it was restocked meanwhile, take them again.
  if redis.call('HSETNX', ga_orders_key, order_ref, qty) == 1 and redis.call('HGET', hold_key, 'area') ~= area then
    redis.call('HINCRBY', ga_key, area, qty)
  end
  changes[#changes + 1] = ga_change(meta_key, ga_key, area)
end
if redis.call('EXISTS', hold_key) == 1 then
  -- Seats of the hold that were not sold (none, normally) go back on sale.
  local mark = 'h:' .. token
  local held, qty_held, addr = unpack(redis.call('HMGET', hold_key, 'seats', 'qty', 'addr'))
  uncount_address(KEYS[11], addr, #split(held) + (tonumber(qty_held) or 0))
  for _, label in ipairs(split(held)) do
    if redis.call('HGET', seats_key, label) == mark then
      redis.call('HDEL', seats_key, label)
      changes[#changes + 1] = {seat = label, state = 'free'}
    end
  end
  redis.call('DEL', hold_key, ttl_key)
end
redis.call('ZREM', expiry_key, token)
redis.call('ZREM', user_key, token)
local seq = 0
if #changes > 0 then seq = emit_changes(seq_key, log_key, channel, loglen, changes) end
return reply('ok', seq)
