-- Log delivery attempts (a group commit of up to the caller's cap), count them per client and
-- minute, and move each subscription on. Each attempt is recorded on its own (pcall): one that
-- fails answers an error map and leaves the others recorded. On the run.started lane
-- (LANE.STARTED) only that lane's state and attempt count move: the subscription's own state,
-- its run and its expiry belong to the terminal lane.
-- KEYS: none: each attempt's sub, attempts and lane's due set are named from its sid and lane
-- ARGV: 1 ttl ms, 2 max log, 3 counters ttl ms; 4 one msgpack array (types.AttemptToRecord),
--       per attempt i an array: sid, series, lane (LANE), attempt JSON (a string: cmsgpack
--       passes its bytes as they are), outcome (DO), retry delay ms, run digest, run id digest
--       (of the subscription's run key, as the claim read it)
-- Commands per attempt are kept few (bench/NOTES.md, 2026-11-30): one HMGET reads what every
-- step needs, the digests come from the caller, LTRIM and HDEL only when there is work.
-- Returns a list of maps, one per attempt in order: state (the lane's state after: ST), next (ms,
-- retries only); stale (1) when the subscription had moved on; or error (the message) when that
-- attempt failed.
local ttl, max_log, counters_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = redis_now()
local minute = tostring(now - now % 60000)
local counts, counted = {}, {}  -- per-minute counter key -> {d = n, f = n}, keys in order

local function record(k, log, due, sid, series, attempt, outcome, delay, started, rd, rid)
  local s = redis.call('HMGET', k, started and F.NOTICE_STATE or F.STATE, F.SERIES, F.CLIENT,
                       F.CREATED, F.IDEM, F.NEXT_ATTEMPT)
  if not s[1] then return {'stale', 1} end
  if redis.call('RPUSH', log, attempt) > max_log then redis.call('LTRIM', log, -max_log, -1) end
  -- The client's per-minute counters (a member key: the client read from the hash), written
  -- once per key for the whole call.
  local ck = fmt(K_COUNTERS, s[3], minute)
  local c = counts[ck]
  if not c then
    c = {d = 0, f = 0}
    counts[ck] = c
    table.insert(counted, ck)
  end
  if outcome == DO.DELIVERED then c.d = c.d + 1 else c.f = c.f + 1 end
  if s[1] ~= ST.DELIVERING or (not started and (s[2] or '1') ~= series) then
    if redis.call('PTTL', k) > 0 then redis.call('PEXPIRE', log, redis.call('PTTL', k)) end
    return {'stale', 1}
  end
  if started then
    redis.call('HINCRBY', k, F.NOTICE_ATTEMPTS, 1)
    if outcome == DO.RETRY then
      redis.call('ZADD', due, now + delay, sid)
      return {'state', ST.DELIVERING, 'next', now + delay}
    end
    redis.call('HSET', k, F.NOTICE_STATE, outcome)
    redis.call('ZREM', due, sid)
    return {'state', outcome}
  end
  redis.call('HINCRBY', k, F.ATTEMPTS, 1)
  if outcome == DO.RETRY then
    redis.call('HSET', k, F.UPDATED, now, F.NEXT_ATTEMPT, now + delay)
    redis.call('ZADD', due, now + delay, sid)
    return {'state', ST.DELIVERING, 'next', now + delay}
  end
  move_state(sid, s[3], s[1], s[4], outcome)
  redis.call('HSET', k, F.STATE, outcome, F.UPDATED, now)
  if s[6] then redis.call('HDEL', k, F.NEXT_ATTEMPT) end
  redis.call('ZREM', due, sid)
  expire_sub(sid, now, ttl, exp_entry(sid, s[3], s[5], rd, rid))
  redis.call('HINCRBY', fmt(K_WATCH, rd), W.PENDING, -1)
  settle_run(rd, ttl)
  return {'state', outcome}
end

local out = each_member(cmsgpack.unpack(ARGV[4]), function(a)
  local sid, started = a[1], a[3] == LANE.STARTED
  -- the series is compared with the hash's text
  return record(fmt(K_SUB, sid), fmt(K_ATTEMPTS, sid), started and K_DUE_NTC or K_DUE_DLV, sid,
                tostring(a[2]), a[4], a[5], a[6], started, a[7], a[8])
end)
for _, ck in ipairs(counted) do
  local c = counts[ck]
  if c.d > 0 then redis.call('HINCRBY', ck, CF.DELIVERED, c.d) end
  if c.f > 0 then redis.call('HINCRBY', ck, CF.FAILED, c.f) end
  redis.call('PEXPIRE', ck, counters_ttl)
end
return out
