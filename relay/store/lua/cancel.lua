-- Cancel a client's subscription: no further deliveries; the run's polling stops when it was
-- the last watching subscriber. It leaves its run at once (leave_run), so it no longer counts
-- toward RELAY_MAX_SUBSCRIPTIONS_PER_RUN nor is walked by a fan-out.
-- KEYS: 1 sub, 2 attempts, 3 due dlv, 4 due poll, 5.. client state zsets (SubState order)
-- ARGV: 1 sid, 2 client, 3 ttl ms. Returns a map: outcome (CO: ok or not_found)
local sid, cl, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local k = KEYS[1]
local s = redis.call('HMGET', k, F.CLIENT, F.STATE, F.RUN_KEY)
if s[1] ~= cl or not s[2] then return {'outcome', CO.NOT_FOUND} end
if s[2] == ST.CANCELED then return {'outcome', CO.OK} end
local now = redis_now()
local rd = run_digest(s[3] or '')
local wk = fmt(K_WATCH, rd)
if s[2] == ST.WATCHING then
  local left = redis.call('HINCRBY', wk, W.ACTIVE, -1)
  if left <= 0 and redis.call('HGET', wk, W.STATE) == WS.WATCHING then
    redis.call('HSET', wk, W.STATE, WS.IDLE)
    redis.call('ZREM', KEYS[4], rd)
  end
elseif s[2] == ST.DELIVERING then
  redis.call('HINCRBY', wk, W.PENDING, -1)
end
redis.call('ZREM', KEYS[3], sid)
redis.call('ZREM', K_DUE_NTC, sid)  -- its run.started, if any (the claim drops it too)
leave_run(rd, sid)
redis.call('HDEL', k, F.NEXT_ATTEMPT)
redis.call('HSET', k, F.UPDATED, now)
set_state(sid, k, ST.CANCELED)
expire_sub(sid, now, ttl)
settle_run(rd, ttl)
return {'outcome', CO.OK}
