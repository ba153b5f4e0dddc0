-- Give a run started through the relay its own deadline and, with a token, its push ingress.
-- KEYS: 1 watch, 2 ingress token (only when a push is expected)
-- ARGV: 1 run key, 2 deadline in ms from now, 3 ttl ms (the token outlives the deadline by
--       this), 4 secret hash ('' : no push expected)
-- Returns a map: marked (0 when the watch does not exist)
if redis.call('EXISTS', KEYS[1]) == 0 then return {'marked', 0} end
local now = redis_now()
local deadline = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], W.DEADLINE, deadline)
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], W.EXPECTS_PUSH, 1)
  redis.call('HSET', KEYS[2], IF.RUN_KEY, ARGV[1], IF.SECRET_HASH, ARGV[4])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[3]))
end
return {'marked', 1}
