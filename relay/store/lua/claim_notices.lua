-- Lease due run.started attempts (the notice lane) by Redis's clock, with what each reads: the
-- document and the secrets (the event carries no result). A canceled subscription's notice
-- is dropped; a skipped one's (the run ended in a status it did not ask for) still goes.
-- KEYS: 1 due ntc. ARGV: 1 limit, 2 lease ms, 3 sid (optional: only it)
-- Returns a list of ClaimReply maps {claim = ClaimRow as JSON} (prelude's claim_due; lane
-- 'started').
local now = redis_now()
local own = {F.NOTICE_STATE, F.STATE, F.NOTICE_ATTEMPTS, F.NOTICE_AT}
return claim_due(KEYS[1], now, tonumber(ARGV[1]), ARGV[3], tonumber(ARGV[2]), own,
                 function(sid, s)
  if s[1] ~= ST.DELIVERING or not s[2] or s[2] == ST.CANCELED then return nil end
  return {id = sid, now = now, lane = LANE.STARTED, et = EV.STARTED, n = s[3] or 0,
          ta = s[4] or now}
end)
