"""``python -m examples.messaging.load``: drives the messaging API and
reports what happened.

It sends single messages (from several threads at once), bulk sends and a
few scheduled ones, spread over the providers, with some invalid numbers
among them; then follows every message until it is delivered or failed (or
``--timeout`` passes) and prints a summary: how many were delivered,
failed and retried, per provider, the rate at which they were accepted, and
the time from request to delivery. Standard library only; it talks to the
one URL it is given (default: this machine), for a bounded count and time.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

FINAL = {"delivered", "failed", "cancelled"}


def call(api: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(api + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def number(rng: random.Random, invalid_rate: float) -> str:
    digits = f"010{rng.randrange(10**8):08d}"
    return digits[:-4] + "0000" if rng.random() < invalid_rate else digits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.messaging.load", description=__doc__)
    parser.add_argument("--api", default="http://127.0.0.1:8000", help="the API's base URL")
    parser.add_argument("--messages", type=int, default=1000, help="messages in all (default 1000)")
    parser.add_argument("--bulk-share", type=float, default=0.4, help="share of them sent in bulk (default 0.4)")
    parser.add_argument("--scheduled", type=int, default=20, help="of them, scheduled a few seconds ahead")
    parser.add_argument("--invalid-rate", type=float, default=0.01, help="share of invalid numbers")
    parser.add_argument("--threads", type=int, default=16, help="single sends in flight at once")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the last message")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not 0 < args.messages <= 100_000:
        parser.error("--messages must be between 1 and 100000")
    rng = random.Random(args.seed)
    api = args.api.rstrip("/")
    try:
        providers = call(api, "GET", "/stats")["providers"]
    except (urllib.error.URLError, OSError) as exc:
        print(f"cannot reach the API at {api} ({exc}); start it with: python -m examples.messaging", file=sys.stderr)
        return 1

    bulk_total = int(args.messages * args.bulk_share)
    scheduled = min(args.scheduled, args.messages - bulk_total)
    singles = args.messages - bulk_total - scheduled
    sent_at: dict[str, float] = {}
    started = time.monotonic()

    def one(n: int) -> None:
        body = {"provider": providers[n % len(providers)], "to": number(rng, args.invalid_rate),
                "body": f"Your code is {n:06d}", "priority": rng.choice(["high", "normal", "normal", "low"])}
        sent_at[call(api, "POST", "/messages", body)["id"]] = time.monotonic()

    with ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(one, range(singles)))
    for start in range(0, bulk_total, 100):
        recipients = [number(rng, args.invalid_rate) for _ in range(min(100, bulk_total - start))]
        body = {"provider": providers[start // 100 % len(providers)], "body": "Our summer sale starts today",
                "recipients": recipients}
        now = time.monotonic()
        sent_at.update(dict.fromkeys(call(api, "POST", "/messages/bulk", body)["ids"], now))
    for n in range(scheduled):
        body = {"provider": providers[n % len(providers)], "to": number(rng, 0), "body": "Your appointment is tomorrow",
                "delay": 2 + n % 3}
        sent_at[call(api, "POST", "/messages/scheduled", body)["id"]] = time.monotonic()
    accepted = time.monotonic() - started
    print(f"accepted {len(sent_at)} messages in {accepted:.1f} s ({len(sent_at) / accepted:.0f}/s):"
          f" {singles} single, {bulk_total} in bulk, {scheduled} scheduled")

    final: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + args.timeout
    pending = list(sent_at)
    while pending and time.monotonic() < deadline:
        with ThreadPoolExecutor(args.threads) as pool:
            states = list(pool.map(lambda i: call(api, "GET", f"/messages/{i}"), pending))
        for state in states:
            if state["status"] in FINAL:
                final[state["id"]] = state
                state["seen"] = time.monotonic()
        pending = [i for i in pending if i not in final]
        if pending:
            time.sleep(0.5)
    elapsed = time.monotonic() - started

    statuses = Counter(state["status"] for state in final.values())
    by_provider = Counter((state["provider"], state["status"]) for state in final.values())
    retried = sum(1 for state in final.values() if (state["report"] or {}).get("attempt", 1) > 1)
    delays = [_delivery_seconds(state) for state in final.values() if state["status"] == "delivered"]
    print(f"after {elapsed:.1f} s: " + ", ".join(f"{statuses[s]} {s}" for s in ("delivered", "failed", "cancelled"))
          + f"; {retried} delivered after a retry; {len(pending)} not finished")
    for name in providers:
        print(f"  {name:>8}: {by_provider[(name, 'delivered')]} delivered, {by_provider[(name, 'failed')]} failed")
    if delays:
        delays.sort()
        p95 = delays[min(len(delays) - 1, int(len(delays) * 0.95))]
        print(f"  request to delivery: median {statistics.median(delays):.2f} s, p95 {p95:.2f} s")
    return 0 if not pending else 2


def _delivery_seconds(state: dict[str, Any]) -> float:
    report = state["report"]
    return (datetime.fromisoformat(report["sent_at"]) - datetime.fromisoformat(state["created_at"])).total_seconds()


if __name__ == "__main__":
    sys.exit(main())
