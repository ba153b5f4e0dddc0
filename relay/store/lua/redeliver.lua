-- Start a fresh attempt series for a client's subscription whose run ended.
-- KEYS: 1 sub, 2 attempts, 3 due dlv, 4.. client state zsets (SubState order)
-- ARGV: 1 sid, 2 client, 3 ttl ms. Returns a map: outcome ('ok'|'not_found'|'conflict'), state
local sid, cl, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local k = KEYS[1]
local s = redis.call('HMGET', k, F.CLIENT, F.STATE, F.EVENT_TYPE, F.RUN_KEY, F.SERIES)
if s[1] ~= cl or not s[2] then return {'outcome', 'not_found'} end
local st = s[2]
if not s[3] or not (st == ST.DELIVERED or st == ST.EXHAUSTED or st == ST.GONE
                    or st == ST.DELIVERING) then
  return {'outcome', 'conflict', 'state', st}
end
local now = redis_now()
local rd = run_digest(s[4] or '')
if st ~= ST.DELIVERING then
  redis.call('HINCRBY', fmt(K_WATCH, rd), W.PENDING, 1)
  settle_run(rd, ttl)
end
set_state(sid, k, ST.DELIVERING)
redis.call('HSET', k, F.SERIES, tonumber(s[5] or '1') + 1)
redis.call('HSET', k, F.ATTEMPTS, 0, F.NEXT_ATTEMPT, now, F.UPDATED, now)
persist_sub(sid)
redis.call('ZADD', KEYS[3], now, sid)
redis.call('PUBLISH', WAKE_DLV, '1')
return {'outcome', 'ok', 'state', ST.DELIVERING}
