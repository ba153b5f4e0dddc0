-- Re-derive lost due entries over bounded slices of the relay's own indexes, from cursors
-- saved in the housekeeping hash:
--   runs: a watching or fanning-out run without a poll due entry gets one; a run whose watch
--         expired leaves the index (cursor: a rank; it wraps to 0 at the end).
--   deliveries: each client's delivering subscriptions (clients in name order, then rank)
--         without a delivery due entry get one.
-- KEYS: 1 runs index, 2 housekeeping, 3 due poll, 4 due dlv, 5 clients
-- ARGV: 1 runs per slice, 2 delivering subscriptions per slice
-- Returns a map: polls, deliveries, seen, wrapped (0/1: both walks reached their end)
local limit, dlimit = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = redis_now()
local hk = KEYS[2]
local pos = tonumber(redis.call('HGET', hk, 'runs') or '0')
local rds = redis.call('ZRANGE', KEYS[1], pos, pos + limit - 1)
local polls, deliveries, gone = 0, 0, 0
for _, rd in ipairs(rds) do
  local w = redis.call('HMGET', fmt(K_WATCH, rd), W.STATE, W.FANOUT_CURSOR)
  if not w[1] and not w[2] then
    redis.call('ZREM', KEYS[1], rd)
    gone = gone + 1
  elseif (w[1] == WS.WATCHING or w[2]) and not redis.call('ZSCORE', KEYS[3], rd) then
    redis.call('ZADD', KEYS[3], 'NX', now, rd)
    polls = polls + 1
  end
end
local runs_done = #rds < limit
if runs_done then pos = 0 else pos = pos + limit - gone end
redis.call('HSET', hk, 'runs', pos)
-- Deliveries: from the saved client and rank, at most dlimit entries.
local cl = redis.call('HGET', hk, 'dcl')
local dpos = tonumber(redis.call('HGET', hk, 'dpos') or '0')
local budget, seen, dlv_done = dlimit, #rds, false
while budget > 0 do
  if not cl then
    local first = redis.call('ZRANGE', KEYS[5], 0, 0)
    if not first[1] then dlv_done = true; break end
    cl, dpos = first[1], 0
  end
  local sids = redis.call('ZRANGE', fmt(K_STATE, cl, ST.DELIVERING), dpos, dpos + budget - 1)
  for _, sid in ipairs(sids) do
    if not redis.call('ZSCORE', KEYS[4], sid) then
      redis.call('ZADD', KEYS[4], 'NX', now, sid)
      deliveries = deliveries + 1
    end
  end
  seen, budget, dpos = seen + #sids, budget - #sids, dpos + #sids
  if budget > 0 then  -- this client is done: the next one by name, or the end of the walk
    local nxt = redis.call('ZRANGEBYLEX', KEYS[5], '(' .. cl, '+', 'LIMIT', 0, 1)
    if not nxt[1] then cl, dpos, dlv_done = nil, 0, true; break end
    cl, dpos = nxt[1], 0
  end
end
if cl then redis.call('HSET', hk, 'dcl', cl, 'dpos', dpos) else redis.call('HDEL', hk, 'dcl', 'dpos') end
local wrapped = 0
if runs_done and dlv_done then wrapped = 1 end
return {'polls', polls, 'deliveries', deliveries, 'seen', seen, 'wrapped', wrapped}
