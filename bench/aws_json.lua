-- wrk script for the --wrk modes of bench/*.py: one AWS JSON-protocol request, repeated.
-- env: TARGET (X-Amz-Target), BODY (JSON), SERVICE (for the credential scope).
-- The Authorization header is SigV4-shaped but not a real signature: the servers under
-- test do not verify signatures (Nimbus without --credentials, moto, dynalite, kinesalite).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = os.getenv("TARGET")
wrk.headers["X-Amz-Date"] = "20260101T000000Z"
wrk.headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/" .. os.getenv("SERVICE") ..
  "/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000"
wrk.body = os.getenv("BODY")

-- "__N__" in BODY becomes RUN-THREAD-COUNTER (env RUN: a nonce per wrk run; THREAD:
-- wrk's thread number), so that every request of every thread of every run writes a new
-- item (a PutItem that rewrites an identical item may cost a server nothing). An
-- unseeded math.random is NOT enough: every thread's Lua state starts from the same
-- seed, so threads and runs repeated each other's keys.
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local n = 0
local run = os.getenv("RUN") or tostring(os.time())
local varies = string.find(wrk.body, "__N__", 1, true) ~= nil
if varies then
  request = function()
    n = n + 1
    return wrk.format(nil, nil, nil, (string.gsub(wrk.body, "__N__", run .. "-" .. tostring(tid) .. "-" .. tostring(n))))
  end
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
