-- Move the next batch (<= ARGV[3]) of an ended run's watching subscribers to delivery (or
-- skipped), from the cursor saved in the watch; the last batch clears the cursor and the run's
-- poll due entry. A crash between batches loses nothing: the due entry brings it back.
-- The run's first subscriber (sequence 1) is the watch's FIRST_SUB field; the rest are in the
-- subscribers zset by sequence. KEYS: 1 watch, 2 run subscribers, 3 due poll. ARGV: 1 rd, 2 ttl ms, 3 batch
-- Returns a map: moved, delivering, done (0/1)
local rd, ttl, batch = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local wk = KEYS[1]
local w = redis.call('HMGET', wk, W.STATE, W.FANOUT_CURSOR, W.STATUS, W.ENDED_AT,
                    W.FAIL_CODE, W.FAIL_MESSAGE, W.FIRST_SUB)
if not w[2] then return {'moved', 0, 'delivering', 0, 'done', 1} end
local now = redis_now()
local status, event_type, fc, fm = w[3] or '', nil, nil, nil
if w[1] == WS.TERMINAL then
  event_type = 'run.' .. status
else
  status, event_type, fc, fm = '', EV.WATCH_FAILED, w[5] or FC.WATCH_TIMEOUT, w[6] or ''
end
local rows = {}
if tonumber(w[2]) < 1 and w[7] then rows = {w[7], '1'} end
local want = batch - #rows / 2
local more = want > 0 and redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. w[2], '+inf',
                                     'WITHSCORES', 'LIMIT', 0, want) or {}
for _, v in ipairs(more) do table.insert(rows, v) end
local moved, delivering, last = 0, 0, w[2]
for i = 1, #rows, 2 do
  local sid = rows[i]
  last = rows[i + 1]
  if redis.call('HGET', fmt(K_SUB, sid), F.STATE) == ST.WATCHING then
    moved = moved + 1
    if start_delivery(sid, status, event_type, w[4] or now, now, ttl, fc, fm) then
      delivering = delivering + 1
    end
  end
end
if delivering > 0 then
  redis.call('HINCRBY', wk, W.PENDING, delivering)
  redis.call('PUBLISH', WAKE_DLV, '1')
end
redis.call('HSET', wk, W.ACTIVE, 0)
if #more < 2 * want then
  redis.call('HDEL', wk, W.FANOUT_CURSOR)
  redis.call('ZREM', KEYS[3], rd)
  settle_run(rd, ttl)
  return {'moved', moved, 'delivering', delivering, 'done', 1}
end
redis.call('HSET', wk, W.FANOUT_CURSOR, last)
return {'moved', moved, 'delivering', delivering, 'done', 0}
