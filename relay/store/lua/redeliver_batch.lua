-- Bulk redeliver, one bounded batch: examine up to `limit` entries of a client's per-state
-- index from rank `offset` (oldest first) and start a new series for each that matches the
-- filter, exactly as redeliver.lua does for one (a started one leaves this index, so the next
-- batch goes on from `offset` + the entries kept).
-- KEYS: 1 the client's index of the wanted state, 2 due dlv, 3.. client state zsets
-- ARGV: 1 client, 2 offset, 3 limit, 4 run id digest (keys.run_id_digest) or '', 5 host or '', 6 since ms or '',
--       7 until ms or '', 8 ttl ms
-- Returns a map: count (started), offset (to go on from), done (1 when the index is through)
local cl, offset, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local crd, host, since, till = ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local ttl = tonumber(ARGV[8])
local sids = redis.call('ZRANGE', KEYS[1], offset, offset + limit - 1)
local now = redis_now()
local count, kept = 0, 0
for _, sid in ipairs(sids) do
  local k = fmt(K_SUB, sid)
  local s = redis.call('HMGET', k, F.RUN_KEY, F.CALLBACK, F.UPDATED, F.CREATED)
  local up = tonumber(s[3] or s[4] or '0')  -- updated defaults to created
  local match = s[1] and (crd == '' or run_id_digest(s[1]) == crd)
    and (host == '' or callback_host(s[2] or '') == host)
    and (not since or up >= since) and (not till or up <= till)
  if match and redeliver_one(sid, k, cl, now, ttl) == CO.OK then
    count = count + 1
  else
    kept = kept + 1
  end
end
if count > 0 then redis.call('PUBLISH', WAKE_DLV, '1') end
local done = 0
if #sids < limit then done = 1 end
return {'count', count, 'offset', offset + kept, 'done', done}
