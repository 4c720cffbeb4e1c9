-- wrk script for bench/s3_bench.py --wrk: MODE=PUT puts a BODY_BYTES object (default 4096)
-- under a new key per request (w/RUN-THREAD-COUNTER in BUCKET: every request writes a new
-- object, and the run's prefix lets the bench count them afterwards); MODE=GET gets KEY.
-- The Authorization header is SigV4-shaped but not a real signature: only servers that do
-- not verify signatures can be measured this way (Nimbus without --credentials, moto).
local mode = os.getenv("MODE") or "PUT"
local bucket = os.getenv("BUCKET")
local run = os.getenv("RUN") or tostring(os.time())
local key = os.getenv("KEY")
local body = string.rep("x", tonumber(os.getenv("BODY_BYTES") or "4096"))
wrk.headers["X-Amz-Date"] = "20260101T000000Z"
wrk.headers["X-Amz-Content-Sha256"] = "UNSIGNED-PAYLOAD"
wrk.headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, " ..
  "SignedHeaders=host;x-amz-content-sha256;x-amz-date, " ..
  "Signature=0000000000000000000000000000000000000000000000000000000000000000"

local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local n = 0
request = function()
  if mode == "PUT" then
    n = n + 1
    -- (wrk.format's headers replace wrk.headers, hence the copy)
    local h = {["Content-Type"] = "application/octet-stream"}
    for k, v in pairs(wrk.headers) do h[k] = v end
    return wrk.format("PUT", "/" .. bucket .. "/w/" .. run .. "-" .. tostring(tid) .. "-" .. tostring(n), h, body)
  end
  return wrk.format("GET", "/" .. bucket .. "/" .. key)
end

function response(status, headers, body)
  if status ~= 200 then
    io.stderr:write("status " .. status .. ": " .. body .. "\n")
  end
end

done = function(summary, latency, requests)
  io.write(string.format("WRK %d %d %d %.1f %.1f %.1f\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
