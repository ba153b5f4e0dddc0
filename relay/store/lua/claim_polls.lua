-- Lease due polls (or one run's, for the first-poll kick) by Redis's clock.
-- KEYS: 1 due poll. ARGV: 1 limit, 2 lease ms, 3 run digest (optional: only that run)
-- Returns a list of maps: kind ('poll' | 'fanout'), rd, rk, iv, fs, nf, now
local limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = redis_now()
local due = due_entries(KEYS[1], now, limit, ARGV[3])
local out = {}
for _, rd in ipairs(due) do
  local w = redis.call('HMGET', fmt(K_WATCH, rd), W.STATE, W.RUN_KEY, W.INTERVAL,
                      W.FIRST_SEEN, W.NOT_FOUND_SINCE, W.FANOUT_CURSOR)
  if w[1] == WS.WATCHING then
    redis.call('ZADD', KEYS[1], now + lease, rd)
    local m = {'kind', 'poll', 'rd', rd, 'rk', w[2] or '', 'iv', w[3] or '0', 'fs', w[4] or now,
               'now', now}
    if w[5] then table.insert(m, 'nf'); table.insert(m, w[5]) end
    table.insert(out, m)
  elseif w[6] then
    redis.call('ZADD', KEYS[1], now + lease, rd)
    table.insert(out, {'kind', 'fanout', 'rd', rd, 'rk', w[2] or '', 'now', now})
  else
    redis.call('ZREM', KEYS[1], rd)
  end
end
return out
