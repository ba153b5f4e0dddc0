-- Lease due polls (or one run's, for the first-poll kick) by Redis's clock.
-- KEYS: 1 due poll. ARGV: 1 limit, 2 lease ms, 3 run digest (optional: only that run)
-- Returns one JSON map (types.PollClaims): polls, a list of maps (types.ClaimedPoll): kind
-- (DW: poll | fanout), rd, rk, iv, fs, nf, now, and for runs started through the relay dl, px,
-- pg, pn (a push this poll answers: taken, its claim time noted) and sw (1: it has run.started
-- subscribers and was not seen started yet). The values are ASCII (digests, the run key
-- percent-encoded, numbers), so cjson passes them through unchanged.
local limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = redis_now()
local due = due_entries(KEYS[1], now, limit, ARGV[3])
local out = {}
for _, rd in ipairs(due) do
  local w = redis.call('HMGET', fmt(K_WATCH, rd), W.STATE, W.RUN_KEY, W.INTERVAL,
                      W.FIRST_SEEN, W.NOT_FOUND_SINCE, W.FANOUT_CURSOR, W.DEADLINE,
                      W.EXPECTS_PUSH, W.PUSHED, W.PUSH_NEWS, W.STARTED_AT)
  if w[1] == WS.WATCHING then
    redis.call('ZADD', KEYS[1], now + lease, rd)
    local m = {kind = DW.POLL, rd = rd, rk = w[2] or '', iv = w[3] or '0', fs = w[4] or now,
               now = now, nf = w[5] or nil}  -- HMGET answers false for a missing field
    if w[7] then
      m.dl, m.px, m.pg, m.pn = w[7], w[8] or 0, w[9] or 0, w[10] or 0
      if not w[11] and redis.call('EXISTS', fmt(K_STARTERS, rd)) == 1 then m.sw = 1 end
      if w[10] then
        redis.call('HDEL', fmt(K_WATCH, rd), W.PUSH_NEWS)
        redis.call('HSET', fmt(K_WATCH, rd), W.PUSH_POLLED, now)
      end
    end
    table.insert(out, m)
  elseif w[6] then
    redis.call('ZADD', KEYS[1], now + lease, rd)
    table.insert(out, {kind = DW.FANOUT, rd = rd, rk = w[2] or '', now = now})
  else
    redis.call('ZREM', KEYS[1], rd)
  end
end
return json_list('polls', out)
