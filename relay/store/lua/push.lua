-- An authenticated push arrived for a run: make its poll due now, once per burst.
-- A push that finds a poll for an earlier push still to come, or one claimed less than burst ms
-- ago, only notes that a push came (the run is then polled on the normal curve, which follows
-- up). A run no longer watched is left alone.
-- KEYS: 1 watch, 2 due poll. ARGV: 1 run digest, 2 burst ms
-- Returns a map: outcome (PO: triggered | coalesced | ignored)
local w = redis.call('HMGET', KEYS[1], W.STATE, W.PUSH_NEWS, W.PUSH_POLLED)
if w[1] ~= WS.WATCHING then return {'outcome', PO.IGNORED} end
redis.call('HSET', KEYS[1], W.PUSHED, 1)
local now = redis_now()
if w[2] or (w[3] and now - tonumber(w[3]) < tonumber(ARGV[2])) then
  return {'outcome', PO.COALESCED}
end
redis.call('HSET', KEYS[1], W.PUSH_NEWS, 1)
redis.call('ZADD', KEYS[2], 'XX', 'LT', now, ARGV[1])
redis.call('PUBLISH', WAKE_POLL, '1')
return {'outcome', PO.TRIGGERED}
