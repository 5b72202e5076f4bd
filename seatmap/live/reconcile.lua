-- The seat map repaired from PostgreSQL, the durable truth (invariant 5).

--- reconcile ---
-- Every seat PostgreSQL has a live ticket for is sold in Redis: one found free, or held by a
-- hold other than the one its order was made from (a sale whose `sell` has not run yet is
-- left to it), is marked sold again, to that order, and every viewer is told in one delta.
-- A blocked seat is left blocked (not for sale either way). Owners are corrected silently.
-- Not loaded ('noinit'): nothing to repair, a load from PostgreSQL is right by construction.
-- KEYS: meta seats owners seq log
-- ARGV: channel loglen (label order hold)...
-- Reply: Reconciled(seq, [labels marked sold again])
local meta_key, seats_key, owners_key, seq_key, log_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local channel, loglen = ARGV[1], ARGV[2]
if redis.call('EXISTS', meta_key) == 0 then return reply('noinit') end
local changes, repaired = {}, {}
for i = 3, #ARGV, 3 do
  local label, order, hold = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local state = redis.call('HGET', seats_key, label)
  if state == 's' then
    if redis.call('HGET', owners_key, label) ~= order then redis.call('HSET', owners_key, label, order) end
  elseif state ~= 'b' and state ~= 'h:' .. hold then
    redis.call('HSET', seats_key, label, 's')
    redis.call('HSET', owners_key, label, order)
    changes[#changes + 1] = {seat = label, state = 'sold'}
    repaired[#repaired + 1] = label
  end
end
local seq = 0
if #changes > 0 then seq = emit_changes(seq_key, log_key, channel, loglen, changes) end
return reply('ok', seq, repaired)
