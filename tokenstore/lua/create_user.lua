-- create_user: store a new user hash unless its id is taken.
-- KEYS[1] user hash "{uid}:u"
-- ARGV[1] username, ARGV[2] password hash, ARGV[3] roles (JSON),
-- ARGV[4] disabled ("0"/"1"), ARGV[5] created (unix ms)
-- Returns "ok" or "exists". The username index is another slot, so the
-- caller claims it afterwards with SET NX (see Redis.CreateUser).
-- The password hash is kept in chunks of at most 64 bytes, 'p', 'pb',
-- 'pc', ... (the caller bounds it to 16 chunks): an argon2id PHC string
-- (~97 bytes) in one value would be over Redis's default
-- hash-max-listpack-value (64) and make the whole hash a hashtable,
-- about twice the memory, and each session index field in it dearer.
if redis.call('EXISTS', KEYS[1]) == 1 then
  local cur = redis.call('HMGET', KEYS[1], 'n', 'c')
  if cur[1] == ARGV[1] and cur[2] == ARGV[5] then
    return 'ok' -- our own earlier write, retried
  end
  return 'exists'
end
local kv = {'n', ARGV[1], 'r', ARGV[3], 'd', ARGV[4], 'c', ARGV[5], 'v', '0'}
local p, i = ARGV[2], 0
repeat
  kv[#kv + 1] = i == 0 and 'p' or 'p' .. string.char(97 + i)
  kv[#kv + 1] = string.sub(p, i * 64 + 1, i * 64 + 64)
  i = i + 1
until i * 64 >= #p
redis.call('HSET', KEYS[1], unpack(kv))
return 'ok'
