-- swap_keyring: compare-and-swap of the keyring blob.
-- KEYS[1] keyring
-- ARGV[1] "1" if an old value is expected ("0": must be absent), ARGV[2] old,
-- ARGV[3] "1" if there is a new value ("0": delete), ARGV[4] new
-- Returns "ok" or "conflict". A keyring that already holds new is "ok",
-- so a retried swap is not a conflict.
local cur = redis.call('GET', KEYS[1])
if ARGV[3] == '1' and cur == ARGV[4] or ARGV[3] == '0' and not cur then
  return 'ok'
end
if ARGV[1] == '1' and cur ~= ARGV[2] or ARGV[1] == '0' and cur then
  return 'conflict'
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[4])
else
  redis.call('DEL', KEYS[1])
end
return 'ok'
