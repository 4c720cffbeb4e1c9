"""S3 throughput against any S3 endpoint (Nimbus, moto_server, SeaweedFS's S3
gateway...), for issue 15's side-by-side table. UNMEASURED so far: written while
eight builds shared two cores, where any number would be meaningless.

    python bench/s3_bench.py --endpoint http://127.0.0.1:4566 [--pid PID] [--clients 1,16,64]
        [--seconds 10] [--large-mib 1024] [--dd-dir /path/on/the/same/disk]

* 4 KiB PUT then GET with 1/16/64 clients (threads, one boto3 client each): ops/s, p50, p99.
* One large object (default 1 GiB) PUT with boto3's multipart transfer and GET: MB/s,
  next to `dd ... conv=fsync` on --dd-dir as the disk's floor.
* With --pid: the server's peak RSS during the large transfer (VmHWM is not reset
  between runs, so start a fresh server for it).
Prints one JSON object.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config


def client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="bench", aws_secret_access_key="bench",
                        config=Config(retries={"max_attempts": 0}, s3={"addressing_style": "path"},
                                      max_pool_connections=4))


def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p))] if s else None


def small(endpoint, bucket, clients, seconds):
    body = os.urandom(4096)
    out = {}
    for op in ("put", "get"):
        lat, stop = [], time.time() + seconds
        lock = threading.Lock()

        def run(i):
            c, mine, n = client(endpoint), [], 0
            while time.time() < stop:
                key = f"small/{i}/{n % 100}"
                t = time.perf_counter()
                if op == "put":
                    c.put_object(Bucket=bucket, Key=key, Body=body)
                else:
                    c.get_object(Bucket=bucket, Key=key)["Body"].read()
                mine.append((time.perf_counter() - t) * 1000)
                n += 1
            with lock:
                lat.extend(mine)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out[op] = {"ops_per_s": len(lat) / seconds, "p50_ms": statistics.median(lat) if lat else None,
                   "p99_ms": pct(lat, 0.99)}
    return out


def rss_peak(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def large(endpoint, bucket, mib, pid):
    c = client(endpoint)
    cfg = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=4)
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "src")
        with open(src, "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(1 << 20))
        before = rss_peak(pid) if pid else None
        t = time.perf_counter()
        c.upload_file(src, bucket, "large", Config=cfg)
        put_s = time.perf_counter() - t
        t = time.perf_counter()
        c.download_file(bucket, "large", os.path.join(d, "dst"), Config=cfg)
        get_s = time.perf_counter() - t
        after = rss_peak(pid) if pid else None
    return {"put_mb_s": mib / put_s, "get_mb_s": mib / get_s,
            "rss_growth_mib": (after - before) / (1 << 20) if pid else None}


def dd_floor(directory, mib):
    path = os.path.join(directory, "dd-floor")
    t = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=fsync"],
                   check=True, capture_output=True)
    s = time.perf_counter() - t
    os.unlink(path)
    return mib / s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--large-mib", type=int, default=1024)
    ap.add_argument("--dd-dir")
    args = ap.parse_args()
    bucket = f"bench-{int(time.time())}"
    client(args.endpoint).create_bucket(Bucket=bucket)
    result = {"endpoint": args.endpoint, "small": {}}
    for n in (int(x) for x in args.clients.split(",")):
        result["small"][n] = small(args.endpoint, bucket, n, args.seconds)
    result["large"] = large(args.endpoint, bucket, args.large_mib, args.pid)
    if args.dd_dir:
        result["dd_floor_mb_s"] = dd_floor(args.dd_dir, args.large_mib)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
