-- Seats and units going back on sale: an expired hold, every hold of a cancelled screening,
-- a refunded order.

--- restock ---
-- An expired hold goes back on sale, exactly once: whoever runs this first (a keyspace
-- notification in any process, or any sweeper) frees the seats; every later run finds the
-- hold gone and does nothing. A hold whose TTL key is still there was extended: left alone.
-- Its owner is remembered for a while, so touching the hold again says it expired.
-- KEYS: meta seats ga seq log expiry hold ttl user expired addrs
-- ARGV: channel token loglen expired_ttl_ms
-- Reply: Restocked(seq, lag_ms: how long after the hold's deadline) | Gone | Alive
local meta_key, seats_key, ga_key, seq_key, log_key, expiry_key, hold_key, ttl_key, user_key, expired_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local channel, token, loglen = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', hold_key) == 0 then
  redis.call('ZREM', expiry_key, token)
  return reply('gone')
end
if redis.call('PTTL', ttl_key) > 0 then return reply('alive') end
local now = now_ms()
local owner, expires = unpack(redis.call('HMGET', hold_key, 'owner', 'expires_ms'))
if owner then redis.call('SET', expired_key, owner, 'PX', ARGV[4]) end
local changes = drop_hold(meta_key, seats_key, ga_key, expiry_key, hold_key, ttl_key, user_key, token, KEYS[11])
local seq = 0
if #changes > 0 then seq = emit_changes(seq_key, log_key, channel, loglen, changes) end
return reply('ok', seq, math.max(0, now - (tonumber(expires) or now)))

--- drop_holds ---
-- Every live hold of a cancelled screening goes at once, in one delta. Run after the status
-- became `cancelled` (so no new hold can appear); the caller lists the holds from the expiry
-- index, with each one's keys.
-- KEYS: meta seats ga seq log expiry addrs, then per hold: hold ttl user
-- ARGV: channel loglen token...
-- Reply: Dropped(seq, holds dropped)
local meta_key, seats_key, ga_key, seq_key, log_key, expiry_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local addrs_key = KEYS[7]
local channel, loglen = ARGV[1], ARGV[2]
if redis.call('EXISTS', meta_key) == 0 then return reply('noinit') end
local changes, dropped = {}, 0
for i = 3, #ARGV do
  local k = 8 + (i - 3) * 3
  if redis.call('EXISTS', KEYS[k]) == 1 then dropped = dropped + 1 end
  for _, c in ipairs(drop_hold(meta_key, seats_key, ga_key, expiry_key, KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[i], addrs_key)) do
    changes[#changes + 1] = c
  end
end
local seq = 0
if #changes > 0 then seq = emit_changes(seq_key, log_key, channel, loglen, changes) end
return reply('ok', seq, dropped)

--- restock_due ---
-- The sweeper's batch: every hold of one screening whose deadline passed, restocked in one step
-- and one delta, each exactly as `restock` would (a hold already gone or extended is left).
-- KEYS: meta seats ga seq log expiry addrs, then per hold: hold ttl user expired
-- ARGV: channel loglen expired_ttl_ms token...
-- Reply: RestockedDue(seq, [lag_ms of each hold restocked by this call])
local meta_key, seats_key, ga_key, seq_key, log_key, expiry_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local addrs_key = KEYS[7]
local channel, loglen, expired_ttl = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local changes, lags, alive = {}, {}, 0
for i = 4, #ARGV do
  local k = 8 + (i - 4) * 4
  local hold_key, ttl_key, user_key, expired_key = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  if redis.call('EXISTS', hold_key) == 0 then
    redis.call('ZREM', expiry_key, ARGV[i])
  elseif redis.call('PTTL', ttl_key) > 0 then
    alive = alive + 1
  else
    local owner, expires = unpack(redis.call('HMGET', hold_key, 'owner', 'expires_ms'))
    if owner then redis.call('SET', expired_key, owner, 'PX', expired_ttl) end
    for _, c in ipairs(drop_hold(meta_key, seats_key, ga_key, expiry_key, hold_key, ttl_key, user_key, ARGV[i], addrs_key)) do
      changes[#changes + 1] = c
    end
    lags[#lags + 1] = math.max(0, now - (tonumber(expires) or now))
  end
end
local seq = 0
if #changes > 0 then seq = emit_changes(seq_key, log_key, channel, loglen, changes) end
return reply('ok', seq, lags, alive)

--- free ---
-- A refunded order's seats and GA units stop being sold (on sale again, unless the screening
-- was cancelled), after PostgreSQL voided its tickets. The caller passes only the seats that
-- PostgreSQL says have no live ticket now; of those this frees a seat only while it is still
-- sold to this order (`owners`), and the order's GA units only while they are still counted
-- for it (`ga_orders`). So a repeated call (a retried refund job), even after Redis lost
-- everything and was rebuilt from PostgreSQL, never frees a seat sold to someone else since.
-- A screening loaded by an older version has no owners: there the once-per-order marker and
-- PostgreSQL's word decide, as before.
-- Not loaded ('noinit'): nothing to do, a load from PostgreSQL already shows the seats free.
-- KEYS: meta seats ga seq log marker owners ga_orders
-- ARGV: channel loglen area qty marker_ttl_ms order_ref seat...
-- Reply: Changed | Done (freed before)
local meta_key, seats_key, ga_key, seq_key, log_key, marker_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local owners_key, ga_orders_key = KEYS[7], KEYS[8]
local channel, loglen, area, qty, order_ref = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[6]
if redis.call('EXISTS', meta_key) == 0 then return reply('noinit') end
local owned = redis.call('HGET', meta_key, 'owned') == '1'
if not owned and not redis.call('SET', marker_key, '1', 'NX', 'PX', ARGV[5]) then return reply('done') end
local changes = {}
for i = 7, #ARGV do
  local owner = redis.call('HGET', owners_key, ARGV[i])
  if redis.call('HGET', seats_key, ARGV[i]) == 's' and (owner == order_ref or (not owner and not owned)) then
    redis.call('HDEL', seats_key, ARGV[i])
    changes[#changes + 1] = {seat = ARGV[i], state = 'free'}
  end
  if owner == order_ref then redis.call('HDEL', owners_key, ARGV[i]) end
end
if area ~= '' and qty > 0 then
  local counted = redis.call('HGET', ga_orders_key, order_ref)
  if counted then
    qty = tonumber(counted)
    redis.call('HDEL', ga_orders_key, order_ref)
  elseif owned then
    qty = 0
  end
  if qty > 0 then
    local left = redis.call('HINCRBY', ga_key, area, -qty)
    if left <= 0 then redis.call('HDEL', ga_key, area) end
    changes[#changes + 1] = ga_change(meta_key, ga_key, area)
  end
end
local seq = 0
if #changes > 0 then seq = emit_changes(seq_key, log_key, channel, loglen, changes) end
if #changes == 0 then return reply('done') end
return reply('ok', seq)
