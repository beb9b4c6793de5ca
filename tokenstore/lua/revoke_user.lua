-- revoke_user: delete the given sessions of one user.
-- (index.lib.lua is prepended.)
-- KEYS[1] user hash "{uid}:u" (the index), KEYS[2] the user's session zset
-- "{uid}:ss" of the layout before (folded), KEYS[3..] session hashes
-- ARGV[i] <rand> of KEYS[i+2]
-- Returns the <rand>s (ARGV values) whose session still existed. Only
-- sessions whose revocation event the caller has appended are listed: one
-- created meanwhile stays. Cost: O(#KEYS). Safe to resend: a second run
-- finds nothing left and returns an empty list.
fold(KEYS[1], KEYS[2])
local gone = {}
for i = 3, #KEYS do
  if redis.call('DEL', KEYS[i]) == 1 then
    gone[#gone + 1] = ARGV[i - 2]
  end
  unindex(KEYS[1], KEYS[2], ARGV[i - 2])
end
return gone
