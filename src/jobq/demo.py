"""``jobq demo``: k-msg's message-sending workload on the embedded default.

Three tasks, under k-msg's job types ``send_message``,
``send_bulk_messages`` and ``send_scheduled_message``, take typed messages
(dataclasses). A producer defers them the way k-msg's
``MessageJobProcessor`` queues its jobs (priority high=10, normal=5, low=1;
bulk sends at 3; scheduled sends delayed), and a worker "sends" them through
a fake provider with realistic latency and failures: transient ones that
succeed on retry, and invalid numbers that fail for good. Demo jobs live in the named queue ``demo``, so a database
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
from .newjobs import NewJob
from .queue import Queue
from .retry import FixedDelays
from .tasks import App, Task

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


@dataclass
class Recipient:
    phoneNumber: str  # noqa: N815 - k-msg's field names, as its jobs store them
    variables: dict[str, str] = field(default_factory=dict)


@dataclass
class Message:
    """What k-msg's ``MessageJobProcessor`` queues for one send."""

    templateCode: str  # noqa: N815 - k-msg's field names
    recipients: list[Recipient]
    variables: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class SendResult:
    sent: int
    messageIds: list[str]  # noqa: N815 - k-msg's field names


def _recipient(rng: random.Random) -> Recipient:
    number = f"010{rng.randrange(10**8):08d}"
    if rng.random() < INVALID_NUMBER_RATE:
        number = number[:-4] + "0000"
    return Recipient(number, {"name": rng.choice(["Minji", "Jisoo", "Hyun", "Seo"])})


def _message(rng: random.Random, priority: str) -> Message:
    return Message(
        templateCode=rng.choice(TEMPLATES),
        recipients=[_recipient(rng) for _ in range(rng.choice([1, 1, 1, 2, 3]))],
        variables={"service": "jobq"},
        options={"priority": priority, "senderNumber": "0212345678"},
    )


def build_app(queue: Queue, provider: FakeProvider) -> tuple[App, Tasks]:
    """The demo's tasks, under k-msg's job type names, on ``queue``."""
    app = App(queue=queue)
    settings: dict[str, Any] = dict(queue=DEMO_QUEUE, max_attempts=3, retry=FixedDelays(RETRY_DELAYS))

    async def send_one(message: Message) -> SendResult:
        ids = [await provider.send(r.phoneNumber, message.templateCode) for r in message.recipients]
        return SendResult(len(ids), ids)

    @app.task(name="send_message", **settings)
    async def send_message(message: Message) -> SendResult:
        return await send_one(message)

    @app.task(name="send_scheduled_message", **settings)
    async def send_scheduled_message(message: Message) -> SendResult:
        return await send_one(message)

    @app.task(name="send_bulk_messages", **settings)
    async def send_bulk_messages(messages: list[Message]) -> list[SendResult]:
        return [await send_one(message) for message in messages]

    return app, Tasks(send_message, send_scheduled_message, send_bulk_messages)


@dataclass
class Tasks:
    send_message: Task[[Message], SendResult]
    send_scheduled_message: Task[[Message], SendResult]
    send_bulk_messages: Task[[list[Message]], list[SendResult]]


def make_jobs(count: int, rng: random.Random, tasks: Tasks) -> list[NewJob]:
    """k-msg's mix: mostly single sends, some bulk, some scheduled."""
    jobs = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.80:
            level = rng.choices(list(PRIORITIES), weights=[2, 6, 2])[0]
            jobs.append(tasks.send_message.options(priority=PRIORITIES[level]).job(_message(rng, level)))
        elif kind < 0.90:
            batch = [_message(rng, "normal") for _ in range(rng.randint(2, 5))]
            jobs.append(tasks.send_bulk_messages.options(priority=BULK_PRIORITY).job(batch))
        else:
            delay = rng.uniform(0.2, 2.0)
            message = _message(rng, "normal")
            jobs.append(tasks.send_scheduled_message.options(priority=5, delay=delay).job(message))
    return jobs


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
        app, tasks = build_app(queue, provider)
        processor = app.processor(queue, concurrency=concurrency, queues=[DEMO_QUEUE])
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
            specs = make_jobs(jobs, rng, tasks)
            for start in range(0, len(specs), 250):
                stored = await app.defer_many(specs[start : start + 250])
                ours.update(handle.id for handle in stored)
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
