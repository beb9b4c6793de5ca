-- POST /v1/login with the benchmark user's credentials, over and over; the
-- body is read from $LOGIN_BODY_FILE, so the password is in no command line.
-- Answers are counted: 2xx, 429 (RATE_LIMITED: the hashing queue's expected
-- wait was over --login-wait-budget), anything else.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local f = assert(io.open(os.getenv("LOGIN_BODY_FILE")))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = body
counted = true

-- With LOGIN_POLITE=1 (bench/peer -polite-login) every 429 makes one
-- connection wait its Retry-After before its next request: response() owes a
-- delay, and the next delay() wrk asks for (it asks once before each request
-- on a connection, after that connection's answer) pays it. Which connection
-- waits may differ from the refused one when answers interleave; the number
-- and length of the waits do not. Without it, as the peer's login.lua, a
-- refused client asks again at once.
local polite = os.getenv("LOGIN_POLITE") == "1"
local owed, first, last = {}, 1, 0
function response(status, headers, body)
  count(status)
  if polite and status == 429 then
    last = last + 1
    owed[last] = (tonumber(headers["Retry-After"]) or 1) * 1000
  end
end
if polite then
  function delay()
    if first > last then return 0 end
    local ms = owed[first]
    owed[first] = nil
    first = first + 1
    return ms
  end
end
