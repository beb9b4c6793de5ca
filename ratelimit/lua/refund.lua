-- refund: give back one attempt that Allow charged to a key (redis_rate's
-- GCRA state: the key holds the TAT, the theoretical arrival time, in
-- seconds since 2017-01-01 by Redis's clock).
-- KEYS[1] the limiter's key, "rate:<key>"
-- ARGV[1] rate, ARGV[2] period (seconds): the same Limit that charged it.
-- Returns 1 when a charge was given back, 0 when the key held none (its
-- bucket had refilled, or expired): a refund never grants more than a
-- full bucket.
--
-- Why not redis_rate's AllowN with a cost of -1: it moves the TAT back but
-- writes it only while it is still ahead of now, so refunding the one
-- charge left on a key is a no-op and the attempt stays counted. Here the
-- key is deleted instead: a TAT at or before now is a full bucket, and a
-- missing key is read as one.
--
-- Cost: TIME, GET and one SET or DEL. Retry safety: none, a resend gives
-- back a second attempt; the caller sends each refund once, for an attempt
-- it charged.
redis.replicate_commands() -- TIME before a write: needed before Redis 5, a no-op since
local emission_interval = tonumber(ARGV[2]) / tonumber(ARGV[1])
local t = redis.call('TIME')
local now = (t[1] - 1483228800) + (t[2] / 1000000)
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat <= now then
  return 0
end
local new_tat = tat - emission_interval
if new_tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], new_tat, 'EX', math.ceil(new_tat - now))
end
return 1
