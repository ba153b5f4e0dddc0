-- Make ARGV[1] the client's current signing secret; the old one signs on for the overlap.
-- KEYS: 1 secrets. ARGV: 1 fresh secret. Returns a map: secret, rotated (ms)
local now = redis_now()
local cur = redis.call('HGET', KEYS[1], SF.CURRENT)
if cur then redis.call('HSET', KEYS[1], SF.PREVIOUS, cur) end
redis.call('HSET', KEYS[1], SF.CURRENT, ARGV[1], SF.ROTATED, now)
return {'secret', ARGV[1], 'rotated', now}
