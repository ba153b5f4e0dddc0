-- Lease due delivery attempts by Redis's clock, with what each attempt reads: the document,
-- the run's stored result (when at most ARGV[3] bytes; else result_state RR.BIG), the secrets.
-- KEYS: 1 due dlv. ARGV: 1 limit, 2 lease ms, 3 result max bytes, 4 sid (optional: only it)
-- Returns a list of ClaimReply maps {claim = ClaimRow as JSON, result} (prelude's claim_due).
local limit, lease, result_max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = redis_now()
local own = {F.STATE, F.ATTEMPTS, F.SERIES, F.EVENT_TYPE, F.OCCURRED, W.FAIL_CODE,
             W.FAIL_MESSAGE}
return claim_due(KEYS[1], now, limit, ARGV[4], lease, own, function(sid, s)
  if s[1] ~= ST.DELIVERING then return nil end
  local m = {id = sid, now = now}
  for j = 2, #own do
    if s[j] then m[own[j]] = s[j] end
  end
  local rk = fmt(K_WATCH, run_digest(s[#own + 1] or ''))
  local size = redis.call('HSTRLEN', rk, RF.BODY)
  if redis.call('HEXISTS', rk, RF.BODY) == 0 then
    m.result_state = RR.NONE
  elseif size > result_max then
    m.result_state = RR.BIG
  else
    m.result_state = RR.CARRIED
    m.result = redis.call('HGET', rk, RF.BODY)
  end
  return m
end)
