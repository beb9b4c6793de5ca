-- append_revocations: add revocation events and trim the expired ones.
-- KEYS[1] stream, KEYS[2] stream metadata hash (same hash tag)
-- ARGV[1] revoked at (unix ms), ARGV[2] forget after (unix ms),
-- ARGV[3] trim below (unix ms: revoked at - retention), ARGV[4..] session ids
-- Ids are "<ms>-<seq>" with ms = max(revoked at, previous ms), so events
-- sort by revocation time and an event is never trimmed by its own append.
-- Metadata: l = newest id appended, t = newest id trimmed (a cursor older
-- than t has missed events). Returns the newest id.
local function parse(id)
  local a, b = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(a), tonumber(b)
end
if #ARGV < 4 then
  return redis.call('HGET', KEYS[2], 'l') or '0-0'
end
local meta = redis.call('HMGET', KEYS[2], 'l', 't')
local ms, seq = parse(meta[1] or '0-0')
local at = tonumber(ARGV[1])
if at > ms then
  ms, seq = at, -1
end
local id
for i = 4, #ARGV do
  seq = seq + 1
  id = string.format('%d-%d', ms, seq)
  redis.call('XADD', KEYS[1], id, 's', ARGV[i], 't', ARGV[1], 'f', ARGV[2])
end
redis.call('HSET', KEYS[2], 'l', id)
local minid = ARGV[3] .. '-0'
local cut = redis.call('XREVRANGE', KEYS[1], '(' .. minid, '-', 'COUNT', 1)
if cut[1] then
  redis.call('XTRIM', KEYS[1], 'MINID', minid)
  redis.call('HSET', KEYS[2], 't', cut[1][1])
end
return id
