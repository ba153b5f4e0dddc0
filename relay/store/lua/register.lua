-- Store a subscription and join/start its run's watch, atomically (idempotent, quota-checked).
-- KEYS: 1 sub, 2 client all, 3 client run index, 4 watch, 5 run subscribers, 6 result,
--       7 due poll, 8 due dlv, 9 secrets, 10 runs index, 11 clients, 12.. client state zsets
--       in SubState order (watching first, delivering second)
-- ARGV: 1 sid, 2 client, 3 run key, 4 run digest, 5 idem, 6 events '|a|b|', 7 project,
--       8 run id, 9 ttl ms, 10 max active per client, 11 max per run, 12 fresh secret,
--       13 created ms, 14 run id digest, 15.. document field/value pairs
-- Returns a map: action, id, status (the run's last seen status, when known)
local sid, cl, rk, rd, idem = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ev, project, run_id, ttl = ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local max_client, max_run, fresh, ca = tonumber(ARGV[10]), tonumber(ARGV[11]), ARGV[12], ARGV[13]
local existing = redis.call('HGET', KEYS[3], idem)
if existing then
  local st = redis.call('HGET', fmt(K_SUB, existing), F.STATE)
  if st and st ~= ST.CANCELED then return {'action', RA.EXISTING, 'id', existing} end
end
if redis.call('ZCARD', KEYS[12]) + redis.call('ZCARD', KEYS[13]) >= max_client then
  return {'action', RA.QUOTA_CLIENT, 'id', sid}
end
if redis.call('ZCARD', KEYS[5]) >= max_run then return {'action', RA.QUOTA_RUN, 'id', sid} end
local now = redis_now()
local k = KEYS[1]
redis.call('HSET', k, F.CLIENT, cl, F.RUN_KEY, rk, F.RUN_DIGEST, rd, F.EVENTS, ev,
           F.CREATED, ca, F.UPDATED, ca, F.ATTEMPTS, 0, F.SERIES, 1, F.IDEM, idem,
           F.CLIENT_RUN, ARGV[14])
for i = 15, #ARGV, 2 do redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[2], ca, sid)
redis.call('HSET', KEYS[3], idem, sid)
local wk = KEYS[4]
redis.call('ZADD', KEYS[5], redis.call('HINCRBY', wk, W.SEQUENCE, 1), sid)
redis.call('HSETNX', KEYS[9], SF.CURRENT, fresh)
redis.call('SADD', KEYS[11], cl)
local w = redis.call('HMGET', wk, W.STATE, W.ENDED_AT, W.STATUS)
local cached = redis.call('HGET', KEYS[6], RF.STATUS)
set_state(sid, k, ST.WATCHING)
if w[1] == WS.TERMINAL and cached then
  local delivering = start_delivery(sid, cached, 'run.' .. cached, w[2] or now, now, ttl)
  if delivering then redis.call('HINCRBY', wk, W.PENDING, 1) end
  settle_run(rd, ttl)
  if delivering then
    redis.call('PUBLISH', WAKE_DLV, '1')
    return {'action', RA.DELIVER, 'id', sid}
  end
  return {'action', RA.SKIP, 'id', sid}
end
if w[1] == WS.WATCHING then
  redis.call('HINCRBY', wk, W.ACTIVE, 1)
  if w[3] then return {'action', RA.JOIN, 'id', sid, 'status', w[3]} end
  return {'action', RA.JOIN, 'id', sid}
end
-- A new run, or one whose watch stopped (idle, failed, expired): (re)start polling now. The
-- failure of an earlier watch stays on the subscriptions it reached (copied there at fan-out).
redis.call('HDEL', wk, W.FAIL_CODE, W.FAIL_MESSAGE, W.ENDED_AT, W.NOT_FOUND_SINCE,
           W.FANOUT_CURSOR)
redis.call('HSET', wk, W.STATE, WS.WATCHING, W.PROJECT, project, W.RUN_ID, run_id,
           W.RUN_KEY, rk, W.FIRST_SEEN, now, W.INTERVAL, 0, W.POLLS, 0, W.ERRORS, 0,
           W.ACTIVE, 1, W.NEXT_POLL, now)
if cached then redis.call('HSET', wk, W.STATUS, cached) end
settle_run(rd, ttl)
redis.call('ZADD', KEYS[7], now, rd)
redis.call('ZADD', KEYS[10], 'NX', now, rd)
redis.call('PUBLISH', WAKE_POLL, '1')
if cached then return {'action', RA.POLL, 'id', sid, 'status', cached} end
return {'action', RA.POLL, 'id', sid}
