"""``jobq demo``: k-msg's message-sending workload on the embedded default.

A producer queues ``send_message``, ``send_bulk_messages`` and
``send_scheduled_message`` jobs the way k-msg's ``MessageJobProcessor`` does
(priority high=10, normal=5, low=1; bulk sends at 3; scheduled sends delayed),
and a processor "sends" them through a fake provider with realistic latency
and failures: transient ones that succeed on retry, and invalid numbers that
fail for good. Demo jobs live in the named queue ``demo``, so a database
shared with real work is left alone.
"""

from __future__ import annotations

import asyncio
import random
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .backends import connect
from .events import Event
from .job import Job
from .newjobs import NewJob
from .processor.processor import JobProcessor

DEMO_QUEUE = "demo"
DEMO_JOBS = 3000  # messages queued unless told
DEMO_CONCURRENCY = 32  # jobs run at once unless told
PRIORITIES = {"high": 10, "normal": 5, "low": 1}  # k-msg's queueMessage mapping
BULK_PRIORITY = 3  # k-msg's queueBulkMessages default
TRANSIENT_FAILURE_RATE = 0.06  # share of provider calls that fail and succeed on a retry
INVALID_NUMBER_RATE = 0.004  # share of recipients whose number is rejected every time
RETRY_DELAYS = [0.05, 0.2, 0.5]  # seconds; short, so the demo finishes quickly
TEMPLATES = ["WELCOME_01", "OTP_LOGIN", "ORDER_SHIPPED", "PAYMENT_DONE", "APPOINTMENT_REMINDER"]


class ProviderError(Exception):
    """The fake provider refused a send."""


class FakeProvider:
    """A messaging provider with network-like latency and failures."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.sent = 0

    async def send(self, phone: str, template: str) -> str:
        # Log-normal latency: a median near 15 ms with a long tail.
        await asyncio.sleep(min(self.rng.lognormvariate(-4.2, 0.6), 0.5))
        if phone.endswith("0000"):
            raise ProviderError(f"invalid recipient number {phone}")
        if self.rng.random() < TRANSIENT_FAILURE_RATE:
            raise ProviderError(self.rng.choice(["provider timeout", "carrier busy (HTTP 429)", "HTTP 503"]))
        self.sent += 1
        return f"msg_{self.rng.getrandbits(48):012x}"


def _recipient(rng: random.Random) -> dict[str, Any]:
    number = f"010{rng.randrange(10**8):08d}"
    if rng.random() < INVALID_NUMBER_RATE:
        number = number[:-4] + "0000"
    return {"phoneNumber": number, "variables": {"name": rng.choice(["Minji", "Jisoo", "Hyun", "Seo"])}}


def _message(rng: random.Random, priority: str) -> dict[str, Any]:
    return {
        "templateCode": rng.choice(TEMPLATES),
        "recipients": [_recipient(rng) for _ in range(rng.choice([1, 1, 1, 2, 3]))],
        "variables": {"service": "jobq"},
        "options": {"priority": priority, "senderNumber": "0212345678"},
    }


def make_jobs(count: int, rng: random.Random) -> list[NewJob]:
    """k-msg's mix: mostly single sends, some bulk, some scheduled."""
    jobs = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.80:
            level = rng.choices(list(PRIORITIES), weights=[2, 6, 2])[0]
            jobs.append(
                NewJob("send_message", _message(rng, level), priority=PRIORITIES[level], queue=DEMO_QUEUE)
            )
        elif kind < 0.90:
            batch = [_message(rng, "normal") for _ in range(rng.randint(2, 5))]
            jobs.append(NewJob("send_bulk_messages", batch, priority=BULK_PRIORITY, queue=DEMO_QUEUE))
        else:
            delay = rng.uniform(0.2, 2.0)
            jobs.append(
                NewJob("send_scheduled_message", _message(rng, "normal"), priority=5, delay=delay, queue=DEMO_QUEUE)
            )
    return jobs


def build_processor(queue: Any, provider: FakeProvider, concurrency: int) -> JobProcessor:
    processor = JobProcessor(
        queue, concurrency=concurrency, retry_delays=RETRY_DELAYS, max_retries=3, queues=[DEMO_QUEUE]
    )

    async def send_one(message: dict[str, Any]) -> dict[str, Any]:
        ids = [
            await provider.send(r["phoneNumber"], message["templateCode"]) for r in message["recipients"]
        ]
        return {"sent": len(ids), "messageIds": ids}

    @processor.handler("send_message")
    async def send_message(job: Job[dict[str, Any]]) -> dict[str, Any]:
        return await send_one(job.data)

    @processor.handler("send_scheduled_message")
    async def send_scheduled_message(job: Job[dict[str, Any]]) -> dict[str, Any]:
        return await send_one(job.data)

    @processor.handler("send_bulk_messages")
    async def send_bulk_messages(job: Job[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        return [await send_one(message) for message in job.data]

    return processor


@dataclass
class Tally:
    total: int
    completed: int = 0
    failed: int = 0
    retried: int = 0
    waits: list[float] = field(default_factory=list)  # seconds from due to start, first attempts
    runs: list[float] = field(default_factory=list)  # seconds a handler ran
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.completed + self.failed


def _error_kind(error: str | None) -> str:
    """An error message without the phone number, so alike errors group."""
    return re.sub(r"\s*\d{6,}", "", error or "")


def _bar(tally: Tally, elapsed: float, width: int = 30) -> str:
    done = tally.finished / tally.total if tally.total else 1.0
    filled = int(done * width)
    rate = tally.finished / elapsed if elapsed > 0 else 0.0
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {tally.finished:>5}/{tally.total} {done:4.0%}"
        f" | {rate:6.0f} jobs/s | retried {tally.retried:>4} | failed {tally.failed:>3} | {elapsed:5.1f} s"
    )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def run_demo(
    url: str,
    *,
    jobs: int = DEMO_JOBS,
    concurrency: int = DEMO_CONCURRENCY,
    seed: int | None = None,
    quiet: bool = False,
) -> int:
    rng = random.Random(seed)
    out = sys.stdout
    live = out.isatty() and not quiet
    async with connect(url) as queue:
        provider = FakeProvider(rng)
        processor = build_processor(queue, provider, concurrency)
        tally = Tally(total=jobs)
        ours: set[str] = set()

        def started(event: Event) -> None:
            job = event.job
            assert job is not None
            if job.attempts == 0 and job.started_at is not None:
                tally.waits.append((job.started_at - job.process_at).total_seconds())

        def completed(event: Event) -> None:
            tally.completed += 1
            tally.runs.append(event.processing_time or 0.0)

        def retried(event: Event) -> None:
            tally.retried += 1
            key = _error_kind(event.error)
            tally.errors[key] = tally.errors.get(key, 0) + 1

        def failed(event: Event) -> None:
            tally.failed += 1
            key = f"final: {_error_kind(event.error)}"
            tally.errors[key] = tally.errors.get(key, 0) + 1

        processor.on("job_started", started)
        processor.on("job_completed", completed)
        processor.on("job_retry", retried)
        processor.on("job_failed", failed)

        print(f"jobq demo: {jobs} message jobs on {url} (queue {DEMO_QUEUE!r}), concurrency {concurrency}")
        began = time.monotonic()
        await processor.start()
        try:
            # The producer queues in bursts while the worker runs, as an app would.
            specs = make_jobs(jobs, rng)
            for start in range(0, len(specs), 250):
                stored = await queue.enqueue_many(specs[start : start + 250])
                ours.update(job.id for job in stored)
                await asyncio.sleep(0.02)
            last_print = 0.0
            while tally.finished < jobs:
                await asyncio.sleep(0.1)
                now = time.monotonic()
                if live:
                    out.write("\r" + _bar(tally, now - began))
                    out.flush()
                elif not quiet and now - last_print >= 1.0:
                    print(_bar(tally, now - began))
                    last_print = now
        finally:
            await processor.stop()
        elapsed = time.monotonic() - began
        if live:
            out.write("\r" + _bar(tally, elapsed) + "\n")
        elif not quiet:
            print(_bar(tally, elapsed))

    ms = 1000.0
    print()
    print("summary")
    print(f"  jobs          {jobs}")
    print(f"  completed     {tally.completed}")
    print(f"  retried       {tally.retried}   (failed attempts that ran again)")
    print(f"  failed        {tally.failed}   (out of attempts)")
    print(f"  messages sent {provider.sent}")
    print(f"  elapsed       {elapsed:.2f} s   ({tally.finished / elapsed:.0f} jobs/s)")
    print(
        f"  queue wait    p50 {_percentile(tally.waits, 0.5) * ms:.1f} ms"
        f"   p95 {_percentile(tally.waits, 0.95) * ms:.1f} ms   p99 {_percentile(tally.waits, 0.99) * ms:.1f} ms"
    )
    print(
        f"  handler time  p50 {_percentile(tally.runs, 0.5) * ms:.1f} ms"
        f"   p95 {_percentile(tally.runs, 0.95) * ms:.1f} ms   p99 {_percentile(tally.runs, 0.99) * ms:.1f} ms"
        f"   mean {statistics.fmean(tally.runs) * ms if tally.runs else 0:.1f} ms"
    )
    if tally.errors:
        print("  errors seen")
        for message, count in sorted(tally.errors.items(), key=lambda kv: -kv[1]):
            print(f"    {count:>5}  {message}")
    return 0 if tally.finished == jobs else 1
