-- Push leased (or due) deliveries to a later due time without counting an attempt.
-- KEYS: 1 due dlv. ARGV: 1 until ms, 2.. sids. Returns a map: deferred
local until_ms, n = ARGV[1], 0
for i = 2, #ARGV do
  local sid = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], sid)
     and redis.call('HGET', fmt(K_SUB, sid), F.STATE) == ST.DELIVERING then
    redis.call('ZADD', KEYS[1], until_ms, sid)
    redis.call('HSET', fmt(K_SUB, sid), F.NEXT_ATTEMPT, until_ms)
    n = n + 1
  end
end
return {'deferred', n}
