-- list_sessions: the sessions of one user, dropping members whose hash is gone.
-- KEYS[1] user's session zset "{uid}:ss"
-- ARGV[1] the session key prefix "<prefix>{uid}:s:"
-- Returns {member1, {field, value, ...}, member2, {...}, ...}. The session
-- hashes are not in KEYS because they are only known here; they share the
-- user's hash tag, so this stays within one slot on Redis Cluster.
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = redis.call('HGETALL', ARGV[1] .. m)
  if #h == 0 then
    redis.call('ZREM', KEYS[1], m)
  else
    out[#out + 1] = m
    out[#out + 1] = h
  end
end
return out
