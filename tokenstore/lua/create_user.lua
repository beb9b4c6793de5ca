-- create_user: store a new user hash unless its id is taken.
-- KEYS[1] user hash "{uid}:u"
-- ARGV[1] username, ARGV[2] password hash, ARGV[3] roles (JSON),
-- ARGV[4] disabled ("0"/"1"), ARGV[5] created (unix ms)
-- Returns "ok" or "exists". The username index is another slot, so the
-- caller claims it afterwards with SET NX (see Redis.CreateUser).
if redis.call('EXISTS', KEYS[1]) == 1 then
  local cur = redis.call('HMGET', KEYS[1], 'n', 'c')
  if cur[1] == ARGV[1] and cur[2] == ARGV[5] then
    return 'ok' -- our own earlier write, retried
  end
  return 'exists'
end
redis.call('HSET', KEYS[1], 'n', ARGV[1], 'p', ARGV[2], 'r', ARGV[3],
  'd', ARGV[4], 'c', ARGV[5], 'v', '0')
return 'ok'
