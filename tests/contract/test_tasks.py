"""The task API (App, @app.task, defer, results), against every backend.

Jobs run in a processor of the test's own process; real worker processes are
in tests/acceptance/test_task_processes.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from contract_helpers import DEADLINE

import jobq
from jobq import JobStatus, results


class Tier(enum.Enum):
    FREE = "free"
    PAID = "paid"


@dataclasses.dataclass
class Receipt:
    id: uuid.UUID
    sent_at: datetime
    cost: Decimal
    tier: Tier


class Address(pydantic.BaseModel):
    city: str
    zip_code: str


@pytest.fixture
async def app(queue: jobq.Queue) -> AsyncIterator[jobq.App]:
    app = jobq.App(queue=queue)
    yield app


@pytest.fixture
async def worker(app: jobq.App, queue: jobq.Queue) -> AsyncIterator[jobq.JobProcessor]:
    """A processor for the app's tasks; started by the test once its tasks exist."""
    processor = jobq.JobProcessor(queue, poll_interval=0.05)
    yield processor
    await processor.stop(timeout=1)


async def start(app: jobq.App, queue: jobq.Queue) -> jobq.JobProcessor:
    processor = app.processor(queue, poll_interval=0.05, concurrency=4)
    await processor.start()
    return processor


# -- what defer stores ---------------------------------------------------------------------


async def test_defer_stores_a_kmsg_job_with_the_tasks_defaults(app: jobq.App, queue: jobq.Queue) -> None:
    @app.task(name="sms.send", queue="sms", priority=7, max_attempts=5, timeout=30)
    async def send(to: str, body: str, urgent: bool = False) -> None: ...

    handle = await send.defer("+821012345678", body="hi")
    job = await queue.get_job(handle.id)
    assert job is not None
    assert (job.type, job.queue, job.priority, job.max_attempts) == ("sms.send", "sms", 7, 5)
    # The arguments by name, as JSON; defaults not given are not stored.
    assert job.data == {"to": "+821012345678", "body": "hi"}
    assert job.metadata == {"jobq.timeout": 30.0}
    assert handle.job.id == job.id and handle.job.status is JobStatus.PENDING


async def test_options_override_one_call(app: jobq.App, queue: jobq.Queue) -> None:
    @app.task(queue="sms", priority=1)
    def send(to: str) -> None: ...

    handle = await send.options(delay=60, priority=10, queue="bulk", max_attempts=9, metadata={"k": 1}).defer(to="a")
    job = await queue.get_job(handle.id)
    assert job is not None
    assert (job.status, job.priority, job.queue, job.max_attempts) == (JobStatus.DELAYED, 10, "bulk", 9)
    assert job.metadata == {"k": 1}
    assert job.delay == 60
    plain = await send.defer(to="b")  # the overrides were for that call only
    assert (plain.job.priority, plain.job.queue, plain.job.max_attempts) == (1, "sms", 3)


async def test_default_name_is_module_and_function(app: jobq.App) -> None:
    @app.task
    def report(day: date) -> None: ...

    assert report.name == f"{__name__}.test_default_name_is_module_and_function.report"
    assert app.tasks[report.name] is report


def test_a_second_task_of_the_same_name_is_refused() -> None:
    app = jobq.App("memory://")

    @app.task(name="same")
    def first() -> None: ...

    with pytest.raises(jobq.InvalidOption, match="'same' is registered already"):

        @app.task(name="same")
        def second() -> None: ...


def test_bad_task_settings_fail_at_decoration() -> None:
    app = jobq.App("memory://")
    with pytest.raises(jobq.InvalidJob, match="max_attempts"):
        app.task(max_attempts=0)(lambda: None)
    with pytest.raises(jobq.InvalidOption, match="timeout"):
        app.task(timeout=-1)(lambda: None)
    with pytest.raises(jobq.InvalidOption, match="retry"):
        app.task(retry=5)(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="variable number of positional arguments"):

        @app.task
        def spread(*items: int) -> None: ...


# -- bad arguments: refused before anything is stored -------------------------------------


async def test_arguments_that_do_not_fit_the_signature_raise_type_error(app: jobq.App, queue: jobq.Queue) -> None:
    @app.task(name="send")
    async def send(to: str, count: int = 1) -> None: ...

    with pytest.raises(TypeError, match="missing a required argument: 'to'"):
        await send.defer()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'too'"):
        await send.defer(too="x")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="takes 2 positional arguments but 3 were given"):
        await send.defer("a", 2, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="argument 'count' does not fit int: Expected `int`, got `str`"):
        await send.defer("a", count="many")  # type: ignore[arg-type]
    with pytest.raises(jobq.InvalidJob, match="cannot be stored as JSON: values of type object"):
        await send.defer(to=object())  # type: ignore[arg-type]
    assert (await queue.list_jobs()).total == 0


async def test_types_are_checked_inside_containers(app: jobq.App, queue: jobq.Queue) -> None:
    @app.task(name="batch")
    def batch(ids: list[uuid.UUID], when: dict[str, datetime]) -> None: ...

    with pytest.raises(TypeError, match=r"argument 'ids'.*\$\[1\]"):
        await batch.defer(ids=[uuid.uuid4(), "not-a-uuid"], when={})  # type: ignore[list-item]
    assert (await queue.list_jobs()).total == 0


# -- typed values, through a worker and back --------------------------------------------


async def test_typed_arguments_and_results_round_trip(app: jobq.App, queue: jobq.Queue) -> None:
    seen: dict[str, Any] = {}

    @app.task(name="typed")
    async def typed(
        at: datetime, day: date, span: timedelta, key: uuid.UUID, cost: Decimal, tier: Tier,
        receipt: Receipt, address: Address, tags: set[str], pair: tuple[int, str],
    ) -> Receipt:  # fmt: skip
        seen.update(at=at, day=day, span=span, key=key, cost=cost, tier=tier, receipt=receipt, address=address)
        seen.update(tags=tags, pair=pair)
        return dataclasses.replace(receipt, cost=receipt.cost * 2)

    receipt = Receipt(uuid.uuid4(), datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), Decimal("1.10"), Tier.PAID)
    args: dict[str, Any] = dict(
        at=datetime(2026, 12, 7, 9, 30, tzinfo=UTC), day=date(2026, 12, 7), span=timedelta(minutes=90),
        key=uuid.uuid4(), cost=Decimal("0.1"), tier=Tier.FREE, receipt=receipt,
        address=Address(city="Seoul", zip_code="04524"), tags={"a", "b"}, pair=(1, "x"),
    )  # fmt: skip
    handle = await typed.defer(**args)
    stored = await queue.get_job(handle.id)
    assert stored is not None and stored.data["at"] == "2026-12-07T09:30:00Z"  # JSON, not a repr
    processor = await start(app, queue)
    try:
        result = await handle.result(timeout=DEADLINE)
    finally:
        await processor.stop()
    assert seen == args  # each argument arrived as its annotated type
    assert result == dataclasses.replace(receipt, cost=Decimal("2.20"))
    assert isinstance(result.id, uuid.UUID) and result.sent_at.tzinfo is not None


async def test_a_result_with_no_json_form_fails_the_job_for_good(app: jobq.App, queue: jobq.Queue) -> None:
    @app.task(name="odd", max_attempts=3)
    def odd() -> Any:
        return object()

    handle = await odd.defer()
    processor = await start(app, queue)
    try:
        with pytest.raises(jobq.JobFailed, match="cannot be stored as JSON") as failed:
            await handle.result(timeout=DEADLINE)
    finally:
        await processor.stop()
    assert handle.job.attempts == 1  # not retried: it would return the same
    assert failed.value.error is not None and "object" in failed.value.error


async def test_a_plain_handlers_datetime_result_is_stored_as_json_not_repr(queue: jobq.Queue) -> None:
    processor = jobq.JobProcessor(queue, poll_interval=0.05)

    @processor.handler("when")
    def when(job: jobq.Job[Any]) -> dict[str, Any]:
        return {"at": datetime(2026, 1, 1, tzinfo=UTC)}

    job = await queue.enqueue("when")
    await processor.start()
    try:
        done = await queue.wait(job.id, timeout=DEADLINE)
    finally:
        await processor.stop()
    assert done.result == {"at": "2026-01-01T00:00:00Z"}


# -- results ---------------------------------------------------------------------------


async def test_result_raises_job_failed_with_the_error_and_its_type(app: jobq.App, queue: jobq.Queue) -> None:
    @app.task(name="boom", max_attempts=1)
    def boom(n: int) -> int:
        raise ValueError(f"bad number {n}")

    handle = await boom.defer(7)
    processor = await start(app, queue)
    try:
        with pytest.raises(jobq.JobFailed) as failed:
            await handle.result(timeout=DEADLINE)
    finally:
        await processor.stop()
    assert failed.value.job_id == handle.id
    assert failed.value.error == "bad number 7"
    assert failed.value.error_type == "ValueError"
    assert "ValueError: bad number 7" in str(failed.value)
    assert isinstance(failed.value, jobq.JobqError)


async def test_result_of_a_cancelled_job_raises_job_cancelled(app: jobq.App, queue: jobq.Queue) -> None:
    @app.task(name="later")
    def later() -> None: ...

    handle = await later.options(delay=3600).defer()
    waiting = asyncio.create_task(handle.result(timeout=DEADLINE))
    await asyncio.sleep(0.05)
    assert await handle.cancel()
    with pytest.raises(jobq.JobCancelled):
        await waiting


async def test_result_times_out_with_a_timeout_error(app: jobq.App) -> None:
    @app.task(name="never")
    def never() -> None: ...

    handle = await never.defer()
    with pytest.raises(TimeoutError) as timed_out:
        await handle.result(timeout=0.1)
    assert isinstance(timed_out.value, jobq.ResultTimeout) and isinstance(timed_out.value, jobq.JobqError)
    assert "did not finish within 0.1 s (it is pending)" in str(timed_out.value)
    with pytest.raises(jobq.InvalidOption):
        await handle.result(timeout=-1)


async def test_result_of_a_removed_job_raises_job_not_found(app: jobq.App, queue: jobq.Queue) -> None:
    @app.task(name="gone")
    def gone() -> None: ...

    handle = await gone.defer()
    waiting = asyncio.create_task(handle.result(timeout=DEADLINE))
    await asyncio.sleep(0.05)
    await queue.remove(handle.id)
    with pytest.raises(jobq.JobNotFound):
        await waiting


@pytest.mark.shared_store
async def test_result_wakes_on_the_stores_announcement_not_a_poll(
    make_queue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another queue object (another process, as far as the store knows)
    completes the job; with the safety re-read pushed out of reach, only the
    store's finish announcement can end the wait in time."""
    monkeypatch.setattr(results, "RECHECK", 3600.0)
    monkeypatch.setattr(results, "FIRST_RECHECK", 3600.0)
    waiter_queue, worker_queue = await make_queue(), await make_queue()
    app = jobq.App(queue=waiter_queue)

    @app.task(name="quick")
    def quick(n: int) -> int:
        return n + 1

    handle = await quick.defer(41)
    waiting = asyncio.create_task(handle.result(timeout=DEADLINE))
    await asyncio.sleep(0.2)  # the waiter is listening
    (job,) = await worker_queue.claim(1)
    await worker_queue.complete(job, 42)
    assert await waiting == 42


async def test_many_waiters_on_one_queue_are_all_woken(app: jobq.App, queue: jobq.Queue) -> None:
    @app.task(name="double")
    def double(n: int) -> int:
        return 2 * n

    handles = [await double.defer(i) for i in range(20)]
    waiting = [asyncio.create_task(h.result(timeout=DEADLINE)) for h in handles]
    processor = await start(app, queue)
    try:
        assert await asyncio.gather(*waiting) == [2 * i for i in range(20)]
    finally:
        await processor.stop()


async def test_get_returns_a_handle_on_any_job(app: jobq.App, queue: jobq.Queue) -> None:
    @app.task(name="day")
    def day(at: datetime) -> date:
        return at.date()

    deferred = await day.defer(datetime(2026, 3, 1, 23, 0, tzinfo=UTC))
    found = await app.get(deferred.id)
    processor = await start(app, queue)
    try:
        assert await found.result(timeout=DEADLINE) == date(2026, 3, 1)  # decoded by the task's return type
    finally:
        await processor.stop()
    with pytest.raises(jobq.JobNotFound):
        await app.get("nope")


# -- the worker side ------------------------------------------------------------------------


async def test_tasks_retry_policy_and_timeout_apply_at_the_worker(app: jobq.App, queue: jobq.Queue) -> None:
    calls: list[float] = []

    @app.task(name="flaky", max_attempts=3, retry=jobq.FixedDelays([0]))
    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RuntimeError("not yet")
        return "ok"

    @app.task(name="slow", max_attempts=1, timeout=0.2)
    async def slow() -> None:
        await asyncio.sleep(30)

    flaky_handle, slow_handle = await flaky.defer(), await slow.defer()
    processor = await start(app, queue)
    try:
        assert await flaky_handle.result(timeout=DEADLINE) == "ok"
        with pytest.raises(jobq.JobFailed, match="timeout") as failed:
            await slow_handle.result(timeout=DEADLINE)
    finally:
        await processor.stop()
    assert len(calls) == 3  # the task's own policy (no delay), not the processor's 1 s
    assert failed.value.error_type == "JobTimeout"


async def test_a_job_of_an_unregistered_task_fails_once_and_the_worker_goes_on(
    app: jobq.App, queue: jobq.Queue
) -> None:
    @app.task(name="known")
    def known() -> str:
        return "ran"

    stray = await queue.enqueue("unknown.task", {}, max_attempts=5)
    handle = await known.defer()
    processor = await start(app, queue)
    try:
        assert await handle.result(timeout=DEADLINE) == "ran"
        failed = await queue.wait(stray.id, timeout=DEADLINE)
    finally:
        await processor.stop()
    assert failed.status is JobStatus.FAILED and failed.attempts == 1
    assert failed.error == "No handler registered for job type: unknown.task"


async def test_a_stored_payload_that_no_longer_fits_fails_naming_the_mismatch(
    app: jobq.App, queue: jobq.Queue
) -> None:
    @app.task(name="send")
    def send(to: str, count: int) -> str:
        return to * count

    # Jobs queued by older code (or another program), before the signature changed.
    missing = await queue.enqueue("send", {"to": "a"}, max_attempts=3)
    extra = await queue.enqueue("send", {"to": "a", "count": 1, "cc": "b"})
    wrong = await queue.enqueue("send", {"to": "a", "count": "two"})
    not_object = await queue.enqueue("send", ["a", 1])
    good = await send.defer("ab", 2)
    processor = await start(app, queue)
    try:
        assert await good.result(timeout=DEADLINE) == "abab"  # the worker went on
        outcomes = {j.id: await queue.wait(j.id, timeout=DEADLINE) for j in (missing, extra, wrong, not_object)}
    finally:
        await processor.stop()
    for job in outcomes.values():
        assert job.status is JobStatus.FAILED and job.attempts == 1  # for good: a retry cannot help
    assert "lacks the required argument 'count'" in (outcomes[missing.id].error or "")
    assert "takes no argument 'cc'" in (outcomes[extra.id].error or "")
    assert "argument 'count' does not fit int: Expected `int`, got `str`" in (outcomes[wrong.id].error or "")
    assert "takes its arguments as a JSON object, but the job holds a list" in (outcomes[not_object.id].error or "")


async def test_fail_job_fails_for_good_whatever_attempts_are_left(app: jobq.App, queue: jobq.Queue) -> None:
    @app.task(name="refuse", max_attempts=5)
    def refuse() -> None:
        raise jobq.FailJob("the account is closed")

    handle = await refuse.defer()
    processor = await start(app, queue)
    try:
        with pytest.raises(jobq.JobFailed, match="the account is closed"):
            await handle.result(timeout=DEADLINE)
    finally:
        await processor.stop()
    assert handle.job.attempts == 1 and handle.job.status is JobStatus.FAILED


# -- unique jobs, limits, batches --------------------------------------------------------------


async def test_unique_jobs_through_the_task_api(app: jobq.App) -> None:
    @app.task(name="sync_account")
    def sync_account(account: int) -> None: ...

    first = await sync_account.options(unique_key="account:1").defer(1)
    again = await sync_account.options(unique_key="account:1").defer(1)
    assert not first.deduplicated and again.deduplicated and again.id == first.id


async def test_a_per_key_limit_takes_its_key_from_the_argument_of_that_name(
    app: jobq.App, queue: jobq.Queue
) -> None:
    @app.task(name="call", limits=[jobq.KeyLimit(key="provider", concurrency=1)])
    async def call(provider: str, n: int) -> None: ...

    handle = await call.defer("twilio", 1)
    told = await call.options(metadata={"provider": "other"}).defer("twilio", 2)
    assert handle.job.metadata == {"provider": "twilio"}
    assert told.job.metadata == {"provider": "other"}  # the call's metadata wins
    processor = app.processor(queue)
    assert [(limit.key, limit.type) for limit in processor.limits] == [("provider", "call")]


async def test_defer_many_stores_all_or_none(app: jobq.App, queue: jobq.Queue) -> None:
    @app.task(name="square")
    def square(n: int) -> int:
        return n * n

    handles = await app.defer_many([square.job(n) for n in range(5)])
    assert [h.job.data for h in handles] == [{"n": n} for n in range(5)]
    with pytest.raises(jobq.InvalidJob):
        await app.defer_many([square.job(1), square.options(priority=2**40).job(2)])
    assert (await queue.list_jobs()).total == 5
    processor = await start(app, queue)
    try:
        assert [await h.result(timeout=DEADLINE) for h in handles] == [0, 1, 4, 9, 16]
    finally:
        await processor.stop()


async def test_calling_a_task_runs_the_function_here(app: jobq.App, queue: jobq.Queue) -> None:
    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    assert add(2, 3) == 5
    assert (await queue.list_jobs()).total == 0
