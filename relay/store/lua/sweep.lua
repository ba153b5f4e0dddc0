-- Re-derive lost due entries over bounded slices of the relay's own indexes: each client's
-- watching subscriptions (their run gets a poll due entry when it is watched or fanning out
-- and has none) and delivering subscriptions (a delivery due entry when missing). Clients are
-- walked in name order, each index by rank, from cursors saved in the housekeeping hash.
-- KEYS: 1 housekeeping, 2 due poll, 3 due dlv, 4 clients
-- ARGV: 1 watching subscriptions per slice, 2 delivering subscriptions per slice
-- Returns a map: polls, deliveries, seen, watching_done, delivering_done (0/1: that walk
-- reached its end in this slice and starts over in the next)
local now = redis_now()
local hk = KEYS[1]

-- Walk up to budget members of every client's `state` index from the saved cursor; calls
-- fix(sid) for each. Returns seen, done (the walk reached its end and starts over next time).
local function walk(state, budget, cursor, fix)
  local cl = redis.call('HGET', hk, cursor .. ':cl')
  local pos = tonumber(redis.call('HGET', hk, cursor .. ':pos') or '0')
  local seen, done = 0, false
  while budget > 0 do
    if not cl then
      local first = redis.call('ZRANGE', KEYS[4], 0, 0)
      if not first[1] then done = true; break end
      cl, pos = first[1], 0
    end
    local sids = redis.call('ZRANGE', fmt(K_STATE, cl, state), pos, pos + budget - 1)
    for _, sid in ipairs(sids) do fix(sid) end
    seen, budget, pos = seen + #sids, budget - #sids, pos + #sids
    if budget > 0 then  -- this client is done: the next one by name, or the end of the walk
      local nxt = redis.call('ZRANGEBYLEX', KEYS[4], '(' .. cl, '+', 'LIMIT', 0, 1)
      cl, pos = nxt[1], 0
      if not cl then done = true; break end
    end
  end
  if cl then
    redis.call('HSET', hk, cursor .. ':cl', cl, cursor .. ':pos', pos)
  else
    redis.call('HDEL', hk, cursor .. ':cl', cursor .. ':pos')
  end
  return seen, done
end

local polls, deliveries = 0, 0
local seen_w, done_w = walk(ST.WATCHING, tonumber(ARGV[1]), 'w', function(sid)
  local rk = redis.call('HGET', fmt(K_SUB, sid), F.RUN_KEY)
  if not rk then return end
  local rd = run_digest(rk)
  local w = redis.call('HMGET', fmt(K_WATCH, rd), W.STATE, W.FANOUT_CURSOR)
  if (w[1] == WS.WATCHING or w[2]) and not redis.call('ZSCORE', KEYS[2], rd) then
    redis.call('ZADD', KEYS[2], 'NX', now, rd)
    polls = polls + 1
  end
end)
local seen_d, done_d = walk(ST.DELIVERING, tonumber(ARGV[2]), 'd', function(sid)
  if not redis.call('ZSCORE', KEYS[3], sid) then
    redis.call('ZADD', KEYS[3], 'NX', now, sid)
    deliveries = deliveries + 1
  end
end)
return {'polls', polls, 'deliveries', deliveries, 'seen', seen_w + seen_d,
        'watching_done', done_w and 1 or 0, 'delivering_done', done_d and 1 or 0}
