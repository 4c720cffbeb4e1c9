// Capture what the AWS SDK for JavaScript v3 really sends for a streamed
// PutObject with a CRC32 checksum (STREAMING-UNSIGNED-PAYLOAD-TRAILER), into
// js-sdk-put-crc32.bin (body) and js-sdk-put-crc32.headers.json.
//
//   NODE_PATH=<dir with @aws-sdk/client-s3> node crates/protocol/testdata/gen_chunked_js.mjs
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import { createRequire } from "node:module";

const require = createRequire(path.join(process.env.NODE_PATH, "x.js"));
const { S3Client, PutObjectCommand } = require("@aws-sdk/client-s3");
const here = path.dirname(new URL(import.meta.url).pathname);
// The same 5000 bytes as gen_chunked.py.
const payload = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7 + Math.floor(i / 251)) % 256));

const server = http.createServer((req, res) => {
  const parts = [];
  req.on("data", (d) => parts.push(d));
  req.on("end", () => {
    fs.writeFileSync(path.join(here, "js-sdk-put-crc32.bin"), Buffer.concat(parts));
    fs.writeFileSync(path.join(here, "js-sdk-put-crc32.headers.json"), JSON.stringify(req.headers, null, 1) + "\n");
    res.writeHead(200, { etag: '"x"' });
    res.end();
  });
});
server.listen(0, "127.0.0.1", async () => {
  const client = new S3Client({
    region: "us-east-1",
    endpoint: `http://127.0.0.1:${server.address().port}`,
    forcePathStyle: true,
    credentials: { accessKeyId: "AKID", secretAccessKey: "secret" },
  });
  await client.send(new PutObjectCommand({
    Bucket: "b", Key: "k", ChecksumAlgorithm: "CRC32",
    Body: Readable.from([payload.subarray(0, 3000), payload.subarray(3000)]),
    ContentLength: payload.length,
  }));
  server.close();
});
