-- update_user: compare-and-set of a user's mutable fields on its version.
-- KEYS[1] user hash "{uid}:u"
-- ARGV[1] version read, ARGV[2] password hash, ARGV[3] roles (JSON),
-- ARGV[4] disabled ("0"/"1")
-- Returns "ok", "notfound" or "conflict" (someone else updated first:
-- the caller reads again and reapplies its change).
local v = redis.call('HGET', KEYS[1], 'v')
if not v then
  return 'notfound'
end
if v == ARGV[1] then
  redis.call('HSET', KEYS[1], 'p', ARGV[2], 'r', ARGV[3], 'd', ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'v', 1)
  return 'ok'
end
-- A retry of a write that already landed finds the next version holding
-- exactly these values: report success rather than apply fn twice.
if tonumber(v) == tonumber(ARGV[1]) + 1 then
  local cur = redis.call('HMGET', KEYS[1], 'p', 'r', 'd')
  if cur[1] == ARGV[2] and cur[2] == ARGV[3] and cur[3] == ARGV[4] then
    return 'ok'
  end
end
return 'conflict'
