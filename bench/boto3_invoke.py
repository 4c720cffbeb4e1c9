"""Sync Invoke through boto3, next to its own peer, for nimbus-bench.

    python bench/boto3_invoke.py --endpoint http://127.0.0.1:PORT --function NAME --seconds 5

One boto3 Lambda client (SigV4 signing, botocore's urllib3 pool, keep-alive)
alternates `Invoke` of a warm no-op function with `GetAccountSettings` (an API
call that runs no function: the SDK + signing + HTTP + routing floor), so drift
and background load hit both. Prints one JSON object with the raw samples in ms;
nimbus-bench summarises them with the same percentiles as everything else.
"""

import argparse
import json
import time

import boto3
from botocore.config import Config


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--function", required=True)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()

    client = boto3.client(
        "lambda",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 0}, read_timeout=60),
    )

    def invoke():
        r = client.invoke(FunctionName=args.function, Payload=b"{}")
        r["Payload"].read()
        if r.get("FunctionError"):
            raise SystemExit("invoke failed: %r" % r)

    def settings():
        client.get_account_settings()

    for _ in range(20):
        invoke()
        settings()

    out = {"invoke_ms": [], "account_settings_ms": [], "errors": 0}
    clock = time.perf_counter
    end = clock() + args.seconds
    while clock() < end:
        for fn, key in ((invoke, "invoke_ms"), (settings, "account_settings_ms")):
            t0 = clock()
            try:
                fn()
            except Exception:
                out["errors"] += 1
                continue
            out[key].append((clock() - t0) * 1000.0)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
