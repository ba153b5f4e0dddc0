-- Re-derive lost due entries over one bounded slice of the runs index, from the cursor saved
-- in the housekeeping hash (a rank; it wraps to 0 at the end). Per run: a watching or
-- fanning-out run without a poll due entry gets one; a run with pending deliveries has its
-- delivering subscribers without a delivery due entry put back (at most the per-run quota).
-- A run whose watch expired leaves the index.
-- KEYS: 1 runs index, 2 housekeeping, 3 due poll, 4 due dlv. ARGV: 1 runs per slice
-- Returns a map: polls, deliveries, seen, wrapped (0/1)
local limit = tonumber(ARGV[1])
local now = redis_now()
local pos = tonumber(redis.call('HGET', KEYS[2], 'sweep') or '0')
local rds = redis.call('ZRANGE', KEYS[1], pos, pos + limit - 1)
local polls, deliveries, gone = 0, 0, 0
for _, rd in ipairs(rds) do
  local wk = fmt(K_WATCH, rd)
  local w = redis.call('HMGET', wk, W.STATE, W.FANOUT_CURSOR, W.PENDING)
  if not w[1] and not w[2] and not w[3] then
    redis.call('ZREM', KEYS[1], rd)
    gone = gone + 1
  else
    if (w[1] == WS.WATCHING or w[2]) and not redis.call('ZSCORE', KEYS[3], rd) then
      redis.call('ZADD', KEYS[3], 'NX', now, rd)
      polls = polls + 1
    end
    if tonumber(w[3] or '0') > 0 then
      for _, sid in ipairs(redis.call('ZRANGE', fmt(K_SUBS, rd), 0, -1)) do
        if redis.call('HGET', fmt(K_SUB, sid), F.STATE) == ST.DELIVERING
           and not redis.call('ZSCORE', KEYS[4], sid) then
          redis.call('ZADD', KEYS[4], 'NX', now, sid)
          deliveries = deliveries + 1
        end
      end
    end
  end
end
local wrapped = 0
if #rds < limit then pos, wrapped = 0, 1 else pos = pos + limit - gone end
redis.call('HSET', KEYS[2], 'sweep', pos)
return {'polls', polls, 'deliveries', deliveries, 'seen', #rds, 'wrapped', wrapped}
