-- update_user: compare-and-set of a user's mutable fields on its version.
-- KEYS[1] user hash "{uid}:u"
-- ARGV[1] version read, ARGV[2] password hash, ARGV[3] roles (JSON),
-- ARGV[4] disabled ("0"/"1"), ARGV[5] credential epoch (never lowered;
-- "0" is kept as no field)
-- Returns "ok", "notfound" or "conflict" (someone else updated first:
-- the caller reads again and reapplies its change).
local v = redis.call('HGET', KEYS[1], 'v')
if not v then
  return 'notfound'
end
if v == ARGV[1] then
  redis.call('HSET', KEYS[1], 'p', ARGV[2], 'r', ARGV[3], 'd', ARGV[4])
  if ARGV[5] ~= '0' then
    redis.call('HSET', KEYS[1], 'k', ARGV[5])
  end
  redis.call('HINCRBY', KEYS[1], 'v', 1)
  return 'ok'
end
-- A retry of a write that already landed finds the next version holding
-- exactly these values: report success rather than apply fn twice.
if tonumber(v) == tonumber(ARGV[1]) + 1 then
  local cur = redis.call('HMGET', KEYS[1], 'p', 'r', 'd', 'k')
  if cur[1] == ARGV[2] and cur[2] == ARGV[3] and cur[3] == ARGV[4] and (cur[4] or '0') == ARGV[5] then
    return 'ok'
  end
end
return 'conflict'
