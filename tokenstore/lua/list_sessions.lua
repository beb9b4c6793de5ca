-- list_sessions: the sessions of one user, dropping index fields whose
-- session hash is gone. (index.lib.lua is prepended.)
-- KEYS[1] user hash "{uid}:u" (the index: fields 's:<rand>'), KEYS[2] the
-- user's session zset "{uid}:ss" of the layout before (folded)
-- ARGV[1] the session key prefix "<prefix>{uid}:s:"
-- Returns {rand1, {field, value, ...}, rand2, {...}, ...}. The session
-- hashes are not in KEYS because they are only known here; they share the
-- user's hash tag, so this stays within one slot on Redis Cluster.
local out = {}
for _, e in ipairs(index(KEYS[1], KEYS[2])) do
  local h = redis.call('HGETALL', ARGV[1] .. e[1])
  if #h == 0 then
    unindex(KEYS[1], KEYS[2], e[1])
  else
    out[#out + 1] = e[1]
    out[#out + 1] = h
  end
end
return out
