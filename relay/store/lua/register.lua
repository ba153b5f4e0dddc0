-- Store a subscription and join/start its run's watch, atomically (idempotent, quota-checked).
-- KEYS: none. Seam "register arguments packed" (bench/NOTES.md, session 26): the arguments go
-- as one msgpack array (types.RegisterArgs, packed by msgspec in C) and every key is named here
-- from the ids in it, instead of ~30 arguments that redis-py packs one by one in Python (buys
-- ~17 % of the API's instructions per registration). The keys:
-- the sub; the client's runs (run id digest -> its first subscription on it) and its run index
-- (its later subscriptions on the run id); the watch (with the run's result and its first
-- subscriber) and the run's subscribers after the first; the due poll and delivery sets; the
-- client's secrets; the clients; the run starters (run.started subscribers); the client's
-- watching and delivering zsets.
-- ARGV: 1 the array: sid, client, run key, run digest, idem, events '|a|b|' ('' = all), ttl ms,
--       max active per client, max per run, fresh secret, created ms (text), fingerprint
--       (metadata + headers, names and values; '' for the default: {} and no headers), owner
--       (true when RELAY_RUN_SHARING=owner), run id digest (keys.run_id_digest: passed, so no
--       SHA-1 per call here), the document's field/value pairs (a list)
-- Returns a map: action, id, status (the run's last seen status, when known)
local a = cmsgpack.unpack(ARGV[1])
local sid, cl, rk, rd, idem, ev, ttl = a[1], a[2], a[3], a[4], a[5], a[6], a[7]
local max_client, max_run, fresh, ca, fp = a[8], a[9], a[10], a[11], a[12]
local owner_mode, crd, doc = a[13], a[14], a[15]
local k, wk = fmt(K_SUB, sid), fmt(K_WATCH, rd)
local runs, run_index = fmt(K_CLIENT_RUNS, cl), fmt(K_CLIENT_RUN, cl, crd)
local subs = fmt(K_SUBS, rd)
local owner = redis.call('HGET', wk, W.OWNER)
if owner_mode and owner and owner ~= cl then return {'action', RA.NOT_OWNER, 'id', sid} end
local cb = nil
for i = 1, #doc, 2 do if doc[i] == F.CALLBACK then cb = doc[i + 1] end end
-- The same registration again: the client's first subscription on the run id when it has the
-- same run and callback (it stores no idempotency field), else the run index's entry (by
-- idempotency field); a canceled (or expired) one is replaced. Found with another fingerprint
-- (metadata + headers; '' and not stored for the default: {} and no headers): conflict.
local function found(id, stored_fp)
  if (stored_fp or '') ~= fp then return {'action', RA.CONFLICT, 'id', id} end
  return {'action', RA.EXISTING, 'id', id}
end
local first = redis.call('HGET', runs, crd)
local f = first and redis.call('HMGET', fmt(K_SUB, first), F.STATE, F.IDEM, F.RUN_KEY,
                               F.CALLBACK, F.FINGERPRINT) or {}
local same = f[1] and (f[2] == idem or (not f[2] and f[3] == rk and f[4] == cb))
if same and f[1] ~= ST.CANCELED then return found(first, f[5]) end
local other = redis.call('HGET', run_index, idem)
if other then
  local e = redis.call('HMGET', fmt(K_SUB, other), F.STATE, F.FINGERPRINT)
  if e[1] and e[1] ~= ST.CANCELED then return found(other, e[2]) end
end
if redis.call('ZCARD', fmt(K_STATE, cl, ST.WATCHING))
   + redis.call('ZCARD', fmt(K_STATE, cl, ST.DELIVERING)) >= max_client then
  return {'action', RA.QUOTA_CLIENT, 'id', sid}
end
local s1, sq = unpack(redis.call('HMGET', wk, W.FIRST_SUB, W.SEQUENCE))
if redis.call('ZCARD', subs) + (s1 and 1 or 0) >= max_run then
  return {'action', RA.QUOTA_RUN, 'id', sid}
end
local now = redis_now()
-- Only what differs from the defaults (updated = created, 0 attempts, series 1, all events).
redis.call('HSET', k, F.CLIENT, cl, F.RUN_KEY, rk, F.CREATED, ca)
if fp ~= '' then redis.call('HSET', k, F.FINGERPRINT, fp) end
if ev ~= '' then redis.call('HSET', k, F.EVENTS, ev) end
redis.call('HSET', k, unpack(doc))
if not f[1] or same then
  redis.call('HSET', runs, crd, sid)
  if other then redis.call('HDEL', run_index, idem) end
else  -- only these store their idempotency field (pruning finds their run index entry by it)
  redis.call('HSET', k, F.IDEM, idem)
  redis.call('HSET', run_index, idem, sid)
end
-- In owner mode the first registrant owns the run (not stored otherwise: ~16 B a run).
if owner_mode then redis.call('HSETNX', wk, W.OWNER, cl) end
-- The first subscriber (sequence 1) lives in the watch; later ones in the run's zset.
local seq = tonumber(sq or (s1 and '1' or '0')) + 1
if seq == 1 then
  redis.call('HSET', wk, W.FIRST_SUB, sid)
else
  redis.call('HSET', wk, W.SEQUENCE, seq)
  redis.call('ZADD', subs, seq, sid)
end
redis.call('HSETNX', fmt(K_SECRETS, cl), SF.CURRENT, fresh)
redis.call('ZADD', K_CLIENTS, 0, cl)
local w = redis.call('HMGET', wk, W.STATE, W.ENDED_AT, W.STATUS, W.STARTED_AT)
local cached = w[3]  -- the status of the run's stored result
set_state(sid, k, ST.WATCHING)
-- run.started subscribers are indexed by sequence; one joining a run already seen started
-- gets its event now (the run's fan-out, if still going, passes it over: it has one).
local starter = ev ~= '' and string.find(ev, '|' .. RS.STARTED .. '|', 1, true)
if starter then redis.call('ZADD', fmt(K_STARTERS, rd), seq, sid) end
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
  active = redis.call('ZCOUNT', subs, '(' .. fo, '+inf')
  if tonumber(fo) < 1 and redis.call('HEXISTS', wk, W.FIRST_SUB) == 1 then active = active + 1 end
end
redis.call('HDEL', wk, W.FAIL_CODE, W.FAIL_MESSAGE, W.ENDED_AT, W.NOT_FOUND_SINCE,
           W.FANOUT_CURSOR, W.ERRORS, W.INTERVAL,  -- absent: 0 errors, interval 0
           W.STARTED_AT, W.NOTICE_CURSOR)  -- run.started goes to whom it has not reached
redis.call('HSET', wk, W.STATE, WS.WATCHING, W.RUN_KEY, rk, W.FIRST_SEEN, now, W.ACTIVE, active)
settle_run(rd, ttl)
redis.call('ZADD', K_DUE_POLL, now, rd)
redis.call('PUBLISH', WAKE_POLL, '1')
if cached then return {'action', RA.POLL, 'id', sid, 'status', cached} end
return {'action', RA.POLL, 'id', sid}
