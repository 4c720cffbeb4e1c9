#!/usr/bin/env python3
"""SNS publish -> N SQS subscribers, end to end (issue 14), against Nimbus and, side by
side, any SNS+SQS endpoint (moto_server, …) given by --peer NAME=URL.

    .venv/bin/python bench/sns_fanout.py --nimbus http://127.0.0.1:4566 \\
        --peer moto=http://127.0.0.1:5000 [--subscribers 10] [--samples 20] \\
        [--messages 100] [--rounds 3]

Each server gets a topic and N raw-delivery SQS subscriptions. Rounds run interleaved
(A, B, A, B, order rotating); one round per server: (1) --samples times, publish one
message and wait until every queue has received it (one long-polling receiver thread
per queue; publish -> delivered to all, the receive included; and publish -> the
latest `SentTimestamp` among the N copies, i.e. when the last queue accepted its copy,
server clock in whole milliseconds, same host, so ±1 ms), then (2) publish
--messages as fast as one client can (publishes/s) and wait until every queue has all
of them (deliveries/s = messages × N / (first publish -> last delivery)). Prints a
markdown table: latency p50/p99 pooled over rounds, medians of the rates, Nimbus/peer.

With --wrk the burst comes from `wrk` instead (C, bench/sns_publish.lua, --clients
keep-alive connections for --duration seconds), and deliveries are counted on the
server with GetQueueAttributes(ApproximateNumberOfMessages) instead of boto3 receivers,
so neither publishing nor draining is bound by a Python client: publishes/s = wrk's
successful publishes / its duration; deliveries/s = copies that reached the N queues /
(wrk start -> the moment every queue holds every copy). Needs `wrk` (Debian package).
"""

import argparse
import os
import statistics
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from sidebyside import client, pct, targets


class Fanout:
    def __init__(self, url, subscribers):
        self.sns = client("sns", url)
        sqs = client("sqs", url)
        run = uuid.uuid4().hex[:8]
        self.topic = self.sns.create_topic(Name=f"bench-{run}")["TopicArn"]
        self.urls = []
        for i in range(subscribers):
            q = sqs.create_queue(QueueName=f"bench-{run}-{i}")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=arn,
                               Attributes={"RawMessageDelivery": "true"})
            self.urls.append(q)
        self.clients = [client("sqs", url) for _ in self.urls]
        self.pool = ThreadPoolExecutor(len(self.urls))

    def drain(self, i, want, deadline):
        got, sent = 0, []
        while got < want and time.monotonic() < deadline:
            r = self.clients[i].receive_message(QueueUrl=self.urls[i], MaxNumberOfMessages=10,
                                                WaitTimeSeconds=1, AttributeNames=["SentTimestamp"])
            msgs = r.get("Messages", [])
            got += len(msgs)
            sent += [int(m["Attributes"]["SentTimestamp"]) for m in msgs]
            if msgs:
                self.clients[i].delete_message_batch(QueueUrl=self.urls[i], Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(msgs)])
        return got, max(sent, default=0)

    def all_get(self, want, timeout=60):
        """How many messages all queues got, and the latest SentTimestamp (ms) among them."""
        deadline = time.monotonic() + timeout
        got = list(self.pool.map(lambda i: self.drain(i, want, deadline), range(len(self.urls))))
        return sum(g for g, _ in got), max(t for _, t in got)

    def round(self, samples, messages):
        lat, enq, lost = [], [], 0
        for _ in range(samples):
            t0, wall = time.perf_counter(), time.time() * 1000
            self.sns.publish(TopicArn=self.topic, Message="x")
            got, last = self.all_get(1)
            lat.append((time.perf_counter() - t0) * 1000)
            lost += len(self.urls) - got
            enq.append(last - wall)
        t0 = time.perf_counter()
        for _ in range(messages):
            self.sns.publish(TopicArn=self.topic, Message="y")
        pub = messages / (time.perf_counter() - t0)
        lost += messages * len(self.urls) - self.all_get(messages)[0]
        deliv = messages * len(self.urls) / (time.perf_counter() - t0)
        return {"lat": lat, "enq": enq, "pub": pub, "deliv": deliv, "lost": lost}

    def depth(self):
        return sum(int(c.get_queue_attributes(QueueUrl=u, AttributeNames=["ApproximateNumberOfMessages"])
                       ["Attributes"]["ApproximateNumberOfMessages"]) for c, u in zip(self.clients, self.urls))

    def wrk_round(self, url, clients, duration, timeout=120):
        """Publishes from wrk for `duration` s; copies are counted in the queues (not drained)."""
        before = self.depth()
        t0 = time.perf_counter()
        out = subprocess.run(["wrk", f"-t{min(2, clients)}", f"-c{clients}", f"-d{duration}s", "-s",
                              os.path.join(os.path.dirname(__file__), "sns_publish.lua"), url],
                             env={**os.environ, "TOPIC_ARN": self.topic}, capture_output=True, text=True,
                             check=True)
        line = next(x for x in out.stdout.splitlines() if x.startswith("WRK "))
        req, us, err, p50, p99, _ = line.split()[1:]
        bad = int(err) + out.stderr.count("status ")
        published = int(req) - bad
        want = published * len(self.urls)
        deadline = time.monotonic() + timeout
        got = self.depth() - before
        while got < want and time.monotonic() < deadline:
            time.sleep(0.02)
            got = self.depth() - before
        elapsed = time.perf_counter() - t0
        return {"pub": published / (int(us) / 1e6), "deliv": got / elapsed, "lost": max(0, want - got),
                "errors": bad, "p50": float(p50) / 1000, "p99": float(p99) / 1000}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nimbus", required=True)
    ap.add_argument("--peer", action="append", default=[], help="NAME=URL")
    ap.add_argument("--subscribers", type=int, default=10)
    ap.add_argument("--samples", type=int, default=20, help="latency samples per round")
    ap.add_argument("--messages", type=int, default=100, help="burst per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wrk", action="store_true", help="publish from wrk, count copies on the server")
    ap.add_argument("--clients", type=int, default=16, help="wrk connections (--wrk)")
    ap.add_argument("--duration", type=int, default=3, help="wrk seconds per round (--wrk)")
    a = ap.parse_args()
    ts = dict(targets(a.nimbus, a.peer))
    fan = {n: Fanout(u, a.subscribers) for n, u in ts.items()}
    names = list(ts)
    if a.wrk:
        return wrk_main(a, ts, fan, names)
    out = {n: [] for n in names}
    for r in range(a.rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            out[n].append(fan[n].round(a.samples, a.messages))
    s = {}
    for n, rs in out.items():
        lat = [x for r in rs for x in r["lat"]]
        enq = [x for r in rs for x in r["enq"]]
        s[n] = {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "n": len(lat),
                "e50": pct(enq, 0.5), "e99": pct(enq, 0.99),
                "pub": statistics.median(r["pub"] for r in rs),
                "deliv": statistics.median(r["deliv"] for r in rs),
                "deliv_lo": min(r["deliv"] for r in rs), "deliv_hi": max(r["deliv"] for r in rs),
                "lost": sum(r["lost"] for r in rs)}
    N = a.subscribers
    print(f"| server | publish → in all {N} queues p50 ms | p99 ms | publish → all {N} received p50 ms | p99 ms "
          f"| samples | publishes/s (1 client) | deliveries/s (median) | spread | missing "
          f"| Nimbus/peer in-queues p50 | Nimbus/peer deliveries/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    nim = s["nimbus"]
    for n, v in s.items():
        r50 = rd = ""
        if n != "nimbus":
            r50 = f"{nim['e50'] / v['e50']:.2f}×" if v["e50"] > 0 else ""
            rd = f"**{nim['deliv'] / v['deliv']:.2f}×**"
        print(f"| {n} | {v['e50']:.1f} | {v['e99']:.1f} | {v['p50']:.2f} | {v['p99']:.2f} | {v['n']} | {v['pub']:.0f} | {v['deliv']:.0f} | "
              f"{v['deliv_lo']:.0f}–{v['deliv_hi']:.0f} | {v['lost']} | {r50} | {rd} |", flush=True)


def wrk_main(a, ts, fan, names):
    out = {n: [] for n in names}
    for r in range(a.rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            out[n].append(fan[n].wrk_round(ts[n], a.clients, a.duration))
    N = a.subscribers
    print(f"| server | wrk clients | publishes/s (median) | spread | publish p50 ms | p99 ms | errors "
          f"| deliveries/s to {N} queues (median) | spread | missing | Nimbus/peer publishes/s | Nimbus/peer deliveries/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    med = {n: (statistics.median(x["pub"] for x in rs), statistics.median(x["deliv"] for x in rs))
           for n, rs in out.items()}
    for n, rs in out.items():
        pub, deliv = med[n]
        rp = rd = ""
        if n != "nimbus":
            rp = f"**{med['nimbus'][0] / pub:.2f}×**" if pub else ""
            rd = f"**{med['nimbus'][1] / deliv:.2f}×**" if deliv else ""
        print(f"| {n} | {a.clients} | {pub:.0f} | {min(x['pub'] for x in rs):.0f}–{max(x['pub'] for x in rs):.0f} "
              f"| {statistics.median(x['p50'] for x in rs):.2f} | {max(x['p99'] for x in rs):.2f} "
              f"| {sum(x['errors'] for x in rs)} | {deliv:.0f} "
              f"| {min(x['deliv'] for x in rs):.0f}–{max(x['deliv'] for x in rs):.0f} "
              f"| {sum(x['lost'] for x in rs)} | {rp} | {rd} |", flush=True)


if __name__ == "__main__":
    main()
