// Sends ONE real request with the AWS SDK for JavaScript v3 and prints its outcome
// as one JSON line: {"case", "ok", "status", "code", "message"}.
//
//   node send.js <endpoint-url> <case>
//
// <case> is `<service>-<Operation>` as in the fixture names of
// crates/edge/tests/fixtures (`sqs-ListQueues`, `s3-PutObject`, …); see CASES.
// Used by scripts/capture-requests.py (against a recording server) and
// tests/e2e/test_edge_routing.py (against the real nimbus binary). Dummy
// credentials, region us-east-1, one attempt (no retries).
"use strict";

const dns = require("node:dns");
const http = require("node:http");
const { Readable } = require("node:stream");
const { NodeHttpHandler } = require("@smithy/node-http-handler");

const [endpoint, name] = process.argv.slice(2);
if (!endpoint || !name) {
  console.error("usage: node send.js <endpoint-url> <case>");
  process.exit(2);
}

// `bucket.localhost` does not resolve everywhere (it needs systemd-resolved or
// similar); every `*.localhost` name is loopback, so resolve them here.
function lookup(hostname, options, callback) {
  if (hostname === "localhost" || hostname.endsWith(".localhost")) {
    return dns.lookup("127.0.0.1", options, callback);
  }
  return dns.lookup(hostname, options, callback);
}

const common = {
  endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "AKIDNIMBUSCAPTURE", secretAccessKey: "nimbus-capture-secret" },
  maxAttempts: 1,
  // HTTP/1.1 for every client: the Kinesis client defaults to HTTP/2 (for
  // SubscribeToShard), which Nimbus's listener does not speak.
  requestHandler: new NodeHttpHandler({ httpAgent: new http.Agent({ lookup }) }),
};

function client(pkg, cls, extra = {}) {
  const mod = require(pkg);
  return { mod, c: new mod[cls]({ ...common, ...extra }) };
}

async function send(pkg, cls, command, input = {}, extra = {}) {
  const { mod, c } = client(pkg, cls, extra);
  return c.send(new mod[command](input));
}

// The endpoint with `localhost` for a loopback address, so that the SDK can put
// the bucket in front of it (`bucket.localhost:<port>`, virtual-host style).
function localhostEndpoint() {
  const u = new URL(endpoint);
  if (u.hostname === "127.0.0.1") u.hostname = "localhost";
  return u.toString().replace(/\/$/, "");
}

const CASES = {
  "lambda-ListFunctions": () => send("@aws-sdk/client-lambda", "LambdaClient", "ListFunctionsCommand"),
  "sts-GetCallerIdentity": () => send("@aws-sdk/client-sts", "STSClient", "GetCallerIdentityCommand"),
  "sqs-ListQueues": () => send("@aws-sdk/client-sqs", "SQSClient", "ListQueuesCommand"),
  "sns-ListTopics": () => send("@aws-sdk/client-sns", "SNSClient", "ListTopicsCommand"),
  "sns-ListPlatformApplications": () => send("@aws-sdk/client-sns", "SNSClient", "ListPlatformApplicationsCommand"),
  "s3-ListBuckets": () =>
    send("@aws-sdk/client-s3", "S3Client", "ListBucketsCommand", {}, { forcePathStyle: true }),
  // A stream body: the SDK sends it aws-chunked with a trailing CRC32
  // (STREAMING-UNSIGNED-PAYLOAD-TRAILER), its default for PutObject.
  "s3-PutObject": () =>
    send(
      "@aws-sdk/client-s3",
      "S3Client",
      "PutObjectCommand",
      {
        Bucket: "nimbus-capture",
        Key: "dir/hello.txt",
        Body: Readable.from([Buffer.from("hello "), Buffer.from("world")]),
        ContentLength: 11,
        ChecksumAlgorithm: "CRC32",
      },
      { forcePathStyle: true },
    ),
  // Virtual-host style: Host `nimbus-capture.localhost:<port>`.
  "s3-ListObjectsV2": () =>
    send(
      "@aws-sdk/client-s3",
      "S3Client",
      "ListObjectsV2Command",
      { Bucket: "nimbus-capture" },
      { endpoint: localhostEndpoint(), forcePathStyle: false },
    ),
  // A presigned GET URL, then fetched with plain HTTP (no SDK signing on the way).
  "s3-GetObject": async () => {
    const { mod, c } = client("@aws-sdk/client-s3", "S3Client", { forcePathStyle: true });
    const { getSignedUrl } = require("@aws-sdk/s3-request-presigner");
    const url = await getSignedUrl(
      c,
      new mod.GetObjectCommand({ Bucket: "nimbus-capture", Key: "dir/hello.txt" }),
      { expiresIn: 3600 },
    );
    const r = await fetch(url);
    const body = await r.text();
    const code = (body.match(/<Code>([^<]*)<\/Code>/) || [])[1];
    const message = (body.match(/<Message>([^<]*)<\/Message>/) || [])[1];
    if (r.ok) return { $metadata: { httpStatusCode: r.status } };
    const err = new Error(message || body);
    err.name = code || String(r.status);
    err.$metadata = { httpStatusCode: r.status };
    throw err;
  },
  "dynamodb-ListTables": () => send("@aws-sdk/client-dynamodb", "DynamoDBClient", "ListTablesCommand"),
  "dynamodbstreams-ListStreams": () =>
    send("@aws-sdk/client-dynamodb-streams", "DynamoDBStreamsClient", "ListStreamsCommand"),
  "kinesis-ListStreams": () => send("@aws-sdk/client-kinesis", "KinesisClient", "ListStreamsCommand"),
  "events-ListEventBuses": () =>
    send("@aws-sdk/client-eventbridge", "EventBridgeClient", "ListEventBusesCommand"),
  "events-ListEndpoints": () =>
    send("@aws-sdk/client-eventbridge", "EventBridgeClient", "ListEndpointsCommand"),
  "secretsmanager-ListSecrets": () =>
    send("@aws-sdk/client-secrets-manager", "SecretsManagerClient", "ListSecretsCommand"),
  "ssm-DescribeParameters": () => send("@aws-sdk/client-ssm", "SSMClient", "DescribeParametersCommand"),
  "ses-ListIdentities": () => send("@aws-sdk/client-ses", "SESClient", "ListIdentitiesCommand"),
  // Newer SES v2 models moved this to `POST /v2/email/list-identities`; botocore
  // 1.35's model (the one Nimbus's table comes from) has `GET /v2/email/identities`.
  "sesv2-ListEmailIdentities": () =>
    send("@aws-sdk/client-sesv2", "SESv2Client", "ListEmailIdentitiesCommand"),
  "sesv2-GetAccount": () => send("@aws-sdk/client-sesv2", "SESv2Client", "GetAccountCommand"),
  "iam-ListUsers": () => send("@aws-sdk/client-iam", "IAMClient", "ListUsersCommand"),
};

async function main() {
  const run = CASES[name];
  if (!run) {
    console.error(`unknown case ${name}; known: ${Object.keys(CASES).join(" ")}`);
    process.exit(2);
  }
  let out;
  try {
    const res = await run();
    out = { case: name, ok: true, status: res.$metadata && res.$metadata.httpStatusCode };
  } catch (e) {
    out = {
      case: name,
      ok: false,
      status: e.$metadata ? e.$metadata.httpStatusCode : null,
      code: e.Code || e.name,
      message: e.message,
    };
  }
  console.log(JSON.stringify(out));
}

main();
