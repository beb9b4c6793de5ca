-- revocations: events strictly after a cursor.
-- KEYS[1] stream, KEYS[2] stream metadata hash (see append_revocations)
-- ARGV[1] cursor: "<ms>-<seq>" (already validated), "" for none, or
-- "origin" for everything retained; ARGV[2] limit
-- Returns {ok, next, events} with ok 1 or 0. ok is 0 when events after the
-- cursor were trimmed (cursor < t) or the cursor is newer than anything
-- appended (the stream was lost or the cursor is from another store);
-- next is then the newest id, for the caller to resume from after it
-- distrusts its cache.
local function parse(id)
  local a, b = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(a), tonumber(b)
end
local function less(x, y)
  local xa, xb = parse(x)
  local ya, yb = parse(y)
  return xa < ya or (xa == ya and xb < yb)
end
local meta = redis.call('HMGET', KEYS[2], 'l', 't')
local last = meta[1] or '0-0'
local trimmed = meta[2] or '0-0'
local cursor = ARGV[1]
if cursor == '' then
  return {1, last, {}}
end
if cursor == 'origin' then
  local events = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[2])
  local nxt = last
  if #events > 0 then
    nxt = events[#events][1]
  end
  return {1, nxt, events}
end
if less(cursor, trimmed) or less(last, cursor) then
  return {0, last, {}}
end
local events = redis.call('XRANGE', KEYS[1], '(' .. cursor, '+', 'COUNT', ARGV[2])
local nxt = cursor
if #events > 0 then
  nxt = events[#events][1]
end
return {1, nxt, events}
