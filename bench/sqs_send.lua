-- wrk script for bench/sqs.py --wrk: SendMessage (AWS JSON 1.0) to the queue URL in
-- env QUEUE_URL, with a static SigV4-shaped Authorization header (servers under test
-- do not verify signatures: Nimbus without --credentials, moto). 256-byte body.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "AmazonSQS.SendMessage"
wrk.headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=00"
wrk.body = '{"QueueUrl":"' .. os.getenv("QUEUE_URL") .. '","MessageBody":"' .. string.rep("x", 256) .. '"}'

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
