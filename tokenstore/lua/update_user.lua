-- update_user: compare-and-set of a user's mutable fields on its version.
-- KEYS[1] user hash "{uid}:u"
-- ARGV[1] version read, ARGV[2] password hash, ARGV[3] roles (JSON),
-- ARGV[4] disabled ("0"/"1"), ARGV[5] credential epoch (never lowered;
-- "0" is kept as no field)
-- Returns "ok", "notfound" or "conflict" (someone else updated first:
-- the caller reads again and reapplies its change). Only the user's own
-- fields are written: the session index fields 's:<rand>' stay.
-- The password hash is kept in chunks 'p', 'pb', 'pc', ... of at most 64
-- bytes (see create_user.lua); a record of the layout before has it whole
-- in 'p', and reads back the same.
local function chunk(i)
  return i == 0 and 'p' or 'p' .. string.char(97 + i)
end
local v = redis.call('HGET', KEYS[1], 'v')
if not v then
  return 'notfound'
end
if v == ARGV[1] then
  local p, i = ARGV[2], 0
  local kv = {'r', ARGV[3], 'd', ARGV[4]}
  repeat
    kv[#kv + 1] = chunk(i)
    kv[#kv + 1] = string.sub(p, i * 64 + 1, i * 64 + 64)
    i = i + 1
  until i * 64 >= #p
  redis.call('HSET', KEYS[1], unpack(kv))
  -- Chunks of a longer hash before are dropped.
  while redis.call('HDEL', KEYS[1], chunk(i)) == 1 do
    i = i + 1
  end
  if ARGV[5] ~= '0' then
    redis.call('HSET', KEYS[1], 'k', ARGV[5])
  end
  redis.call('HINCRBY', KEYS[1], 'v', 1)
  return 'ok'
end
-- A retry of a write that already landed finds the next version holding
-- exactly these values: report success rather than apply fn twice.
if tonumber(v) == tonumber(ARGV[1]) + 1 then
  local cur = redis.call('HMGET', KEYS[1], 'r', 'd', 'k')
  local parts, i = {}, 0
  while true do
    local part = redis.call('HGET', KEYS[1], chunk(i))
    if not part then
      break
    end
    parts[#parts + 1] = part
    i = i + 1
  end
  if table.concat(parts) == ARGV[2] and cur[1] == ARGV[3] and cur[2] == ARGV[4] and (cur[3] or '0') == ARGV[5] then
    return 'ok'
  end
end
return 'conflict'
