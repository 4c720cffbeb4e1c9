-- wrk script for bench/sns_fanout.py --wrk: SNS Publish (awsQuery, form-encoded) of a
-- 256-byte message to the topic in env TOPIC_ARN, with a static SigV4-shaped
-- Authorization header (servers under test do not verify signatures: Nimbus without
-- --credentials, moto).
local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
wrk.headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sns/aws4_request, SignedHeaders=host, Signature=00"
wrk.body = "Action=Publish&Version=2010-03-31&TopicArn=" .. urlencode(os.getenv("TOPIC_ARN")) ..
  "&Message=" .. string.rep("x", 256)

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
