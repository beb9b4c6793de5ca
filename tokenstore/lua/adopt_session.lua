-- adopt_session: move a live session to its user's current credential epoch.
-- KEYS[1] session hash "{uid}:s:<rand>", KEYS[2] user hash "{uid}:u"
-- ARGV[1] the epoch the caller expects the user to be at ("0" for 0)
-- Returns "ok", "notfound" (no such session) or "stale" (the user's epoch
-- is not ARGV[1]). Safe to resend: a second run writes the same field.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 'notfound'
end
if (redis.call('HGET', KEYS[2], 'k') or '0') ~= ARGV[1] then
  return 'stale'
end
if ARGV[1] == '0' then
  redis.call('HDEL', KEYS[1], 'k')
else
  redis.call('HSET', KEYS[1], 'k', ARGV[1])
end
return 'ok'
