-- Start a fresh attempt series for a client's subscription whose run ended.
-- KEYS: 1 sub, 2 attempts, 3 due dlv, 4.. client state zsets (SubState order)
-- ARGV: 1 sid, 2 client, 3 ttl ms. Returns a map: outcome (CO), state
local outcome, st = redeliver_one(ARGV[1], KEYS[1], ARGV[2], redis_now(), tonumber(ARGV[3]))
if outcome == CO.OK then redis.call('PUBLISH', WAKE_DLV, '1') end
if st then return {'outcome', outcome, 'state', st} end
return {'outcome', outcome}
