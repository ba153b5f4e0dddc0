-- Record polls' outcomes (one, or a group commit of pending polls); a terminal status or giving
-- up marks the run ended in one step and leaves its fan-out (fan_out.lua) due now + lease_ms on
-- the poll due set. A run seen `started` for the first time with run.started subscribers gets
-- their fan-out (fan_out_notices.lua) pending: the answer says notices=1 while it is. Each poll
-- is recorded on its own (pcall): one Redis refuses answers an error map, the others stand.
-- KEYS: none: each poll's watch (holds the run's one stored result) and run starters are named
--       from its run digest
-- ARGV: 1 lease ms; 2 one msgpack array (types.PollArgs), per poll i an array: rd, kind (PK),
--       status, delay ms, iv, fail code, fail message, not found (error: a boolean);
--       3 + i the body of poll i (any bytes: Redis's cmsgpack has no binary type)
-- Returns one JSON map (types.PollReplies): replies, one map per poll in order: outcome (PR),
-- now, notices (0/1); or error.
local lease = tonumber(ARGV[1])
local now = redis_now()

local function record(wk, due, starters, rd, kind, status, body, delay, iv, fc, fm, not_found)
  local w = redis.call('HMGET', wk, W.STATE, W.FANOUT_CURSOR, W.PUSH_NEWS, W.NOTICE_CURSOR)
  if w[1] ~= WS.WATCHING then
    if not w[2] then redis.call('ZREM', due, rd) end
    return {outcome = PR.STALE, now = now}
  end
  if kind == PK.RESULT then
    redis.call('HSET', wk, RF.BODY, body, RF.FETCHED, now, W.STATUS, status)
    redis.call('HDEL', wk, W.NOT_FOUND_SINCE)
    if TERMINAL[status] then
      redis.call('HSET', wk, W.STATE, WS.TERMINAL, W.ENDED_AT, now, W.FANOUT_CURSOR, 0)
      if w[4] then redis.call('HDEL', wk, W.NOTICE_CURSOR) end  -- too late for run.started
      redis.call('ZADD', due, now + lease, rd)
      return {outcome = PR.TERMINAL, now = now}
    end
    -- A push that arrived while this poll was in flight is answered by the next poll, now.
    if w[3] then delay = 0 end
    redis.call('HSET', wk, W.INTERVAL, iv)
    redis.call('HDEL', wk, W.ERRORS)  -- absent: 0
    redis.call('ZADD', due, now + delay, rd)
    -- Only runs with run.started subscribers keep when they were first seen started.
    local notices = w[4] and 1 or 0  -- a fan-out still pending (a worker died during it)
    if status == RS.STARTED and redis.call('EXISTS', starters) == 1
       and redis.call('HSETNX', wk, W.STARTED_AT, now) == 1 then
      redis.call('HSET', wk, W.NOTICE_CURSOR, 0)
      notices = 1
    end
    return {outcome = PR.SCHEDULED, now = now, notices = notices}
  elseif kind == PK.ERROR then
    redis.call('HINCRBY', wk, W.ERRORS, 1)
    redis.call('HSET', wk, W.INTERVAL, iv)
    if not_found then redis.call('HSETNX', wk, W.NOT_FOUND_SINCE, now) end
    redis.call('ZADD', due, now + delay, rd)
    return {outcome = PR.SCHEDULED, now = now}
  end
  redis.call('HSET', wk, W.STATE, WS.FAILED, W.FAIL_CODE, fc, W.FAIL_MESSAGE, fm,
             W.ENDED_AT, now, W.FANOUT_CURSOR, 0)
  redis.call('ZADD', due, now + lease, rd)
  return {outcome = PR.FAILED, now = now}
end

local polls = cmsgpack.unpack(ARGV[2])
local replies = each_member(polls, function(p, i)
  local rd = p[1]
  return record(fmt(K_WATCH, rd), K_DUE_POLL, fmt(K_STARTERS, rd), rd, p[2], p[3], ARGV[i + 3],
                p[4], p[5], p[6], p[7], p[8])
end, true)
return json_list('replies', replies)
