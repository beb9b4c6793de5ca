-- bench/wrk/common.lua: shared by bench/peer's wrk scripts against identityd
-- (BENCH_LUA names this directory). One machine-readable line per run:
--
--   RESULT <name> <requests> <2xx> <non-2xx> <socket errors> <seconds> <p50 ms> <p99 ms> <429s> <pool empty>
--
-- Scripts that look at each answer (login, refresh) set `counted = true` and
-- call count(status) from response(); the others take wrk's own count of
-- error statuses (>= 400). "pool empty" is refresh.lua's: requests sent with
-- no refresh token left in the thread's pool (each is a non-2xx too).

local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

ok, refused, other, empty = 0, 0, 0, 0

function count(status)
  if status >= 200 and status < 300 then
    ok = ok + 1
  elseif status == 429 then
    refused = refused + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local okn, ref, oth, emp, counted = 0, 0, 0, 0, false
  for _, th in ipairs(threads) do
    if th:get("counted") then counted = true end
    okn = okn + th:get("ok"); ref = ref + th:get("refused")
    oth = oth + th:get("other"); emp = emp + th:get("empty")
  end
  local non2xx = e.status
  if counted then
    non2xx = ref + oth
  else
    okn = summary.requests - e.status
  end
  io.write(string.format("RESULT %s %d %d %d %d %.3f %.2f %.2f %d %d\n",
    os.getenv("BENCH_NAME") or "?", summary.requests, okn, non2xx,
    e.connect + e.read + e.write + e.timeout, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, ref, emp))
end
