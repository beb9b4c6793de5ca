-- POST /v1/refresh, chained: every refresh token is single-use (rotation), so
-- each wrk thread keeps a pool of live refresh tokens, seeded from $TOKENS
-- (thread i of $WRK_THREADS takes lines i, i+T, i+2T, ...; bench/peer logs in
-- 4 sessions per connection). request() takes the oldest token of the pool,
-- response() puts the answer's new refresh token back. A non-2xx answer loses
-- its session's token and is counted; a request that finds the pool empty is
-- sent with a token that cannot work and is counted too ("pool empty").
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

counted = true
local pool, first, last = {}, 1, 0

function init(args)
  local nthreads, i = tonumber(os.getenv("WRK_THREADS")), 0
  for line in io.lines(os.getenv("TOKENS")) do
    if i % nthreads == tid and line ~= "" then
      last = last + 1
      pool[last] = line
    end
    i = i + 1
  end
end

local headers = { ["Content-Type"] = "application/json" }
function request()
  local t
  if first <= last then
    t = pool[first]
    pool[first] = nil
    first = first + 1
  else
    empty = empty + 1
    t = "pool-empty"
  end
  return wrk.format("POST", nil, headers, '{"refresh_token":"' .. t .. '"}')
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    local t = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if t == nil then
      other = other + 1 -- a 2xx without a refresh token: counted as a failure
      return
    end
    last = last + 1
    pool[last] = t
  end
  count(status)
end
