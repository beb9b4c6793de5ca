-- revoke_session: delete one session and its zset member.
-- KEYS[1] session hash "{uid}:s:<rand>", KEYS[2] user's session zset "{uid}:ss"
-- ARGV[1] <rand> (zset member)
-- Returns 1 if the session existed, 0 otherwise. The caller has already
-- appended the revocation event, so a crash in between loses nothing.
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
