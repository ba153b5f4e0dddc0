-- One page of a client's subscriptions, newest first (creation, then id, both descending),
-- merged from its per-state indexes (every subscription is in exactly one), strictly after a
-- cursor: exact with any number of equal creation times. O(indexes x (log n + limit)).
-- KEYS: 1.. the client's state zsets to merge (all of them, or the one state asked for)
-- ARGV: 1 limit, 2 cursor creation ms ('' = from the newest), 3 cursor id
-- Returns a list of maps: id, ca
local limit, score, after = tonumber(ARGV[1]), ARGV[2], ARGV[3]

-- Byte order, as Redis orders equal scores (Lua's own '<' follows the server's locale).
local function less(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- The rank (newest first) of the first entry after the cursor.
local function start_rank(z)
  if score == '' then return 0 end
  local rank = redis.call('ZREVRANK', z, after)
  if rank then return rank + 1 end
  local lo = redis.call('ZCOUNT', z, '(' .. score, '+inf')
  local hi = lo + redis.call('ZCOUNT', z, score, score)
  while lo < hi do  -- the ties sit at ranks lo..hi-1, ids descending: find the first below
    local mid = math.floor((lo + hi) / 2)
    if less(redis.call('ZREVRANGE', z, mid, mid)[1], after) then hi = mid else lo = mid + 1 end
  end
  return lo
end

local rows = {}
for _, z in ipairs(KEYS) do
  local from = start_rank(z)
  local got = redis.call('ZREVRANGE', z, from, from + limit - 1, 'WITHSCORES')
  for j = 1, #got, 2 do table.insert(rows, {got[j], tonumber(got[j + 1])}) end
end
table.sort(rows, function(a, b)
  if a[2] ~= b[2] then return a[2] > b[2] end
  return less(b[1], a[1])
end)
local out = {}
for i = 1, math.min(limit, #rows) do
  table.insert(out, {'id', rows[i][1], 'ca', string.format('%d', rows[i][2])})
end
return out
