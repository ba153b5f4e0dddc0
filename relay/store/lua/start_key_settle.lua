-- Settle a key this request holds (pending, same fingerprint): store its answer.
-- KEYS: 1 start key. ARGV: 1 fingerprint, 2 new state (KS.DONE or KS.UNKNOWN), 3 code, 4 body
-- Returns a map: settled (1, or 0 when the key is not this request's any more)
local f = redis.call('HMGET', KEYS[1], SK.STATE, SK.FINGERPRINT)
if f[1] ~= KS.PENDING or f[2] ~= ARGV[1] then return {'settled', 0} end
redis.call('HSET', KEYS[1], SK.STATE, ARGV[2], SK.CODE, ARGV[3], SK.BODY, ARGV[4])
return {'settled', 1}
