-- index (prepended to the scripts that enumerate or unindex a user's
-- sessions; not a script of its own): the session index of a user is one
-- field 's:<rand>' -> expire-at (unix ms) per session in the user hash
-- "{uid}:u". The expire-at only nominates candidates for pruning: a
-- field is dropped once its session hash is gone, whatever the clocks say.
--
-- A user indexed by the layout before (a zset "{uid}:ss" of <rand>s scored
-- by expire-at) is folded into fields, and the zset deleted, by the first
-- script that enumerates or unindexes its sessions: one EXISTS on the
-- common path. Members whose session hash is gone are dropped, and a field
-- already there (written by rotate.lua, later) is kept. A zset whose user
-- has no record (no field 'c') is not folded, since a user hash of index
-- fields alone would be a user without a record: it is read and unindexed
-- in place (legacy is then true) and ends by its own TTL.
local legacy = false

local function fold(user, zset)
  if redis.call('EXISTS', zset) == 0 then
    return
  end
  if redis.call('HEXISTS', user, 'c') == 0 then
    legacy = true
    return
  end
  -- "<prefix>{uid}:u" -> "<prefix>{uid}:s:"
  local sessions = string.sub(user, 1, #user - 1) .. 's:'
  local z = redis.call('ZRANGE', zset, 0, -1, 'WITHSCORES')
  for i = 1, #z, 2 do
    if redis.call('EXISTS', sessions .. z[i]) == 1 then
      redis.call('HSETNX', user, 's:' .. z[i], z[i + 1])
    end
  end
  redis.call('DEL', zset)
end

-- index returns the user's sessions as {{<rand>, expire-at}, ...}.
local function index(user, zset)
  fold(user, zset)
  local out = {}
  local h = redis.call('HGETALL', user)
  for i = 1, #h, 2 do
    if string.sub(h[i], 1, 2) == 's:' then
      out[#out + 1] = {string.sub(h[i], 3), tonumber(h[i + 1])}
    end
  end
  if legacy then
    local z = redis.call('ZRANGE', zset, 0, -1, 'WITHSCORES')
    for i = 1, #z, 2 do
      out[#out + 1] = {z[i], tonumber(z[i + 1])}
    end
  end
  return out
end

-- unindex removes one session from the index (after fold or index).
local function unindex(user, zset, rnd)
  redis.call('HDEL', user, 's:' .. rnd)
  if legacy then
    redis.call('ZREM', zset, rnd)
  end
end

