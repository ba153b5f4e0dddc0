-- Store a subscription and join/start its run's watch, atomically (idempotent, quota-checked).
-- KEYS: 1 sub, 2 client all, 3 client run index, 4 watch (with the run's result), 5 run
--       subscribers, 6 due poll, 7 due dlv, 8 secrets, 9 clients, 10.. client state zsets in
--       SubState order (watching first, delivering second)
-- ARGV: 1 sid, 2 client, 3 run key, 4 run digest, 5 idem, 6 events '|a|b|' ('' = all),
--       7 ttl ms, 8 max active per client, 9 max per run, 10 fresh secret, 11 created ms,
--       12 fingerprint (metadata + header names; '' = none, not compared), 13 'owner' when RELAY_RUN_SHARING=owner
--       (else ''), 14.. document field/value pairs
-- Returns a map: action, id, status (the run's last seen status, when known)
local sid, cl, rk, rd, idem = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ev, ttl = ARGV[6], tonumber(ARGV[7])
local max_client, max_run, fresh, ca = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10], ARGV[11]
local fp, owner_mode = ARGV[12], ARGV[13] == 'owner'
local owner = redis.call('HGET', KEYS[4], W.OWNER)
if owner_mode and owner and owner ~= cl then return {'action', RA.NOT_OWNER, 'id', sid} end
local existing = redis.call('HGET', KEYS[3], idem)
if existing then
  local e = redis.call('HMGET', fmt(K_SUB, existing), F.STATE, F.FINGERPRINT)
  if e[1] and e[1] ~= ST.CANCELED then
    -- A subscription stored before fingerprints existed keeps the old idempotent answer.
    if e[2] and fp ~= '' and e[2] ~= fp then return {'action', RA.CONFLICT, 'id', existing} end
    return {'action', RA.EXISTING, 'id', existing}
  end
end
if redis.call('ZCARD', KEYS[10]) + redis.call('ZCARD', KEYS[11]) >= max_client then
  return {'action', RA.QUOTA_CLIENT, 'id', sid}
end
if redis.call('ZCARD', KEYS[5]) >= max_run then return {'action', RA.QUOTA_RUN, 'id', sid} end
local now = redis_now()
local k = KEYS[1]
-- Only what differs from the defaults (updated = created, 0 attempts, series 1, all events).
redis.call('HSET', k, F.CLIENT, cl, F.RUN_KEY, rk, F.CREATED, ca, F.IDEM, idem)
if fp ~= '' then redis.call('HSET', k, F.FINGERPRINT, fp) end
if ev ~= '' then redis.call('HSET', k, F.EVENTS, ev) end
for i = 14, #ARGV, 2 do redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[2], ca, sid)
redis.call('HSET', KEYS[3], idem, sid)
local wk = KEYS[4]
redis.call('HSETNX', wk, W.OWNER, cl)  -- the first registrant owns the run (enforced in owner mode)
redis.call('ZADD', KEYS[5], redis.call('HINCRBY', wk, W.SEQUENCE, 1), sid)
redis.call('HSETNX', KEYS[8], SF.CURRENT, fresh)
redis.call('ZADD', KEYS[9], 0, cl)
local w = redis.call('HMGET', wk, W.STATE, W.ENDED_AT, W.STATUS)
local cached = w[3]  -- the status of the run's stored result
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
-- failure of an earlier watch stays on the subscriptions it reached (copied there at fan-out);
-- those its fan-out had not reached yet stay watching, on the restarted watch, and count.
local active = 1
local fo = redis.call('HGET', wk, W.FANOUT_CURSOR)
-- (this subscription was added past the cursor too: it is among them)
if fo then active = redis.call('ZCOUNT', KEYS[5], '(' .. fo, '+inf') end
redis.call('HDEL', wk, W.FAIL_CODE, W.FAIL_MESSAGE, W.ENDED_AT, W.NOT_FOUND_SINCE,
           W.FANOUT_CURSOR)
redis.call('HSET', wk, W.STATE, WS.WATCHING, W.RUN_KEY, rk, W.FIRST_SEEN, now, W.INTERVAL, 0,
           W.POLLS, 0, W.ERRORS, 0, W.ACTIVE, active)
settle_run(rd, ttl)
redis.call('ZADD', KEYS[6], now, rd)
redis.call('PUBLISH', WAKE_POLL, '1')
if cached then return {'action', RA.POLL, 'id', sid, 'status', cached} end
return {'action', RA.POLL, 'id', sid}
