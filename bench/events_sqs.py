#!/usr/bin/env python3
"""EventBridge PutEvents -> rule -> SQS target, end to end (issue 14), against Nimbus and,
side by side, any EventBridge+SQS endpoint (moto_server, …) given by --peer NAME=URL.

    .venv/bin/python bench/events_sqs.py --nimbus http://127.0.0.1:4566 \\
        --peer moto=http://127.0.0.1:5000 [--samples 50] [--rounds 3] [--rules 100]

Each server gets a queue, a rule on the default bus whose pattern matches the bench's
events with the queue as its target, and --rules - 1 other rules on the same bus that do
not match (so matching is not a single-rule special case). One round per server,
interleaved (order rotating): --samples times, PutEvents one event and receive it with a
long-polling ReceiveMessage; latency = PutEvents start -> message received (the receive
included), and PutEvents start -> the copy's `SentTimestamp` (when the queue accepted
it; server clock in whole ms, same host, so ±1 ms). Prints a markdown table with p50/p99
pooled over rounds and the Nimbus/peer ratios.
"""

import argparse
import json
import time
import uuid

from sidebyside import client, interleaved, pct, targets


class Route:
    def __init__(self, url, rules):
        self.ev, self.sqs = client("events", url), client("sqs", url)
        run = uuid.uuid4().hex[:8]
        self.source = f"bench.{run}"
        self.q = self.sqs.create_queue(QueueName=f"evbench-{run}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for i in range(rules - 1):
            self.ev.put_rule(Name=f"evbench-{run}-other{i}",
                             EventPattern=json.dumps({"source": [f"other.{i}"], "detail": {"n": [{"numeric": [">", i]}]}}))
        self.ev.put_rule(Name=f"evbench-{run}", EventPattern=json.dumps({"source": [self.source]}))
        self.ev.put_targets(Rule=f"evbench-{run}", Targets=[{"Id": "q", "Arn": arn}])

    def round(self, samples):
        lat, enq, lost = [], [], 0
        for _ in range(samples):
            t0, wall = time.perf_counter(), time.time() * 1000
            self.ev.put_events(Entries=[{"Source": self.source, "DetailType": "bench", "Detail": '{"n": 1}'}])
            r = self.sqs.receive_message(QueueUrl=self.q, WaitTimeSeconds=10, AttributeNames=["SentTimestamp"])
            msgs = r.get("Messages", [])
            if not msgs:
                lost += 1
                continue
            lat.append((time.perf_counter() - t0) * 1000)
            enq.append(int(msgs[0]["Attributes"]["SentTimestamp"]) - wall)
            self.sqs.delete_message(QueueUrl=self.q, ReceiptHandle=msgs[0]["ReceiptHandle"])
        return {"lat": lat, "enq": enq, "lost": lost}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nimbus", required=True)
    ap.add_argument("--peer", action="append", default=[], help="NAME=URL")
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rules", type=int, default=100, help="rules on the bus (one matches)")
    a = ap.parse_args()
    ts = dict(targets(a.nimbus, a.peer))
    routes = {n: Route(u, a.rules) for n, u in ts.items()}
    for r in routes.values():
        r.round(1)  # warm-up
    res = interleaved(list(ts), a.rounds, lambda n: routes[n].round(a.samples))
    s = {}
    for n, rs in res.items():
        lat = [x for r in rs for x in r["lat"]]
        enq = [x for r in rs for x in r["enq"]]
        s[n] = {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "e50": pct(enq, 0.5), "e99": pct(enq, 0.99),
                "n": len(lat), "lost": sum(r["lost"] for r in rs)}
    print(f"| server | rules on the bus | PutEvents → in the queue p50 ms | p99 ms | PutEvents → received p50 ms "
          f"| p99 ms | samples | lost | Nimbus/peer received p50 | Nimbus/peer received p99 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    nim = s["nimbus"]
    for n, v in s.items():
        r50 = r99 = ""
        if n != "nimbus":
            r50 = f"{nim['p50'] / v['p50']:.2f}×"
            r99 = f"{nim['p99'] / v['p99']:.2f}×"
        print(f"| {n} | {a.rules} | {v['e50']:.1f} | {v['e99']:.1f} | {v['p50']:.2f} | {v['p99']:.2f} | {v['n']} "
              f"| {v['lost']} | {r50} | {r99} |", flush=True)


if __name__ == "__main__":
    main()
