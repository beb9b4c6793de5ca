-- create_session: store a new session and index it under its user.
-- KEYS[1] session hash "{uid}:s:<rand>", KEYS[2] user's session zset "{uid}:ss",
-- KEYS[3] user hash "{uid}:u" (read only: its credential epoch)
-- ARGV[1] <rand> (zset member), ARGV[2] generation, ARGV[3] nonce,
-- ARGV[4] created, ARGV[5] rotated, ARGV[6] last used, ARGV[7] absolute
-- expiry, ARGV[8] expire-at = min(last used + idle, absolute expiry),
-- ARGV[9] now, ARGV[10] zset TTL slack; times in unix ms; ARGV[11] the
-- credential epoch the login authenticated under, ARGV[12] user agent and
-- ARGV[13] client address (each kept only when not empty; the user agent
-- split over 'ua' and 'ub', below).
-- Returns "ok", "exists" (the id is taken by another session) or "stale"
-- (the user's epoch moved on since the login read it: a password change,
-- a role change, disabling or "log out everywhere" raced the login, and
-- the session must not be born). Epoch 0 is kept as no field at all.
-- Safe to resend: a retry finds its own session ("ok").
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'n') == ARGV[3] then
    return 'ok' -- our own earlier write, retried
  end
  return 'exists'
end
local user = redis.call('HMGET', KEYS[3], 'k', 'c')
if user[2] and (user[1] or '0') ~= ARGV[11] then
  return 'stale'
end
local now = tonumber(ARGV[9])
if tonumber(ARGV[8]) <= now then
  return 'ok' -- born expired: keep nothing
end
redis.call('HSET', KEYS[1], 'g', ARGV[2], 'n', ARGV[3], 'c', ARGV[4],
  'r', ARGV[5], 'e', ARGV[7])
if ARGV[11] ~= '0' then
  redis.call('HSET', KEYS[1], 'k', ARGV[11])
end
-- The user agent is kept in chunks of at most 64 bytes, 'ua' then 'ub':
-- one value over Redis's default hash-max-listpack-value (64) would turn
-- the whole hash from a listpack into a hashtable, about 3x the memory
-- (a browser's user agent is ~100 bytes; see TestRedisMemoryPerSession).
if ARGV[12] ~= '' then
  if #ARGV[12] > 64 then
    redis.call('HSET', KEYS[1], 'ua', string.sub(ARGV[12], 1, 64), 'ub', string.sub(ARGV[12], 65))
  else
    redis.call('HSET', KEYS[1], 'ua', ARGV[12])
  end
end
if ARGV[13] ~= '' then
  redis.call('HSET', KEYS[1], 'ip', ARGV[13])
end
-- l (last used) is kept only when it differs from r (rotated): they are
-- equal after every rotation, and the saved field keeps the hash in a
-- smaller allocation (see TestRedisMemoryPerSession).
if ARGV[6] ~= ARGV[5] then
  redis.call('HSET', KEYS[1], 'l', ARGV[6])
end
redis.call('PEXPIREAT', KEYS[1], ARGV[8])
-- Drop members whose session hash has expired, so the zset stays as small
-- as the live sessions. The score (expire-at) only nominates candidates:
-- the hash's own TTL decides, so clock skew never drops a live session.
local prefix = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[1])
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[9])) do
  if redis.call('EXISTS', prefix .. m) == 0 then
    redis.call('ZREM', KEYS[2], m)
  end
end
redis.call('ZADD', KEYS[2], ARGV[8], ARGV[1])
-- The zset lives as long as its longest session, plus slack for skew
-- between the callers' clocks and the Redis clock.
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], string.format('%d', tonumber(top[2]) + tonumber(ARGV[10])))
return 'ok'
