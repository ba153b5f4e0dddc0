-- Lease due delivery attempts by Redis's clock, with what each attempt reads: the document,
-- the run's stored result (when at most ARGV[3] bytes; else result='big'), the secrets.
-- KEYS: 1 due dlv. ARGV: 1 limit, 2 lease ms, 3 result max bytes, 4 sid (optional: only it)
-- Returns a list of maps (see deliveries.ClaimRow).
local limit, lease, result_max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = redis_now()
local due = due_entries(KEYS[1], now, limit, ARGV[4])
local fields = {F.STATE, F.ATTEMPTS, F.SERIES, F.EVENT_TYPE, F.OCCURRED, F.RUN_KEY, F.CLIENT,
                F.CALLBACK, F.METADATA, F.EVENTS, F.CREATED, W.FAIL_CODE, W.FAIL_MESSAGE,
                F.HEADERS}
local out = {}
for _, sid in ipairs(due) do
  local s = redis.call('HMGET', fmt(K_SUB, sid), unpack(fields))
  if s[1] == ST.DELIVERING then
    redis.call('ZADD', KEYS[1], now + lease, sid)
    local m = {'id', sid, 'now', now}
    for j = 2, #fields do
      if s[j] then table.insert(m, fields[j]); table.insert(m, s[j]) end
    end
    local rk = fmt(K_WATCH, run_digest(s[6] or ''))
    local size = redis.call('HSTRLEN', rk, RF.BODY)
    if redis.call('HEXISTS', rk, RF.BODY) == 0 then
      table.insert(m, 'result_state'); table.insert(m, 'none')
    elseif size > result_max then
      table.insert(m, 'result_state'); table.insert(m, 'big')
    else
      table.insert(m, 'result_state'); table.insert(m, 'result')
      table.insert(m, 'result'); table.insert(m, redis.call('HGET', rk, RF.BODY))
    end
    local sec = redis.call('HMGET', fmt(K_SECRETS, s[7] or ''), SF.CURRENT, SF.PREVIOUS,
                           SF.ROTATED)
    if sec[1] then table.insert(m, 'cur'); table.insert(m, sec[1]) end
    if sec[2] then table.insert(m, 'prev'); table.insert(m, sec[2]) end
    if sec[3] then table.insert(m, 'rot'); table.insert(m, sec[3]) end
    table.insert(out, m)
  else
    redis.call('ZREM', KEYS[1], sid)
  end
end
return out
