-- Give a run started through the relay its own deadline and, with a token, its push ingress.
-- Called just before the run's registration, so that its very first poll claim sees them (the
-- registration keeps these fields). Until that registration makes the watch live, the hash
-- expires with the token: a registration refused by a quota leaves nothing behind for good.
-- KEYS: 1 watch, 2 ingress token (only when a push is expected)
-- ARGV: 1 run key, 2 deadline in ms from now, 3 ttl ms (the token outlives the deadline by
--       this), 4 secret hash ('' : no push expected)
-- Returns a map: marked (1)
local now = redis_now()
local life = tonumber(ARGV[2]) + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], W.DEADLINE, now + tonumber(ARGV[2]))
if not redis.call('HGET', KEYS[1], W.STATE) then redis.call('PEXPIRE', KEYS[1], life) end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], W.EXPECTS_PUSH, 1)
  redis.call('HSET', KEYS[2], IF.RUN_KEY, ARGV[1], IF.SECRET_HASH, ARGV[4])
  redis.call('PEXPIRE', KEYS[2], life)
end
return {'marked', 1}
