-- Fixed-window counters, counted atomically (see ratelimit.py).
-- KEYS[i]: one counter per limit. ARGV[1]: +1 counts an attempt on every key, -1 takes one
-- back (only from a window that is still open). ARGV[2i], ARGV[2i+1]: limit and window of KEYS[i].
-- Returns 0 when every counter is within its limit, otherwise the seconds until the last of
-- the exceeded windows ends (at least 1).
local delta = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[2 * i])
    local window = tonumber(ARGV[2 * i + 1])
    if delta > 0 then
        local count = redis.call('INCR', key)
        local ttl = redis.call('TTL', key)
        if ttl < 0 then
            -- A new window starts with this attempt; it is not extended by later ones.
            redis.call('EXPIRE', key, window)
            ttl = window
        end
        if count > limit then
            wait = math.max(wait, ttl, 1)
        end
    elseif redis.call('EXISTS', key) == 1 then
        redis.call('DECRBY', key, -delta)
    end
end
return wait
