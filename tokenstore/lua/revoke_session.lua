-- revoke_session: delete one session and its index field.
-- (index.lib.lua is prepended.)
-- KEYS[1] session hash "{uid}:s:<rand>", KEYS[2] user hash "{uid}:u",
-- KEYS[3] the user's session zset "{uid}:ss" of the layout before (folded)
-- ARGV[1] <rand>
-- Returns 1 if the session existed, 0 otherwise. The caller has already
-- appended the revocation event, so a crash in between loses nothing.
local n = redis.call('DEL', KEYS[1])
fold(KEYS[2], KEYS[3])
unindex(KEYS[2], KEYS[3], ARGV[1])
return n
