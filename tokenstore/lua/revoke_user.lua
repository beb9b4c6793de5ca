-- revoke_user: delete the given sessions of one user.
-- KEYS[1] user's session zset "{uid}:ss", KEYS[2..] session hashes
-- ARGV[i] zset member of KEYS[i+1]
-- Returns the members (ARGV values) whose session still existed. Only
-- sessions whose revocation event the caller has appended are listed: one
-- created meanwhile stays. Cost: O(#KEYS). Safe to resend: a second run
-- finds nothing left and returns an empty list.
local gone = {}
for i = 2, #KEYS do
  if redis.call('DEL', KEYS[i]) == 1 then
    gone[#gone + 1] = ARGV[i - 1]
  end
  redis.call('ZREM', KEYS[1], ARGV[i - 1])
end
return gone
