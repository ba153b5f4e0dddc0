-- Push leased (or due) deliveries to a later due time without counting an attempt: a group
-- commit (the deferrals a worker makes while one call is in flight go in the next).
-- KEYS: none: each member's sub and its lane's due set are named from its sid and lane
-- ARGV: 1 one msgpack array (types.DeferArgs), per member an array: sid, lane (LANE), until ms
-- A member moves only while it is in its lane's due set and its lane is delivering (the
-- subscription's state on the terminal lane, its run.started state on the started lane); the
-- terminal lane's next attempt time moves with it.
-- Returns a list of maps, one per member in order: deferred (1) when it moved; or error.
return each_member(cmsgpack.unpack(ARGV[1]), function(a)
  local sid, started, until_ms = a[1], a[2] == LANE.STARTED, a[3]
  local due, k = started and K_DUE_NTC or K_DUE_DLV, fmt(K_SUB, sid)
  if not redis.call('ZSCORE', due, sid)
     or redis.call('HGET', k, started and F.NOTICE_STATE or F.STATE) ~= ST.DELIVERING then
    return {}
  end
  redis.call('ZADD', due, until_ms, sid)
  if not started then redis.call('HSET', k, F.NEXT_ATTEMPT, until_ms) end
  return {'deferred', 1}
end)
