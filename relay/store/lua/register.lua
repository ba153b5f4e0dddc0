-- Store a subscription and join/start its run's watch, atomically (idempotent, quota-checked).
-- KEYS: 1 sub, 2 client runs (run id digest -> the client's first subscription on it),
--       3 client run index (the client's later subscriptions on the run id), 4 watch (with the
--       run's result and its first subscriber), 5 run subscribers after the first, 6 due poll,
--       7 due dlv, 8 secrets, 9 clients, 10 run starters (run.started subscribers),
--       11 the client's watching zset, 12 its delivering zset
-- ARGV: 1 sid, 2 client, 3 run key, 4 run digest, 5 idem, 6 events '|a|b|' ('' = all),
--       7 ttl ms, 8 max active per client, 9 max per run, 10 fresh secret, 11 created ms,
--       12 fingerprint (metadata + headers, names and values; '' for the default: {} and no headers),
--       13 'owner' when RELAY_RUN_SHARING=owner (else ''), 14 run id digest (keys.run_id_digest,
--       which KEYS[3] is named by: passed, so no SHA-1 per call here), 15.. document field/value
--       pairs
-- Returns a map: action, id, status (the run's last seen status, when known)
local sid, cl, rk, rd, idem = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ev, ttl = ARGV[6], tonumber(ARGV[7])
local max_client, max_run, fresh, ca = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10], ARGV[11]
local fp, owner_mode, crd = ARGV[12], ARGV[13] == 'owner', ARGV[14]
local owner = redis.call('HGET', KEYS[4], W.OWNER)
if owner_mode and owner and owner ~= cl then return {'action', RA.NOT_OWNER, 'id', sid} end
local cb = nil
for i = 15, #ARGV, 2 do if ARGV[i] == F.CALLBACK then cb = ARGV[i + 1] end end
-- The same registration again: the client's first subscription on the run id when it has the
-- same run and callback (it stores no idempotency field), else the run index's entry (by
-- idempotency field); a canceled (or expired) one is replaced. Found with another fingerprint
-- (metadata + headers; '' and not stored for the default: {} and no headers): conflict.
local function found(id, stored_fp)
  if (stored_fp or '') ~= fp then return {'action', RA.CONFLICT, 'id', id} end
  return {'action', RA.EXISTING, 'id', id}
end
local first = redis.call('HGET', KEYS[2], crd)
local f = first and redis.call('HMGET', fmt(K_SUB, first), F.STATE, F.IDEM, F.RUN_KEY,
                               F.CALLBACK, F.FINGERPRINT) or {}
local same = f[1] and (f[2] == idem or (not f[2] and f[3] == rk and f[4] == cb))
if same and f[1] ~= ST.CANCELED then return found(first, f[5]) end
local other = redis.call('HGET', KEYS[3], idem)
if other then
  local e = redis.call('HMGET', fmt(K_SUB, other), F.STATE, F.FINGERPRINT)
  if e[1] and e[1] ~= ST.CANCELED then return found(other, e[2]) end
end
if redis.call('ZCARD', KEYS[11]) + redis.call('ZCARD', KEYS[12]) >= max_client then
  return {'action', RA.QUOTA_CLIENT, 'id', sid}
end
local wk = KEYS[4]
local s1, sq = unpack(redis.call('HMGET', wk, W.FIRST_SUB, W.SEQUENCE))
if redis.call('ZCARD', KEYS[5]) + (s1 and 1 or 0) >= max_run then
  return {'action', RA.QUOTA_RUN, 'id', sid}
end
local now = redis_now()
local k = KEYS[1]
-- Only what differs from the defaults (updated = created, 0 attempts, series 1, all events).
redis.call('HSET', k, F.CLIENT, cl, F.RUN_KEY, rk, F.CREATED, ca)
if fp ~= '' then redis.call('HSET', k, F.FINGERPRINT, fp) end
if ev ~= '' then redis.call('HSET', k, F.EVENTS, ev) end
for i = 15, #ARGV, 2 do redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end
if not f[1] or same then
  redis.call('HSET', KEYS[2], crd, sid)
  if other then redis.call('HDEL', KEYS[3], idem) end
else  -- only these store their idempotency field (pruning finds their run index entry by it)
  redis.call('HSET', k, F.IDEM, idem)
  redis.call('HSET', KEYS[3], idem, sid)
end
-- In owner mode the first registrant owns the run (not stored otherwise: ~16 B a run).
if owner_mode then redis.call('HSETNX', wk, W.OWNER, cl) end
-- The first subscriber (sequence 1) lives in the watch; later ones in the run's zset.
local seq = tonumber(sq or (s1 and '1' or '0')) + 1
if seq == 1 then
  redis.call('HSET', wk, W.FIRST_SUB, sid)
else
  redis.call('HSET', wk, W.SEQUENCE, seq)
  redis.call('ZADD', KEYS[5], seq, sid)
end
redis.call('HSETNX', KEYS[8], SF.CURRENT, fresh)
redis.call('ZADD', KEYS[9], 0, cl)
local w = redis.call('HMGET', wk, W.STATE, W.ENDED_AT, W.STATUS, W.STARTED_AT)
local cached = w[3]  -- the status of the run's stored result
set_state(sid, k, ST.WATCHING)
-- run.started subscribers are indexed by sequence; one joining a run already seen started
-- gets its event now (the run's fan-out, if still going, passes it over: it has one).
local starter = ev ~= '' and string.find(ev, '|' .. RS.STARTED .. '|', 1, true)
if starter then redis.call('ZADD', KEYS[10], seq, sid) end
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
  if starter and cached == RS.STARTED and start_notice(sid, w[4] or now, now) then
    redis.call('PUBLISH', WAKE_NTC, '1')
  end
  if w[3] then return {'action', RA.JOIN, 'id', sid, 'status', w[3]} end
  return {'action', RA.JOIN, 'id', sid}
end
-- A new run, or one whose watch stopped (idle, failed, expired): (re)start polling now. The
-- failure of an earlier watch stays on the subscriptions it reached (copied there at fan-out);
-- those its fan-out had not reached yet stay watching, on the restarted watch, and count.
local active = 1
local fo = redis.call('HGET', wk, W.FANOUT_CURSOR)
-- (this subscription was added past the cursor too: it is among them)
if fo then
  active = redis.call('ZCOUNT', KEYS[5], '(' .. fo, '+inf')
  if tonumber(fo) < 1 and redis.call('HEXISTS', wk, W.FIRST_SUB) == 1 then active = active + 1 end
end
redis.call('HDEL', wk, W.FAIL_CODE, W.FAIL_MESSAGE, W.ENDED_AT, W.NOT_FOUND_SINCE,
           W.FANOUT_CURSOR, W.ERRORS, W.INTERVAL,  -- absent: 0 errors, interval 0
           W.STARTED_AT, W.NOTICE_CURSOR)  -- run.started goes to whom it has not reached
redis.call('HSET', wk, W.STATE, WS.WATCHING, W.RUN_KEY, rk, W.FIRST_SEEN, now, W.ACTIVE, active)
settle_run(rd, ttl)
redis.call('ZADD', KEYS[6], now, rd)
redis.call('PUBLISH', WAKE_POLL, '1')
if cached then return {'action', RA.POLL, 'id', sid, 'status', cached} end
return {'action', RA.POLL, 'id', sid}
