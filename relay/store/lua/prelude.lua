-- Helpers shared by every script (prepended after the generated constants of keys.py).
-- Keys built here are only those of members a script walks or records: a subscription id, a
-- run digest or a client name read from a hash or a due set, or packed by the caller.

local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function fmt(template, ...) return string.format(template, ...) end

-- A reply as one JSON map {name = list}. cjson writes an empty Lua table as an object, not a
-- list, so an empty list is left out (the reply Struct's default is []).
local function json_list(name, list)
  if #list == 0 then return '{}' end
  return cjson.encode({[name] = list})
end

-- A group commit: call(item, i) for each member of the caller's packed list (i: its index from
-- 0), each under pcall, so a member Redis refuses answers an error map and the others stand
-- (record_attempts.lua, record_poll.lua). The members' keys are built here from the ids they
-- carry (seam "member keys in the script", bench/NOTES.md session 26: redis-py packs each
-- argument of a call in Python, three keys per member; buys 2.4-4.2 % of the worker's
-- instructions per delivery, ~5 % per poll). The answers, in the members' order
-- (as_map: call answers a Lua map, {error = why} for a refused member, for a reply encoded as
-- JSON; else flat key/value arrays).
local function each_member(items, call, as_map)
  local out = {}
  for i, item in ipairs(items) do
    local ok, res = pcall(call, item, i - 1)
    if ok then
      table.insert(out, res)
    else
      local why = type(res) == 'table' and (res.err or '?') or tostring(res)
      table.insert(out, as_map and {error = why} or {'error', why})
    end
  end
  return out
end

-- Up to limit members of a due set due by now, or just `only` when given and due.
local function due_entries(due_set, now, limit, only)
  if only then
    local score = redis.call('ZSCORE', due_set, only)
    if score and tonumber(score) <= now then return {only} end
    return {}
  end
  return redis.call('ZRANGEBYSCORE', due_set, '-inf', now, 'LIMIT', 0, limit)
end

-- The digests naming a run's keys and a client's per-run index (keys.run_digest and
-- keys.run_id_digest compute the same), from the run key a subscription stores.
-- (The first 64 bits of the SHA-1 in unpadded URL-safe base64: 3 hex digits make 2
-- characters, the 16th digit the last one, as Python's base64 encodes the same 8 bytes.)
local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
local function digest(text)
  local hex, out = redis.sha1hex(text), {}
  for i = 1, 13, 3 do
    local v = tonumber(string.sub(hex, i, i + 2), 16)
    local hi, lo = math.floor(v / 64), v % 64
    table.insert(out, string.sub(B64, hi + 1, hi + 1) .. string.sub(B64, lo + 1, lo + 1))
  end
  local last = tonumber(string.sub(hex, 16, 16), 16) * 4
  table.insert(out, string.sub(B64, last + 1, last + 1))
  return table.concat(out)
end
local function run_digest(rk) return digest(rk) end
local function run_id_digest(rk) return digest('\0' .. string.match(rk, '([^/]*)$')) end

-- Move a subscription's entry in its client's per-state index (client cl, state old, created
-- ca: read from its hash by the caller) to new_state; the caller writes the hash's state.
local function move_state(sid, cl, old, ca, new_state)
  if old then redis.call('ZREM', fmt(K_STATE, cl, old), sid) end
  redis.call('ZADD', fmt(K_STATE, cl, new_state), ca, sid)
end

-- Move a subscription to new_state, keeping its client's per-state index in step.
local function set_state(sid, k, new_state)
  local f = redis.call('HMGET', k, F.CLIENT, F.STATE, F.CREATED)
  move_state(sid, f[1], f[2], f[3], new_state)
  redis.call('HSET', k, F.STATE, new_state)
end

-- Take a subscription out of its run (run digest rd): its subscribers (the watch's first, or
-- the zset) and its run.started subscribers. The first's sequence stays taken: later ones keep
-- theirs and a new registrant goes to the zset (cancel.lua, prune.lua).
local function leave_run(rd, sid)
  redis.call('ZREM', fmt(K_SUBS, rd), sid)
  redis.call('ZREM', fmt(K_STARTERS, rd), sid)
  local wk = fmt(K_WATCH, rd)
  if redis.call('HGET', wk, W.FIRST_SUB) == sid then
    redis.call('HDEL', wk, W.FIRST_SUB)
    redis.call('HSETNX', wk, W.SEQUENCE, 1)
  end
end

-- The r:exp member that lets housekeeping drop a subscription's index entries once it expired,
-- from its client, fingerprint, run digest and run id digest.
local function exp_entry(sid, cl, idem, rd, rid)
  return sid .. '\t' .. (cl or '') .. '\t' .. (idem or '') .. '\t' .. rd .. '\t' .. rid
end

local function exp_member(sid, k)
  local f = redis.call('HMGET', k, F.CLIENT, F.IDEM, F.RUN_KEY)
  local rk = f[3] or ''
  return exp_entry(sid, f[1], f[2], run_digest(rk), run_id_digest(rk))
end

-- Expire a subscription ttl from now (member: its r:exp member when the caller has it).
local function expire_sub(sid, now, ttl, member)
  local k = fmt(K_SUB, sid)
  redis.call('PEXPIRE', k, ttl)
  redis.call('PEXPIRE', fmt(K_ATTEMPTS, sid), ttl)
  redis.call('ZADD', K_EXPIRING, now + ttl, member or exp_member(sid, k))
end

local function persist_sub(sid)
  local k = fmt(K_SUB, sid)
  redis.call('PERSIST', k)
  redis.call('PERSIST', fmt(K_ATTEMPTS, sid))
  redis.call('ZREM', K_EXPIRING, exp_member(sid, k))
end

-- A run's keys live while it is watched, fanning out, or has a delivery pending; then they
-- expire ttl after the last of these ended (never before any subscription that reads them).
local function settle_run(rd, ttl)
  local wk = fmt(K_WATCH, rd)
  local w = redis.call('HMGET', wk, W.STATE, W.FANOUT_CURSOR, W.PENDING)
  local keys = {wk, fmt(K_SUBS, rd), fmt(K_STARTERS, rd)}
  local busy = w[1] == WS.WATCHING or w[2] or tonumber(w[3] or '0') > 0
  for _, key in ipairs(keys) do
    if busy then redis.call('PERSIST', key) else redis.call('PEXPIRE', key, ttl) end
  end
end

-- Move one watching subscription to delivery of an event (or to skipped). True: delivering.
local function start_delivery(sid, status, event_type, ended_at, now, ttl, fc, fm)
  local k = fmt(K_SUB, sid)
  if status ~= '' then
    local ev = redis.call('HGET', k, F.EVENTS)  -- absent: every status
    if ev and not string.find(ev, '|' .. status .. '|', 1, true) then
      set_state(sid, k, ST.SKIPPED)  -- no event: eventType stays null (runStatus says how it ended)
      redis.call('HSET', k, F.UPDATED, now, F.OCCURRED, ended_at)
      expire_sub(sid, now, ttl)
      return false
    end
  end
  set_state(sid, k, ST.DELIVERING)
  redis.call('HSET', k, F.UPDATED, now, F.EVENT_TYPE, event_type, F.OCCURRED, ended_at,
             F.ATTEMPTS, 0, F.NEXT_ATTEMPT, now)
  if fc then redis.call('HSET', k, W.FAIL_CODE, fc, W.FAIL_MESSAGE, fm or '') end
  redis.call('ZADD', K_DUE_DLV, now, sid)
  return true
end

-- Make a watching subscription's run.started event due (its own lane, due set K_DUE_NTC),
-- once: a subscription that has a run.started state already keeps it. True: made due.
local function start_notice(sid, started_at, now)
  local k = fmt(K_SUB, sid)
  local s = redis.call('HMGET', k, F.STATE, F.NOTICE_STATE)
  if s[1] ~= ST.WATCHING or s[2] then return false end
  redis.call('HSET', k, F.NOTICE_STATE, ST.DELIVERING, F.NOTICE_AT, started_at)
  redis.call('ZADD', K_DUE_NTC, now, sid)
  return true
end

-- What a delivery claim (either lane) reads of the subscription's document, in this order.
local DOC_FIELDS = {F.RUN_KEY, F.CLIENT, F.CALLBACK, F.METADATA, F.EVENTS, F.CREATED, F.HEADERS}

-- Add to claim map m (field -> value) the document fields (s[from], s[from + 1], ... in
-- DOC_FIELDS order) and the signing secrets of the subscription's client.
local function claim_doc(m, s, from)
  for j, name in ipairs(DOC_FIELDS) do
    local v = s[from + j - 1]
    if v then m[name] = v end
  end
  local sec = redis.call('HMGET', fmt(K_SECRETS, s[from + 1] or ''), SF.CURRENT, SF.PREVIOUS,
                         SF.ROTATED)
  if sec[1] then m.cur = sec[1] end
  if sec[2] then m.prev = sec[2] end
  if sec[3] then m.rot = sec[3] end
end

-- Lease the due entries of a delivery lane: for each, read the subscription's `own` fields
-- then DOC_FIELDS (one HMGET); build(sid, s) answers the claim map's own part (field ->
-- value), or nil when the entry is no longer due work (dropped from the set). Returns one map
-- {claim = the claim map as JSON, result = the run's result bytes (m.result, when set)} per
-- entry: the worker decodes the claim in one msgspec call, and the body is not escaped.
local function claim_due(due_set, now, limit, only, lease, own, build)
  local names = {unpack(own)}
  for _, name in ipairs(DOC_FIELDS) do table.insert(names, name) end
  local out = {}
  for _, sid in ipairs(due_entries(due_set, now, limit, only)) do
    local s = redis.call('HMGET', fmt(K_SUB, sid), unpack(names))
    local m = build(sid, s)
    if m then
      redis.call('ZADD', due_set, now + lease, sid)
      claim_doc(m, s, #own + 1)
      local result = m.result
      m.result = nil
      local entry = {'claim', cjson.encode(m)}
      if result then table.insert(entry, 'result'); table.insert(entry, result) end
      table.insert(out, entry)
    else
      redis.call('ZREM', due_set, sid)
    end
  end
  return out
end

-- Start a fresh attempt series for a client's subscription whose run ended (redeliver.lua for
-- one, redeliver_batch.lua for each match). Returns the outcome (CO) and the subscription's
-- state.
local function redeliver_one(sid, k, cl, now, ttl)
  local s = redis.call('HMGET', k, F.CLIENT, F.STATE, F.EVENT_TYPE, F.RUN_KEY, F.SERIES)
  if s[1] ~= cl or not s[2] then return CO.NOT_FOUND, nil end
  local st = s[2]
  if not s[3] or not (st == ST.DELIVERED or st == ST.EXHAUSTED or st == ST.GONE
                      or st == ST.DELIVERING) then
    return CO.CONFLICT, st
  end
  local rd = run_digest(s[4] or '')
  if st ~= ST.DELIVERING then
    redis.call('HINCRBY', fmt(K_WATCH, rd), W.PENDING, 1)
    settle_run(rd, ttl)
  end
  set_state(sid, k, ST.DELIVERING)
  redis.call('HSET', k, F.SERIES, tonumber(s[5] or '1') + 1)
  redis.call('HSET', k, F.ATTEMPTS, 0, F.NEXT_ATTEMPT, now, F.UPDATED, now)
  persist_sub(sid)
  redis.call('ZADD', K_DUE_DLV, now, sid)
  return CO.OK, ST.DELIVERING
end

-- The host of a callback URL, lower-case, without brackets or port (bulk redeliver's filter).
local function callback_host(url)
  local authority = string.match(url, '^%a[%w+.-]*://([^/?#]*)') or ''
  authority = string.match(authority, '([^@]*)$') or ''
  local host = string.match(authority, '^%[([^%]]*)%]') or string.match(authority, '^([^:]*)')
  return string.lower(host or '')
end
