// Drives Nimbus's S3 with the AWS SDK for JavaScript v3 (tests/e2e/test_s3_js.py):
//   node run.js <endpoint> <bucket>
// Prints one JSON line of what it observed; exits non-zero on any unexpected error.
"use strict";
const crypto = require("node:crypto");
const { Readable } = require("node:stream");
const {
  S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand, HeadObjectCommand,
  ListObjectsV2Command, DeleteObjectsCommand, CopyObjectCommand,
} = require("@aws-sdk/client-s3");
const { Upload } = require("@aws-sdk/lib-storage");
const { getSignedUrl } = require("@aws-sdk/s3-request-presigner");

async function main() {
  const [endpoint, bucket] = process.argv.slice(2);
  const s3 = new S3Client({
    endpoint, region: "us-east-1", forcePathStyle: true,
    credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
  });
  const out = {};
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));

  // A buffer body: the SDK's default CRC32 checksum, in a header.
  const small = crypto.randomBytes(4096);
  const put = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "small.bin", Body: small }));
  out.putChecksum = put.ChecksumCRC32 || null;
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "small.bin", ChecksumMode: "ENABLED" }));
  out.smallRoundTrip = Buffer.compare(Buffer.from(await got.Body.transformToByteArray()), small) === 0;
  out.getChecksum = got.ChecksumCRC32 || null;

  // A stream body of known length: aws-chunked with a trailing checksum.
  const streamed = crypto.randomBytes(300 * 1024);
  await s3.send(new PutObjectCommand({
    Bucket: bucket, Key: "dir/streamed.bin", Body: Readable.from([streamed.subarray(0, 100000), streamed.subarray(100000)]),
    ContentLength: streamed.length,
  }));
  const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "dir/streamed.bin" }));
  out.streamedLength = head.ContentLength;
  const gs = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "dir/streamed.bin" }));
  out.streamedRoundTrip = Buffer.compare(Buffer.from(await gs.Body.transformToByteArray()), streamed) === 0;

  // lib-storage: a multipart upload of an unknown-length stream.
  const big = crypto.randomBytes(11 * 1024 * 1024 + 7);
  const up = new Upload({
    client: s3, params: { Bucket: bucket, Key: "big.bin", Body: Readable.from([big]) },
    partSize: 5 * 1024 * 1024, queueSize: 2,
  });
  const done = await up.done();
  out.uploadETag = done.ETag;
  const gb = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "big.bin" }));
  out.bigRoundTrip = Buffer.compare(Buffer.from(await gb.Body.transformToByteArray()), big) === 0;

  // Copy, listing, batch delete (the SDK sends a checksum of the XML body).
  await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "copy.bin", CopySource: `${bucket}/small.bin` }));
  const list = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Delimiter: "/" }));
  out.keys = (list.Contents || []).map((o) => o.Key);
  out.prefixes = (list.CommonPrefixes || []).map((p) => p.Prefix);
  const del = await s3.send(new DeleteObjectsCommand({
    Bucket: bucket, Delete: { Objects: [{ Key: "copy.bin" }] },
  }));
  out.deleted = (del.Deleted || []).map((d) => d.Key);

  // Presigned PUT and GET, fetched without the SDK.
  const putUrl = await getSignedUrl(s3, new PutObjectCommand({ Bucket: bucket, Key: "presigned.txt" }), { expiresIn: 300 });
  const pr = await fetch(putUrl, { method: "PUT", body: "via presigned url" });
  out.presignedPut = pr.status;
  const getUrl = await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: "presigned.txt" }), { expiresIn: 300 });
  const gr = await fetch(getUrl);
  out.presignedGet = [gr.status, await gr.text()];

  // Errors come back typed.
  try {
    await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "missing" }));
    out.missing = "no error";
  } catch (e) {
    out.missing = e.name;
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
