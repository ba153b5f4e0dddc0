-- Drop the index entries (client state lists, run indexes, run subscribers) of up to
-- ARGV[1] subscriptions whose keys have expired.
-- KEYS: 1 expiring. ARGV: 1 limit. Returns a map: pruned, seen
local limit = tonumber(ARGV[1])
local now = redis_now()
local pruned, seen = 0, 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)) do
  seen = seen + 1
  local sid, cl, ik, rd, crd = string.match(m, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
  local ttl = sid and redis.call('PTTL', fmt(K_SUB, sid)) or -2
  if ttl > 0 then
    redis.call('ZADD', KEYS[1], now + ttl, m)
  elseif ttl == -1 then
    redis.call('ZREM', KEYS[1], m)
  else
    if sid then
      for _, st in ipairs(ALL_STATES) do redis.call('ZREM', fmt(K_STATE, cl, st), sid) end
      local runs, run_index = fmt(K_CLIENT_RUNS, cl), fmt(K_CLIENT_RUN, cl, crd)
      if redis.call('HGET', runs, crd) == sid then redis.call('HDEL', runs, crd) end
      if ik ~= '' and redis.call('HGET', run_index, ik) == sid then
        redis.call('HDEL', run_index, ik)
      end
      leave_run(rd, sid)
    end
    redis.call('ZREM', KEYS[1], m)
    pruned = pruned + 1
  end
end
return {'pruned', pruned, 'seen', seen}
