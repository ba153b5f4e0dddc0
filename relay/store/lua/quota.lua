-- Count one use of a per-client quota in a fixed window that starts with its first use.
-- KEYS: 1 the counter. ARGV: 1 window ms. Returns a map: count (uses in this window), ttl
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {'count', n, 'ttl', ttl}
