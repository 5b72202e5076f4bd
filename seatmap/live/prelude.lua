-- Prepended to every script (scripts.py loads it), so each script is one atomic step with
-- these helpers: check, change seat state, maintain the hold's TTL key and the expiry index,
-- take the next sequence number, append the message to the capped recovery stream, publish it,
-- and answer with `reply`, as JSON for the reply Struct Python decodes it into (replies.py).
--
-- Per screening (all keys share the hash tag {scr:ID}):
--   meta       hash  status, starts_ms, strand, total, cap:<area> ... (absent => not loaded:
--                    the script answers ["noinit"] and Python loads it from PostgreSQL)
--   seats      hash  label -> "h:<token>" | "s" | "b"   (free seats are absent)
--   ga         hash  area -> units taken (held + sold)
--   seq        string, the screening's sequence
--   log        stream of recent messages (field "d"), capped
--   expiry     zset  token -> expiry ms (the sweeper's index)
--   nb         hash  label -> "left|right" neighbours in the row ('' at a gap or row end)
--   hold:<t>   hash  owner, seats (comma separated), area, qty, created_ms, expires_ms, max_ms
--   ttl:<t>    string with the hold's TTL; its expiry is what the keyspace notification reports
--   expired:<t> string, the owner of a hold that was restocked after its deadline (for an hour)
--   user:<u>   zset  token -> expiry ms (live holds of one user on this screening)
--   addrs      hash  client address -> seats and GA units its live holds have (the hold's
--                    `addr`; holds made without an address, e.g. at the box office, are not counted)
-- 'PUBLISH' on one Redis; scripts.py loads these scripts with 'SPUBLISH' instead for a cluster,
-- where the screening's channel (with its hash tag) is a sharded channel of the slot's primary.
local PUBLISH = 'PUBLISH'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

-- The reply of a script: a JSON array whose first element names the outcome (the Struct's tag).
-- Written by hand because cjson prints a table without items as {} (a list here is a list) and
-- numbers with 14 significant digits (a seq, which starts at the clock in microseconds, has 16).
-- Every table argument is a list; numbers are integers.
local function reply(...)
  local parts = {}
  for i = 1, select('#', ...) do
    local v = select(i, ...)
    local kind = type(v)
    if kind == 'number' then parts[i] = string.format('%d', v)
    elseif kind == 'table' then parts[i] = (#v == 0) and '[]' or cjson.encode(v)
    else parts[i] = cjson.encode(v) end
  end
  return '[' .. table.concat(parts, ',') .. ']'
end

-- Emits one message in the screening's order: the next seq, the recovery log entry, the
-- publish. `fields` is the rest of the JSON object after "type" and "seq", already encoded.
-- Returns the seq (a number: exact, a double holds integers up to 2^53).
local function emit(seq_key, log_key, channel, loglen, kind, fields)
  local seq = redis.call('INCR', seq_key)
  local text = string.format('%d', seq)
  local payload = '{"type":"' .. kind .. '","seq":' .. text .. fields .. '}'
  redis.call('XADD', log_key, 'MAXLEN', '~', loglen, text .. '-1', 'd', payload)
  redis.call(PUBLISH, channel, payload)
  return seq
end

-- A delta: seats and GA areas that changed. `changes` is a Lua array of tables.
local function emit_changes(seq_key, log_key, channel, loglen, changes)
  local _, ts = now_ms()
  return emit(seq_key, log_key, channel, loglen, 'delta',
    ',"ts":' .. string.format('%.1f', ts) .. ',"changes":' .. cjson.encode(changes))
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

-- The seats and GA units a hold counts against its address (`addrs`), when the hold goes.
local function uncount_address(addrs_key, addr, units)
  if not addr or addr == '' or units == 0 then return end
  if redis.call('HINCRBY', addrs_key, addr, -units) <= 0 then redis.call('HDEL', addrs_key, addr) end
end

-- Frees everything a hold has (seats still marked with its token, GA units) and forgets it.
-- Returns the list of changes (possibly empty).
local function drop_hold(meta_key, seats_key, ga_key, expiry_key, hold_key, ttl_key, user_key, token, addrs_key)
  local hold = redis.call('HMGET', hold_key, 'seats', 'area', 'qty', 'addr')
  uncount_address(addrs_key, hold[4], #split(hold[1]) + (tonumber(hold[3]) or 0))
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

-- Status check shared by everything that takes inventory: nil when on sale, else the reason.
local function on_sale(meta_key, now)
  local meta = redis.call('HMGET', meta_key, 'status', 'starts_ms')
  if not meta[1] then return 'noinit' end
  if meta[1] ~= 'scheduled' then return meta[1] end
  if now >= tonumber(meta[2]) then return 'started' end
  return nil
end
