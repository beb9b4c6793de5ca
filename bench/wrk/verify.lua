-- POST /v1/verify {"token": <access token>}: the same access token every time
-- (read from $ACCESS_FILE). Verify checks the signature, the claims and that
-- the session is live.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local f = assert(io.open(os.getenv("ACCESS_FILE")))
local token = f:read("*l")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"token":"' .. token .. '"}'
