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
function response(status, headers, body)
  count(status)
end
