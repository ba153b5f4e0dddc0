-- Lease due run.started attempts (the notice lane) by Redis's clock, with what each reads: the
-- document and the secrets (the event carries no result). A canceled subscription's notice
-- is dropped; a skipped one's (the run ended in a status it did not ask for) still goes.
-- KEYS: 1 due ntc. ARGV: 1 limit, 2 lease ms, 3 sid (optional: only it)
-- Returns a list of maps (deliveries.ClaimRow, lane 'started').
local limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = redis_now()
local out = {}
for _, sid in ipairs(due_entries(KEYS[1], now, limit, ARGV[3])) do
  local s = redis.call('HMGET', fmt(K_SUB, sid), F.NOTICE_STATE, F.STATE, F.NOTICE_ATTEMPTS,
                       F.NOTICE_AT, unpack(DOC_FIELDS))
  if s[1] == ST.DELIVERING and s[2] and s[2] ~= ST.CANCELED then
    redis.call('ZADD', KEYS[1], now + lease, sid)
    local m = {'id', sid, 'now', now, 'lane', LANE.STARTED, 'et', EV.STARTED,
               'n', s[3] or 0, 'ta', s[4] or now}
    claim_doc(m, s, 5)
    table.insert(out, m)
  else
    redis.call('ZREM', KEYS[1], sid)
  end
end
return out
