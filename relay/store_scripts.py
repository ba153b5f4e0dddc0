"""The Lua scripts behind every atomic transition of ``relay.store`` (and nothing else).

Key layout (``relay.store`` is the only Python that names keys; these scripts mirror it):

    r:s:{sid}              hash  subscription: cl rk ev ca cb [md] [dx] st up n ser et ta na ik
                                 (the document is spread over short fields so the hash stays a
                                 listpack: cb callback URL, md metadata unless {}, dx the run's
                                 workspace/project/id as JSON only when rk does not spell them)
    r:s:{sid}:a            list  attempt log (JSON, newest last, trimmed)
    r:s:{sid}:b            str   the event body, built once, identical on every retry/redelivery
    r:w:{rk}               hash  run watch: st, p, r, s, pc, fs, iv, np, er, nf, ac, ta, fc, fm
    r:w:{rk}:s             set   every subscription id ever registered on the run
    r:res:{rk}             hash  cached Intuned result: b (raw body), t (fetched ms), st (status)
    r:due:poll             zset  run keys by next poll (ms); claimed entries get a lease score
    r:due:dlv              zset  subscription ids by next delivery attempt (ms); leased the same way
    r:c:{client}           zset  the client's subscription ids by creation (ms)
    r:c:{client}:st:{st}   zset  the same, per state (for ?state=)
    r:c:{client}:idem      hash  project/run/callback fingerprint -> subscription id
    r:sec:{client}         hash  signing secrets: cur, prev, rot (ms of the last rotation)
    r:exp                  zset  "sid\tclient\tidem" by expiry (ms): index entries to prune

Nothing leaves a due set before its work is recorded: a claim only pushes the score into the
future (a lease). A worker killed mid-poll or mid-delivery therefore loses nothing; the entry
comes due again when the lease runs out.
"""

from __future__ import annotations

from typing import Final

_PRELUDE: Final = r"""
local function set_state(sid, new_state)
  local k = 'r:s:' .. sid
  local f = redis.call('HMGET', k, 'cl', 'st', 'ca')
  local cl, old, ca = f[1], f[2], f[3]
  if old then redis.call('ZREM', 'r:c:' .. cl .. ':st:' .. old, sid) end
  redis.call('ZADD', 'r:c:' .. cl .. ':st:' .. new_state, ca, sid)
  redis.call('HSET', k, 'st', new_state)
end

-- The entry in r:exp that lets the housekeeping prune a subscription's index entries once
-- its keys have expired.
local function exp_member(sid)
  local f = redis.call('HMGET', 'r:s:' .. sid, 'cl', 'ik')
  return sid .. '\t' .. (f[1] or '') .. '\t' .. (f[2] or '')
end

local function expire_sub(sid, ttl_ms)
  local k = 'r:s:' .. sid
  redis.call('PEXPIRE', k, ttl_ms)
  redis.call('PEXPIRE', k .. ':a', ttl_ms)
  redis.call('PEXPIRE', k .. ':b', ttl_ms)
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', 'r:exp', now_ms + ttl_ms, exp_member(sid))
end

local function persist_sub(sid)
  local k = 'r:s:' .. sid
  redis.call('PERSIST', k)
  redis.call('PERSIST', k .. ':a')
  redis.call('PERSIST', k .. ':b')
  redis.call('ZREM', 'r:exp', exp_member(sid))
end

-- Move one watching subscription to delivery of an event (or to skipped).
local function start_delivery(sid, status, event_type, now, ttl_ms)
  local k = 'r:s:' .. sid
  if status ~= '' then
    local ev = redis.call('HGET', k, 'ev') or ''
    if not string.find(ev, '|' .. status .. '|', 1, true) then
      set_state(sid, 'skipped')
      redis.call('HSET', k, 'up', now, 'et', event_type, 'ta', now)
      expire_sub(sid, ttl_ms)
      return false
    end
  end
  set_state(sid, 'delivering')
  redis.call('HSET', k, 'up', now, 'et', event_type, 'ta', now, 'n', 0, 'na', now)
  redis.call('ZADD', 'r:due:dlv', now, sid)
  return true
end

-- Every watching subscription of a run moves on; returns those now delivering.
local function fan_out(rk, status, event_type, now, ttl_ms)
  local out = {}
  for _, sid in ipairs(redis.call('SMEMBERS', 'r:w:' .. rk .. ':s')) do
    if redis.call('HGET', 'r:s:' .. sid, 'st') == 'watching' then
      if start_delivery(sid, status, event_type, now, ttl_ms) then table.insert(out, sid) end
    end
  end
  return out
end

local function expire_run(rk, ttl_ms)
  redis.call('PEXPIRE', 'r:w:' .. rk, ttl_ms)
  redis.call('PEXPIRE', 'r:w:' .. rk .. ':s', ttl_ms)
  redis.call('PEXPIRE', 'r:res:' .. rk, ttl_ms)
end
"""

# KEYS: none (keys are derived; single-instance Redis), or the job key, result key and queue of
#       an arq job to enqueue when polling starts (what ArqRedis.enqueue_job does, when no job or
#       result exists under that id). ARGV: sid client rk idem - ev now project run_id ttl_ms,
#       the job's expires_ms payload score job_id ('' without KEYS), then field/value pairs of
#       the document (cb, md, dx)
# Returns {created(0/1), sid, action} with action one of: poll, join, deliver, skip, existing;
# for poll and join a fourth element: the run's last seen status (nil when never fetched).
REGISTER: Final = (
    _PRELUDE
    + r"""
local sid, cl, rk, idem = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ev, now = ARGV[6], ARGV[7]
local project, run_id, ttl_ms = ARGV[8], ARGV[9], tonumber(ARGV[10])
local idem_key = 'r:c:' .. cl .. ':idem'
local existing = redis.call('HGET', idem_key, idem)
if existing then
  local st = redis.call('HGET', 'r:s:' .. existing, 'st')
  if st and st ~= 'canceled' then return {0, existing, 'existing'} end
end
local k = 'r:s:' .. sid
redis.call('HSET', k, 'cl', cl, 'rk', rk, 'ev', ev, 'ca', now, 'up', now,
           'n', 0, 'ser', 1, 'ik', idem)
for i = 15, #ARGV, 2 do redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', 'r:c:' .. cl, now, sid)
redis.call('HSET', idem_key, idem, sid)
local wk = 'r:w:' .. rk
redis.call('SADD', wk .. ':s', sid)
local wst = redis.call('HGET', wk, 'st')
local cached = redis.call('HGET', 'r:res:' .. rk, 'st')
if wst == 'terminal' and cached then
  set_state(sid, 'watching')
  local delivering = start_delivery(sid, cached, 'run.' .. cached, now, ttl_ms)
  redis.call('HSET', k, 'ta', redis.call('HGET', wk, 'ta') or now)
  if delivering then return {1, sid, 'deliver'} end
  return {1, sid, 'skip'}
end
set_state(sid, 'watching')
if wst == 'watching' then
  redis.call('HINCRBY', wk, 'ac', 1)
  return {1, sid, 'join', redis.call('HGET', wk, 's')}
end
-- A new run, or one whose watch stopped (idle, failed, expired): (re)start polling now.
redis.call('DEL', wk)
redis.call('HSET', wk, 'st', 'watching', 'p', project, 'r', run_id, 'fs', now, 'iv', 0,
           'pc', 0, 'er', 0, 'ac', 1, 'np', now)
if cached then redis.call('HSET', wk, 's', cached) end
redis.call('PERSIST', wk .. ':s')
redis.call('PERSIST', 'r:res:' .. rk)
redis.call('ZADD', 'r:due:poll', now, rk)
if KEYS[1] and redis.call('EXISTS', KEYS[1], KEYS[2]) == 0 then
  redis.call('PSETEX', KEYS[1], ARGV[11], ARGV[12])
  redis.call('ZADD', KEYS[3], ARGV[13], ARGV[14])
end
return {1, sid, 'poll', cached or false}
"""
)

# ARGV: now limit lease_ms. Returns a flat list: rk, project, run_id, iv, fs, nf (nf '' if unset)
CLAIM_POLLS: Final = r"""
local now, limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', 'r:due:poll', '-inf', now, 'LIMIT', 0, limit)
local out = {}
for _, rk in ipairs(due) do
  local w = redis.call('HMGET', 'r:w:' .. rk, 'st', 'p', 'r', 'iv', 'fs', 'nf')
  if w[1] == 'watching' then
    redis.call('ZADD', 'r:due:poll', now + lease, rk)
    table.insert(out, rk); table.insert(out, w[2]); table.insert(out, w[3])
    table.insert(out, w[4] or '0'); table.insert(out, w[5] or tostring(now))
    table.insert(out, w[6] or '')
  else
    redis.call('ZREM', 'r:due:poll', rk)
  end
end
return out
"""

# ARGV: rk now lease_ms. Leases that one run if its poll is due; returns st p r iv fs nf or nil.
CLAIM_POLL_ONE: Final = r"""
local rk, now, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local score = redis.call('ZSCORE', 'r:due:poll', rk)
if not score or tonumber(score) > now then return nil end
local w = redis.call('HMGET', 'r:w:' .. rk, 'st', 'p', 'r', 'iv', 'fs', 'nf')
if w[1] ~= 'watching' then
  redis.call('ZREM', 'r:due:poll', rk)
  return nil
end
redis.call('ZADD', 'r:due:poll', now + lease, rk)
return {w[1], w[2], w[3], w[4] or '0', w[5] or tostring(now), w[6] or ''}
"""

# ARGV: rk now kind status body next_due iv ttl_ms fail_code fail_msg not_found
#   kind: 'result' (a fetched envelope), 'error' (retry later), 'fail' (give up)
# Returns {outcome, sid...}: outcome 'stale' | 'scheduled' | 'terminal' | 'failed'.
RECORD_POLL: Final = (
    _PRELUDE
    + r"""
local rk, now, kind, status, body = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local next_due, iv, ttl_ms = ARGV[6], ARGV[7], tonumber(ARGV[8])
local wk = 'r:w:' .. rk
if redis.call('HGET', wk, 'st') ~= 'watching' then
  redis.call('ZREM', 'r:due:poll', rk)
  return {'stale'}
end
if kind == 'result' then
  redis.call('HINCRBY', wk, 'pc', 1)
  redis.call('HSET', 'r:res:' .. rk, 'b', body, 't', now, 'st', status)
  redis.call('HSET', wk, 's', status)
  redis.call('HDEL', wk, 'nf')
  if status == 'completed' or status == 'failed' or status == 'canceled' then
    redis.call('HSET', wk, 'st', 'terminal', 'ta', now)
    redis.call('ZREM', 'r:due:poll', rk)
    local out = fan_out(rk, status, 'run.' .. status, now, ttl_ms)
    expire_run(rk, ttl_ms)
    table.insert(out, 1, 'terminal')
    return out
  end
  redis.call('HSET', wk, 'iv', iv, 'np', next_due, 'er', 0)
  redis.call('ZADD', 'r:due:poll', next_due, rk)
  return {'scheduled'}
elseif kind == 'error' then
  redis.call('HINCRBY', wk, 'pc', 1)
  redis.call('HINCRBY', wk, 'er', 1)
  redis.call('HSET', wk, 'iv', iv, 'np', next_due)
  if ARGV[11] == '1' then redis.call('HSETNX', wk, 'nf', now) end
  redis.call('ZADD', 'r:due:poll', next_due, rk)
  return {'scheduled'}
end
-- kind == 'fail': the relay gives up on this run.
if ARGV[11] == '1' then redis.call('HINCRBY', wk, 'pc', 1) end
redis.call('HSET', wk, 'st', 'failed', 'fc', ARGV[9], 'fm', ARGV[10], 'ta', now)
redis.call('ZREM', 'r:due:poll', rk)
local out = fan_out(rk, '', 'run.watch_failed', now, ttl_ms)
expire_run(rk, ttl_ms)
table.insert(out, 1, 'failed')
return out
"""
)

# ARGV: now limit lease_ms result_max [sid]. Returns, per claimed entry, 19 values: sid, n, ser,
# et, ta, then the document's fields rk cl cb md ev ca dx ('' when unset), then what the
# attempt reads, so that it needs no other round trip:
#   body_state  'body' (next value: the stored event body), 'result' (next: the cached Intuned
#               body), 'none' (no cached result), 'big' (cached result over result_max bytes:
#               the caller fetches it)
#   value       as body_state says, or ''
#   cur prev rot   the client's signing secrets ('' when unset)
#   fc fm       the run's watch failure (run.watch_failed only; '' otherwise)
CLAIM_DELIVERIES: Final = r"""
local now, limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local result_max = tonumber(ARGV[4])
local due
if ARGV[5] then
  local score = redis.call('ZSCORE', 'r:due:dlv', ARGV[5])
  if score and tonumber(score) <= now then due = {ARGV[5]} else due = {} end
else
  due = redis.call('ZRANGEBYSCORE', 'r:due:dlv', '-inf', now, 'LIMIT', 0, limit)
end
local out = {}
for _, sid in ipairs(due) do
  local s = redis.call('HMGET', 'r:s:' .. sid, 'st', 'n', 'ser', 'et', 'ta',
                      'rk', 'cl', 'cb', 'md', 'ev', 'ca', 'dx')
  if s[1] == 'delivering' then
    redis.call('ZADD', 'r:due:dlv', now + lease, sid)
    local rk = s[6] or ''
    table.insert(out, sid); table.insert(out, s[2] or '0'); table.insert(out, s[3] or '1')
    table.insert(out, s[4] or ''); table.insert(out, s[5] or '0')
    for j = 6, 12 do table.insert(out, s[j] or '') end
    local body = redis.call('GET', 'r:s:' .. sid .. ':b')
    if body then
      table.insert(out, 'body'); table.insert(out, body)
    elseif redis.call('HEXISTS', 'r:res:' .. rk, 'b') == 0 then
      table.insert(out, 'none'); table.insert(out, '')
    elseif redis.call('HSTRLEN', 'r:res:' .. rk, 'b') > result_max then
      table.insert(out, 'big'); table.insert(out, '')
    else
      table.insert(out, 'result'); table.insert(out, redis.call('HGET', 'r:res:' .. rk, 'b'))
    end
    local sec = redis.call('HMGET', 'r:sec:' .. (s[7] or ''), 'cur', 'prev', 'rot')
    for j = 1, 3 do table.insert(out, sec[j] or '') end
    local wf = {false, false}
    if s[4] == 'run.watch_failed' then wf = redis.call('HMGET', 'r:w:' .. rk, 'fc', 'fm') end
    table.insert(out, wf[1] or ''); table.insert(out, wf[2] or '')
  else
    redis.call('ZREM', 'r:due:dlv', sid)
  end
end
return out
"""

# ARGV: now kind id... (kind 'poll': run keys; 'dlv': subscription ids). Puts back the due entry
# of each watching run / delivering subscription that has none; returns how many it fixed.
SWEEP_PAGE: Final = r"""
local now, kind = ARGV[1], ARGV[2]
local prefix, due, want = 'r:w:', 'r:due:poll', 'watching'
if kind == 'dlv' then prefix, due, want = 'r:s:', 'r:due:dlv', 'delivering' end
local fixed = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', prefix .. id, 'st') == want and not redis.call('ZSCORE', due, id) then
    redis.call('ZADD', due, 'NX', now, id)
    fixed = fixed + 1
  end
end
return fixed
"""

# ARGV: sid body. Stores the event body unless one exists; returns the existing body, or nil
# when this one was stored (first writer wins).
STORE_BODY: Final = r"""
local k = 'r:s:' .. ARGV[1] .. ':b'
local old = redis.call('GET', k)
if old then return old end
redis.call('SET', k, ARGV[2])
return false
"""

# ARGV: sid series attempt_json outcome next_due ttl_ms max_log now
#   outcome: delivered | gone | exhausted | retry. Returns the resulting state (or 'stale').
RECORD_ATTEMPT: Final = (
    _PRELUDE
    + r"""
local sid, series, attempt, outcome = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local next_due, ttl_ms, max_log, now = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local k = 'r:s:' .. sid
local s = redis.call('HMGET', k, 'st', 'ser')
if not s[1] then return 'stale' end
redis.call('RPUSH', k .. ':a', attempt)
redis.call('LTRIM', k .. ':a', -max_log, -1)
if s[1] ~= 'delivering' or s[2] ~= series then
  if redis.call('TTL', k) > 0 then redis.call('PEXPIRE', k .. ':a', redis.call('PTTL', k)) end
  return 'stale'
end
redis.call('HINCRBY', k, 'n', 1)
redis.call('HSET', k, 'up', now)
if outcome == 'retry' then
  redis.call('HSET', k, 'na', next_due)
  redis.call('ZADD', 'r:due:dlv', next_due, sid)
  return 'delivering'
end
set_state(sid, outcome)
redis.call('HDEL', k, 'na')
redis.call('ZREM', 'r:due:dlv', sid)
expire_sub(sid, ttl_ms)
return outcome
"""
)

# ARGV: sid client now. Returns 'ok' | 'not_found' | 'conflict:<state>'.
REDELIVER: Final = (
    _PRELUDE
    + r"""
local sid, cl, now = ARGV[1], ARGV[2], ARGV[3]
local k = 'r:s:' .. sid
local s = redis.call('HMGET', k, 'cl', 'st', 'et')
if s[1] ~= cl then return 'not_found' end
local st = s[2]
if not s[3] or not (st == 'delivered' or st == 'exhausted' or st == 'gone'
                    or st == 'delivering') then
  return 'conflict:' .. st
end
set_state(sid, 'delivering')
redis.call('HINCRBY', k, 'ser', 1)
redis.call('HSET', k, 'n', 0, 'na', now, 'up', now)
persist_sub(sid)
redis.call('ZADD', 'r:due:dlv', now, sid)
return 'ok'
"""
)

# ARGV: now limit. Drops the index entries (client lists, state lists, idempotency) of
# subscriptions whose keys have expired. Returns how many were pruned.
PRUNE_EXPIRED: Final = r"""
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local pruned = 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', 'r:exp', '-inf', now, 'LIMIT', 0, limit)) do
  local sid, cl, ik = string.match(m, '^([^\t]*)\t([^\t]*)\t(.*)$')
  local ttl = redis.call('PTTL', 'r:s:' .. sid)
  if ttl > 0 then
    redis.call('ZADD', 'r:exp', now + ttl, m)
  elseif ttl == -1 then
    redis.call('ZREM', 'r:exp', m)
  else
    redis.call('ZREM', 'r:c:' .. cl, sid)
    for _, st in ipairs({'watching', 'delivering', 'delivered', 'exhausted', 'gone',
                         'canceled', 'skipped'}) do
      redis.call('ZREM', 'r:c:' .. cl .. ':st:' .. st, sid)
    end
    if ik ~= '' and redis.call('HGET', 'r:c:' .. cl .. ':idem', ik) == sid then
      redis.call('HDEL', 'r:c:' .. cl .. ':idem', ik)
    end
    redis.call('ZREM', 'r:exp', m)
    pruned = pruned + 1
  end
end
return pruned
"""

# ARGV: sid client now ttl_ms. Returns 'ok' | 'not_found'.
CANCEL: Final = (
    _PRELUDE
    + r"""
local sid, cl, now, ttl_ms = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local k = 'r:s:' .. sid
local s = redis.call('HMGET', k, 'cl', 'st', 'rk')
if s[1] ~= cl then return 'not_found' end
if s[2] == 'canceled' then return 'ok' end
if s[2] == 'watching' then
  local wk = 'r:w:' .. s[3]
  local left = redis.call('HINCRBY', wk, 'ac', -1)
  if left <= 0 and redis.call('HGET', wk, 'st') == 'watching' then
    redis.call('HSET', wk, 'st', 'idle')
    redis.call('ZREM', 'r:due:poll', s[3])
    expire_run(s[3], ttl_ms)
  end
end
redis.call('ZREM', 'r:due:dlv', sid)
redis.call('HDEL', k, 'na')
redis.call('HSET', k, 'up', now)
set_state(sid, 'canceled')
expire_sub(sid, ttl_ms)
return 'ok'
"""
)
