-- revoke_user: delete the given sessions of one user.
-- KEYS[1] user's session zset "{uid}:ss", KEYS[2..] session hashes
-- ARGV[i] zset member of KEYS[i+1]
-- Returns how many of them still existed. Only sessions whose revocation
-- event the caller has appended are listed: one created meanwhile stays.
local n = 0
for i = 2, #KEYS do
  n = n + redis.call('DEL', KEYS[i])
  redis.call('ZREM', KEYS[1], ARGV[i - 1])
end
return n
