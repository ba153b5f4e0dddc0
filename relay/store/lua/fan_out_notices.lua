-- Make the next batch (<= ARGV[1]) of a run's run.started subscribers due on the notice
-- lane, from the cursor saved in the watch (record_poll.lua sets it when a poll first sees the
-- run started); the last batch clears the cursor. A crash between batches loses nothing: the
-- next poll answers notices=1 again. Subscriptions no longer watching are passed over.
-- KEYS: 1 watch, 2 run starters. ARGV: 1 batch
-- Returns a map: due (made due in this batch), done (0/1)
local batch = tonumber(ARGV[1])
local c = redis.call('HMGET', KEYS[1], W.NOTICE_CURSOR, W.STARTED_AT)
if not c[1] then return {'due', 0, 'done', 1} end
local now = redis_now()
local rows = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. c[1], '+inf', 'WITHSCORES',
                        'LIMIT', 0, batch)
local due, last = 0, c[1]
for i = 1, #rows, 2 do
  if start_notice(rows[i], c[2] or now, now) then due = due + 1 end
  last = rows[i + 1]
end
if due > 0 then redis.call('PUBLISH', WAKE_NTC, '1') end
if #rows < 2 * batch then
  redis.call('HDEL', KEYS[1], W.NOTICE_CURSOR)
  return {'due', due, 'done', 1}
end
redis.call('HSET', KEYS[1], W.NOTICE_CURSOR, last)
return {'due', due, 'done', 0}
