-- Take an Idempotency-Key for a new start, or read what it holds.
-- KEYS: 1 start key. ARGV: 1 fingerprint, 2 ttl ms, 3 pending ms (after that long a pending key
-- whose request never finished reads as unknown: its process died mid-start)
-- Returns a map: state (KS), code, body (when settled)
local k = KEYS[1]
local now = redis_now()
local f = redis.call('HMGET', k, SK.STATE, SK.FINGERPRINT, SK.TAKEN, SK.CODE, SK.BODY)
if not f[1] then
  redis.call('HSET', k, SK.STATE, KS.PENDING, SK.FINGERPRINT, ARGV[1], SK.TAKEN, now)
  redis.call('PEXPIRE', k, ARGV[2])
  return {'state', KS.NEW}
end
if f[2] ~= ARGV[1] then return {'state', KS.MISMATCH} end
if f[1] == KS.PENDING and now - tonumber(f[3]) > tonumber(ARGV[3]) then
  redis.call('HSET', k, SK.STATE, KS.UNKNOWN)
  return {'state', KS.UNKNOWN}
end
local out = {'state', f[1]}
if f[4] then
  table.insert(out, 'code'); table.insert(out, f[4])
  table.insert(out, 'body'); table.insert(out, f[5] or '')
end
return out
