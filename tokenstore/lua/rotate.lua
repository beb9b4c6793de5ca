-- rotate: apply the refresh rules of Store.Rotate in one round trip.
-- KEYS[1] session hash "{uid}:s:<rand>", KEYS[2] user hash "{uid}:u" (read:
-- returned so a refresh needs no second round trip for the user's name and
-- roles; written: the session's index field 's:<rand>' gets the new
-- expire-at)
-- ARGV[1] <rand>, ARGV[2] presented generation, ARGV[3] nonce,
-- ARGV[4] now, ARGV[5] grace (ms), ARGV[6] now + idle TTL,
-- ARGV[7] use-limit interval (ms, 0: no limit),
-- ARGV[8] use-limit burst, ARGV[9] user agent, ARGV[10] client address
-- (of this use; "" keeps the session's); times in unix ms.
-- Returns {status, g, n, c, r, l, e, <user's n, r, d, c>, k, ua, ip}
-- where k is the credential epoch of both ("" for 0), ua and ip the client
-- of the session's last use, and status is
--   "ok"       advanced one generation (fields after the change),
--   "grace"    previous generation within grace (fields unchanged),
--   "reused"   older generation: the caller records a revocation and then
--              deletes the session (the event stream lives in another slot),
--   "limited"  {status, ms to wait}: the session's uses (field Q, the GCRA
--              theoretical arrival time) are over the limit; nothing written,
--   "stale"    the session's credential epoch (k) is not its user's: the
--              caller revokes it as for "reused", and answers not found,
--   "notfound" unknown/expired session, wrong nonce or future generation.
-- Nothing is written unless the status is "ok", except the use-limit field
-- on "grace". A session whose user record is gone is "notfound".
--
-- Cost: this runs on every refresh, and Redis spends more per redis.call
-- than per command inside it, so the common path makes as few calls as it
-- can (5): generation and rotation time in one HSET, HDEL only when an 'l'
-- field (or a field of the layout before) is there to delete (never after
-- the first rotation), the index
-- field's new expire-at in one HSET, and the user read with HMGET of the
-- fields a refresh needs (not its version, and never the password hash: a
-- refresh has no use for it, and it stays in Redis).
--
-- Retry safety: if the reply to an "ok" is lost and the client sends the
-- same request again, the session is one generation ahead and the retry
-- lands in the "grace" branch, returning the same session: a retried
-- rotation never looks like theft (as long as it comes within grace).
local s = redis.call('HMGET', KEYS[1], 'g', 'n', 'c', 'R', 'l', 'e', 'k', 'Q', 'ua', 'ip', 'ub')
if not s[1] or s[2] ~= ARGV[3] then
  return {'notfound'}
end
-- Times: the rotation time is kept as R = rotated - created and the use
-- limiter's arrival time as Q = it - rotated (see create_session.lua). A
-- hash written before has no R but both absolute, as 'r' and 'q' (old),
-- read only then (one more call), and deleted by the next rotation.
local c = tonumber(s[3])
local old, rot, last -- last: the limiter's arrival time, if any yet
if s[4] then
  rot = c + tonumber(s[4])
  last = s[8] and rot + tonumber(s[8])
else
  old = redis.call('HMGET', KEYS[1], 'r', 'q')
  if not old[1] then
    return {'notfound'}
  end
  rot = tonumber(old[1])
  last = old[2] and tonumber(old[2])
end
local now = tonumber(ARGV[4])
if now >= tonumber(s[6]) then
  return {'notfound'}
end
local user = redis.call('HMGET', KEYS[2], 'n', 'r', 'd', 'c', 'k')
if not (user[1] or user[4]) then
  return {'notfound'}
end
if (user[5] or '0') ~= (s[7] or '0') then
  return {'stale'}
end
for i = 1, 5 do
  user[i] = user[i] or '' -- a reply array cannot hold nil
end
local g = tonumber(s[1])
local want = tonumber(ARGV[2])
-- The use limit (GCRA), for the current and the grace generation only.
local every = tonumber(ARGV[7])
local tat = now
if every > 0 and (want == g or want == g - 1) then
  tat = math.max(last or now, now)
  local ahead = tat - now - (tonumber(ARGV[8]) - 1) * every
  if ahead > 0 then
    return {'limited', string.format('%d', ahead)}
  end
  tat = tat + every
end
-- The client of this use, written only when it changed (the usual case is
-- the same browser from the same address: no write).
-- The user agent is stored in 64-byte chunks 'ua' and 'ub' (see
-- create_session.lua: a longer value would make the hash a hashtable).
local ua, ip = (s[9] or '') .. (s[11] or ''), s[10] or ''
local function client()
  if ARGV[9] ~= '' and ARGV[9] ~= ua then
    ua = ARGV[9]
    if #ua > 64 then
      redis.call('HSET', KEYS[1], 'ua', string.sub(ua, 1, 64), 'ub', string.sub(ua, 65))
    else
      redis.call('HSET', KEYS[1], 'ua', ua)
      if s[11] then
        redis.call('HDEL', KEYS[1], 'ub')
      end
    end
  end
  if ARGV[10] ~= '' and ARGV[10] ~= ip then
    ip = ARGV[10]
    redis.call('HSET', KEYS[1], 'ip', ip)
  end
end
if want == g then
  local at = ARGV[6]
  if tonumber(s[6]) < tonumber(at) then
    at = s[6]
  end
  local ng = string.format('%d', g + 1)
  local R = string.format('%d', now - c)
  -- l: last used = rotated (see create_session.lua); r, q: the layout
  -- before; Q without a limiter: it would read as relative to the new
  -- rotation time.
  if every > 0 then
    redis.call('HSET', KEYS[1], 'g', ng, 'R', R, 'Q', string.format('%d', tat - now))
  else
    redis.call('HSET', KEYS[1], 'g', ng, 'R', R)
  end
  if s[5] or old or (every == 0 and s[8]) then
    local del = {'l'}
    if every == 0 and s[8] then
      del[#del + 1] = 'Q'
    end
    if old then
      del[#del + 1] = 'r'
      del[#del + 1] = 'q'
    end
    redis.call('HDEL', KEYS[1], unpack(del))
  end
  redis.call('PEXPIREAT', KEYS[1], at)
  redis.call('HSET', KEYS[2], 's:' .. ARGV[1], at)
  client()
  return {'ok', ng, s[2], s[3], ARGV[4], ARGV[4], s[6], user[1], user[2], user[3], user[4], user[5], ua, ip}
end
if want == g - 1 and now - rot <= tonumber(ARGV[5]) then
  if every > 0 then
    redis.call('HSET', KEYS[1], 'Q', string.format('%d', tat - rot))
    if old and old[2] then
      redis.call('HDEL', KEYS[1], 'q')
    end
  end
  client()
  local r = string.format('%d', rot)
  return {'grace', s[1], s[2], s[3], r, s[5] or r, s[6], user[1], user[2], user[3], user[4], user[5], ua, ip}
end
if want < g then
  return {'reused'}
end
return {'notfound'}
