-- Open WebSockets per client address, across processes (connections.py). One hash per address
-- with its own hash tag: field = process id, value = "count:stamp_ms" (Redis's clock). Only the
-- process a field names writes it; a field not rewritten for `fresh_ms` belongs to a process
-- that died and is neither counted nor kept.

--- sockets_admit ---
-- One more socket of this process from this address, if the address stays within the cap.
-- KEYS: the address's hash    ARGV: process count_if_admitted fresh_ms cap key_ttl_ms
-- Reply: Admitted(total) | Full(limit)
local key, process, mine = KEYS[1], ARGV[1], tonumber(ARGV[2])
local fresh, cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local others, stale = 0, {}
local fields = redis.call('HGETALL', key)
for i = 1, #fields, 2 do
  if fields[i] ~= process then
    local count, stamp = string.match(fields[i + 1], '^(%d+):(%d+)$')
    if not count or now - tonumber(stamp) > fresh then stale[#stale + 1] = fields[i]
    else others = others + tonumber(count) end
  end
end
if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
if others + mine > cap then return reply('full', cap) end
redis.call('HSET', key, process, string.format('%d:%d', mine, now))
redis.call('PEXPIRE', key, ARGV[5])
return reply('ok', others + mine)

--- sockets_set ---
-- This process's count for the address as it is now (a socket closed, or the periodic refresh).
-- KEYS: the address's hash    ARGV: process count key_ttl_ms
-- Reply: Changed(0)
local key, process, count = KEYS[1], ARGV[1], tonumber(ARGV[2])
if count <= 0 then
  redis.call('HDEL', key, process)
else
  redis.call('HSET', key, process, string.format('%d:%d', count, now_ms()))
  redis.call('PEXPIRE', key, ARGV[3])
end
return reply('ok', 0)
