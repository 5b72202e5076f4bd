-- An account's live holds across screenings (account_holds.py): one sorted set per account,
-- token -> the ms its reservation was made (0 once its hold exists), with its own hash tag, so
-- each script touches that one key and never a screening's (a cross-slot script on a cluster).

--- account_reserve ---
-- Count a new hold against the account before it is made.
-- KEYS: the account's holds    ARGV: token now_ms cap key_ttl_ms
-- Reply: Reserved | Crowded(members: token, score, token, score ...) when the cap may be reached
local key = KEYS[1]
redis.call('ZADD', key, ARGV[2], ARGV[1])
redis.call('PEXPIRE', key, ARGV[4])
if redis.call('ZCARD', key) <= tonumber(ARGV[3]) then return reply('ok') end
return reply('crowded', redis.call('ZRANGE', key, 0, -1, 'WITHSCORES'))

--- account_made ---
-- The hold exists: from now on it counts while its TTL key lives (score 0: no longer in flight).
-- KEYS: the account's holds    ARGV: token
redis.call('ZADD', KEYS[1], 'XX', 0, ARGV[1])
return reply('ok')

--- account_forget ---
-- These holds no longer count (released, sold, refused, or found gone).
-- KEYS: the account's holds    ARGV: token ...
redis.call('ZREM', KEYS[1], unpack(ARGV))
return reply('ok')
