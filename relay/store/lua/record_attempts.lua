-- Log one delivery attempt, count it per client and minute, and move the subscription on.
-- On the run.started lane (ARGV[9] = LANE.STARTED) only that lane's state and attempt count
-- move: the subscription's own state, its run and its expiry belong to the terminal lane.
-- KEYS: 1 sub, 2 attempts, 3 the lane's due set (due dlv or due ntc)
-- ARGV: 1 sid, 2 series, 3 attempt JSON, 4 outcome (DO), 5 retry delay ms, 6 ttl ms,
--       7 max log, 8 counters ttl ms, 9 lane (LANE)
-- Returns a map: state (the subscription's state after, or 'stale'), next (ms, retries only)
local sid, series, attempt, outcome = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local delay, ttl, max_log = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local k = KEYS[1]
local started = ARGV[9] == LANE.STARTED
local s = redis.call('HMGET', k, started and F.NOTICE_STATE or F.STATE, F.SERIES, F.CLIENT,
                     F.RUN_KEY)
if not s[1] then return {'state', 'stale'} end
local now = redis_now()
redis.call('RPUSH', KEYS[2], attempt)
redis.call('LTRIM', KEYS[2], -max_log, -1)
-- The client's per-minute counters (a member key: the client read from the hash).
local ck = fmt(K_COUNTERS, s[3], tostring(now - now % 60000))
redis.call('HINCRBY', ck, outcome == DO.DELIVERED and 'd' or 'f', 1)
redis.call('PEXPIRE', ck, tonumber(ARGV[8]))
if s[1] ~= ST.DELIVERING or (not started and (s[2] or '1') ~= series) then
  if redis.call('PTTL', k) > 0 then redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', k)) end
  return {'state', 'stale'}
end
if started then
  redis.call('HINCRBY', k, F.NOTICE_ATTEMPTS, 1)
  if outcome == DO.RETRY then
    redis.call('ZADD', KEYS[3], now + delay, sid)
    return {'state', ST.DELIVERING, 'next', now + delay}
  end
  redis.call('HSET', k, F.NOTICE_STATE, outcome)
  redis.call('ZREM', KEYS[3], sid)
  return {'state', outcome}
end
redis.call('HINCRBY', k, F.ATTEMPTS, 1)
redis.call('HSET', k, F.UPDATED, now)
if outcome == DO.RETRY then
  redis.call('HSET', k, F.NEXT_ATTEMPT, now + delay)
  redis.call('ZADD', KEYS[3], now + delay, sid)
  return {'state', ST.DELIVERING, 'next', now + delay}
end
set_state(sid, k, outcome)
redis.call('HDEL', k, F.NEXT_ATTEMPT)
redis.call('ZREM', KEYS[3], sid)
expire_sub(sid, now, ttl)
local rd = run_digest(s[4] or '')
redis.call('HINCRBY', fmt(K_WATCH, rd), W.PENDING, -1)
settle_run(rd, ttl)
return {'state', outcome}
