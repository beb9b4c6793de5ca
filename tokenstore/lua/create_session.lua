-- create_session: store a new session and index it under its user.
-- (index.lib.lua is prepended.)
-- KEYS[1] session hash "{uid}:s:<rand>", KEYS[2] user hash "{uid}:u"
-- (its credential epoch is read, and the session indexed in it as field
-- 's:<rand>'), KEYS[3] the user's session zset "{uid}:ss" of the layout
-- before (folded into the user hash, see index.lib.lua)
-- ARGV[1] <rand>, ARGV[2] generation, ARGV[3] nonce,
-- ARGV[4] created, ARGV[5] rotated, ARGV[6] last used, ARGV[7] absolute
-- expiry, ARGV[8] expire-at = min(last used + idle, absolute expiry),
-- ARGV[9] now; times in unix ms; ARGV[10] the credential epoch the login
-- authenticated under, ARGV[11] user agent and ARGV[12] client address
-- (each kept only when not empty; the user agent split over 'ua' and
-- 'ub', below).
-- Returns "ok", "exists" (the id is taken by another session), "nouser"
-- (no user record: a session needs its user, and nothing is written) or
-- "stale" (the user's epoch moved on since the login read it: a password
-- change, a role change, disabling or "log out everywhere" raced the
-- login, and the session must not be born). Epoch 0 is kept as no field
-- at all. Safe to resend: a retry finds its own session ("ok").
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'n') == ARGV[3] then
    return 'ok' -- our own earlier write, retried
  end
  return 'exists'
end
local user = redis.call('HMGET', KEYS[2], 'k', 'c')
if not user[2] then
  return 'nouser'
end
if (user[1] or '0') ~= ARGV[10] then
  return 'stale'
end
local now = tonumber(ARGV[9])
if tonumber(ARGV[8]) <= now then
  return 'ok' -- born expired: keep nothing
end
-- The rotation time is kept as R, ms after created: a small number, which
-- a listpack stores in fewer bytes than a time (as rotate.lua keeps the
-- use limiter's arrival time as Q, ms after the rotation), so that the
-- hash of a session with every field fits a 128-byte allocation, not 160
-- (see TestRedisMemoryPerSession).
redis.call('HSET', KEYS[1], 'g', ARGV[2], 'n', ARGV[3], 'c', ARGV[4],
  'R', string.format('%d', tonumber(ARGV[5]) - tonumber(ARGV[4])), 'e', ARGV[7])
if ARGV[10] ~= '0' then
  redis.call('HSET', KEYS[1], 'k', ARGV[10])
end
-- The user agent is kept in chunks of at most 64 bytes, 'ua' then 'ub':
-- one value over Redis's default hash-max-listpack-value (64) would turn
-- the whole hash from a listpack into a hashtable, about 3x the memory
-- (a browser's user agent is ~100 bytes; see TestRedisMemoryPerSession).
if ARGV[11] ~= '' then
  if #ARGV[11] > 64 then
    redis.call('HSET', KEYS[1], 'ua', string.sub(ARGV[11], 1, 64), 'ub', string.sub(ARGV[11], 65))
  else
    redis.call('HSET', KEYS[1], 'ua', ARGV[11])
  end
end
if ARGV[12] ~= '' then
  redis.call('HSET', KEYS[1], 'ip', ARGV[12])
end
-- l (last used) is kept only when it differs from the rotation time: they are
-- equal after every rotation, and the saved field keeps the hash in a
-- smaller allocation (see TestRedisMemoryPerSession).
if ARGV[6] ~= ARGV[5] then
  redis.call('HSET', KEYS[1], 'l', ARGV[6])
end
redis.call('PEXPIREAT', KEYS[1], ARGV[8])
-- Drop the index fields whose session hash has expired, so the index
-- stays as small as the live sessions. The expire-at only nominates
-- candidates: the hash's own TTL decides, so clock skew never drops a
-- live session.
local prefix = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[1])
for _, e in ipairs(index(KEYS[2], KEYS[3])) do
  if e[2] <= now and redis.call('EXISTS', prefix .. e[1]) == 0 then
    unindex(KEYS[2], KEYS[3], e[1])
  end
end
redis.call('HSET', KEYS[2], 's:' .. ARGV[1], ARGV[8])
return 'ok'
