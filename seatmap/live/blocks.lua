-- An admin takes seats out of sale (blocks.py) and puts them back.

--- block ---
-- Takes free seats out of sale; refuses, changing nothing, if any is held or sold.
-- KEYS: meta seats seq log     ARGV: channel loglen seat...
-- Reply: Changed(seq) | Busy(seats)
if redis.call('EXISTS', KEYS[1]) == 0 then return reply('noinit') end
local busy = {}
for i = 3, #ARGV do
  local state = redis.call('HGET', KEYS[2], ARGV[i])
  if state and state ~= 'b' then busy[#busy + 1] = ARGV[i] end
end
if #busy > 0 then return reply('busy', busy) end
local changes = {}
for i = 3, #ARGV do
  if not redis.call('HGET', KEYS[2], ARGV[i]) then
    redis.call('HSET', KEYS[2], ARGV[i], 'b')
    changes[#changes + 1] = {seat = ARGV[i], state = 'blocked'}
  end
end
local seq = 0
if #changes > 0 then seq = emit_changes(KEYS[3], KEYS[4], ARGV[1], ARGV[2], changes) end
return reply('ok', seq)

--- unblock ---
-- KEYS: meta seats seq log     ARGV: channel loglen seat...
-- Reply: Changed(seq)
if redis.call('EXISTS', KEYS[1]) == 0 then return reply('noinit') end
local changes = {}
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == 'b' then
    redis.call('HDEL', KEYS[2], ARGV[i])
    changes[#changes + 1] = {seat = ARGV[i], state = 'free'}
  end
end
local seq = 0
if #changes > 0 then seq = emit_changes(KEYS[3], KEYS[4], ARGV[1], ARGV[2], changes) end
return reply('ok', seq)
