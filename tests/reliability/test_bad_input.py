"""Bad input, fuzzed: hostile payloads, job types and queue names, and rows
corrupted straight in the database.

What must hold on every backend:
- a bad payload (NaN, nesting too deep, a lone surrogate, an object JSON
  cannot hold, over the size limit) raises ``InvalidJob`` naming the problem,
  before anything is written: the row count and the schema are unchanged;
- a hostile name (SQL fragments, quotes, HTML, 10,000 characters) is stored
  verbatim or refused with ``InvalidJob``; no SQL from input ever runs (the
  schema checksum and an application table beside the jobs are unchanged);
- a row whose JSON was damaged in the database fails once, for good, with an
  error saying why; the worker keeps running and the other jobs complete.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from inproc_harness import DEADLINE, Harness, fuzz_settings

import jobq
from jobq import JobStatus

LIMIT = 2048  # max_payload_bytes of the queues under test: small, so over-size cases are cheap
QUIET = 0.5  # seconds to watch for something that must not happen


# -- strategies ---------------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20) | st.floats(
    allow_nan=False, allow_infinity=False
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def embedded(bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``bad`` somewhere inside an otherwise valid JSON document."""

    def place(args: tuple[Any, list[Any], str, int]) -> Any:
        value, siblings, key, how = args
        if how == 0:
            return value
        if how == 1:
            return [*siblings, value]
        if how == 2:
            return {"ok": siblings, key: value}
        return {"outer": [{"inner": {key: value}}], "n": len(siblings)}

    return st.tuples(bad, st.lists(json_leaf, max_size=3), st.text(max_size=6), st.integers(0, 3)).map(place)


surrogate_text = st.builds(
    lambda a, s, b: a + s + b,
    st.text(max_size=8),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.text(max_size=8),
)


class Deep:
    """A nested value built on use (Hypothesis, which raises the recursion
    limit by 2,000 frames while it runs, could not print the value itself)."""

    def __init__(self, depth: int, kind: int) -> None:
        self.depth, self.kind = depth, kind

    def __repr__(self) -> str:
        return f"Deep({self.depth}, {self.kind})"

    def build(self) -> Any:
        return nested(self.depth, self.kind)


def nested(depth: int, kind: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == 0 else {"k": value}
    return value


def oversize(char: str, extra: int) -> str:
    """A string whose JSON encoding is just over ``LIMIT`` bytes."""
    width = len(char.encode("utf-8"))
    return char * ((LIMIT - 2) // width + 1 + extra)


# (strategy of bad values, fragments the error message must contain)
BAD_PAYLOADS: dict[str, tuple[st.SearchStrategy[Any], tuple[str, ...]]] = {
    "nan": (embedded(st.sampled_from([math.nan, math.inf, -math.inf])), ("not JSON-serialisable",)),
    "surrogate value": (embedded(surrogate_text), ("not valid Unicode", "surrogate")),
    "surrogate key": (
        st.builds(lambda k, v: {k: v}, surrogate_text, json_value),
        ("not valid Unicode", "surrogate"),
    ),
    "too deep": (
        st.builds(Deep, st.integers(5_000, 30_000), st.integers(0, 1)),
        ("nested too deeply",),
    ),
    "not JSON": (
        embedded(st.sampled_from([object(), {1, 2}, b"bytes", complex(1, 2), frozenset(), Path("/")])),
        ("not JSON-serialisable",),
    ),
    "huge int": (st.integers(4_400, 6_000).map(lambda n: 10**n), ("not JSON-serialisable",)),
    "over size": (
        st.builds(oversize, st.sampled_from(["x", "é", "한", "😀", "\x01"]), st.integers(0, 40)),
        ("bytes encoded", f"the limit is {LIMIT}"),
    ),
}


def snapshot(harness: Harness, queue: jobq.Queue) -> tuple[int, str]:
    return harness.rows(queue), harness.schema_checksum()


@pytest.mark.parametrize("kind", sorted(BAD_PAYLOADS))
def test_a_bad_payload_is_rejected_before_any_write(harness: Harness, kind: str) -> None:
    queue = harness.open(max_payload_bytes=LIMIT)
    if harness.backend != "memory":
        harness.add_canary()
    harness.run(queue.enqueue("good", {"n": 1}))
    before = snapshot(harness, queue)
    strategy, fragments = BAD_PAYLOADS[kind]

    @fuzz_settings(12, 200)
    @given(bad=strategy, as_metadata=st.booleans())
    def check(bad: Any, as_metadata: bool) -> None:
        if isinstance(bad, Deep):
            bad = bad.build()
        where = "payload"
        if as_metadata and kind != "over size":
            where = "metadata"
            call = queue.enqueue("t", 1, metadata={"m": bad})
        else:
            call = queue.enqueue("t", bad)
        with pytest.raises(jobq.InvalidJob) as info:
            harness.run(call)
        error = info.value
        assert isinstance(error, ValueError) and isinstance(error, jobq.JobqError)
        message = str(error)
        assert message.startswith(where), message
        for fragment in fragments:
            assert fragment in message, message
        # A batch with one bad job stores none of them.
        batch = [jobq.NewJob("t", 1), jobq.NewJob("t", bad), jobq.NewJob("t", 2)]
        with pytest.raises(jobq.InvalidJob):
            harness.run(queue.enqueue_many(batch))
        assert snapshot(harness, queue) == before

    check()
    if harness.backend != "memory":
        assert harness.canary() == [1, 2, 3]
    assert harness.run(queue.counts())[JobStatus.PENDING] == 1


def test_the_size_limit_is_exact_and_counts_utf8_bytes(harness: Harness) -> None:
    queue = harness.open(max_payload_bytes=LIMIT)
    for char in ("x", "é", "한", "😀"):
        width = len(char.encode("utf-8"))
        fits = char * ((LIMIT - 2) // width)  # 2 bytes of quotes
        job = harness.run(queue.enqueue("t", fits))
        stored = harness.run(queue.get_job(job.id))
        assert stored is not None and stored.data == fits
        before = harness.rows(queue)
        over = fits + char
        size = len(json.dumps(over, ensure_ascii=False).encode("utf-8"))
        assert size > LIMIT
        with pytest.raises(jobq.InvalidJob, match=f"payload is {size} bytes encoded; the limit is {LIMIT}"):
            harness.run(queue.enqueue("t", over))
        assert harness.rows(queue) == before


# -- hostile names --------------------------------------------------------------------

HOSTILE = [
    "'; DROP TABLE jobs; --",
    "'; DROP TABLE kmsg_jobs; --",
    "x'); DELETE FROM app_canary; --",
    "\" OR 1=1 --",
    "Robert'); DROP TABLE app_canary;--",
    "%s",
    "%(id)s",
    "{t}",
    "$1",
    "?",
    "\\",
    "\\'",
    "`rm -rf /`",
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)>",
    "\"><svg onload=alert(1)>",
    "-- comment",
    "/* */",
    "default",
    "pending' OR status='failed",
    "\u202etxt.exe",
    "名前",
    "😀",
    "\t\n",
    " ",
]

hostile_name = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(alphabet=st.characters(exclude_characters="\x00"), min_size=0, max_size=300),
    st.builds(lambda s, n: (s * n)[:n], st.sampled_from(HOSTILE[:6]), st.integers(250, 10_000)),
    st.just("x" * 10_000),
    st.builds(lambda a, b: a + "\x00" + b, st.sampled_from(HOSTILE), st.text(max_size=5)),
)


def type_is_valid(name: str) -> bool:
    return bool(name.strip()) and len(name) <= 255 and "\x00" not in name


def test_hostile_job_types_and_queue_names(harness: Harness) -> None:
    queue = harness.open(max_payload_bytes=LIMIT)
    if harness.backend != "memory":
        harness.add_canary()
    schema = harness.schema_checksum()

    @fuzz_settings(40, 600)
    @given(job_type=hostile_name, queue_name=hostile_name.filter(lambda s: "\x00" not in s))
    def check(job_type: str, queue_name: str) -> None:
        rows = harness.rows(queue)
        try:
            job = harness.run(queue.enqueue(job_type, {"t": job_type}, queue=queue_name, metadata={"q": queue_name}))
        except jobq.InvalidJob as exc:
            assert harness.rows(queue) == rows
            message = str(exc)
            reasons = []  # what the message may lead with, for this input
            if not type_is_valid(job_type):
                reasons.append("job type")
            if not queue_name.strip():
                reasons.append("queue must be")
            if len(queue_name) > 255:  # refused by the queue, or by PostgreSQL's index
                reasons += ["queue name", "PostgreSQL cannot store this job: index row"]
            assert reasons and message.startswith(tuple(reasons)), (reasons, message)
            return
        assert type_is_valid(job_type) and queue_name.strip(), (job_type, queue_name)
        assert harness.rows(queue) == rows + 1
        stored = harness.run(queue.get_job(job.id))
        assert stored is not None
        assert (stored.type, stored.queue, stored.data, stored.metadata) == (
            job_type, queue_name, {"t": job_type}, {"q": queue_name},
        )
        [claimed] = harness.run(queue.claim(1, queues=[queue_name]))
        assert claimed.id == job.id and claimed.type == job_type
        harness.run(queue.complete(claimed, {"echo": queue_name}))
        done = harness.run(queue.get_job(job.id))
        assert done is not None and done.status is JobStatus.COMPLETED and done.result == {"echo": queue_name}
        page = harness.run(queue.list_jobs(type=job_type, queue=queue_name))
        assert [j.id for j in page.jobs] == [job.id]
        harness.run(queue.remove(job.id))

    check()
    assert harness.schema_checksum() == schema
    if harness.backend != "memory":
        assert harness.canary() == [1, 2, 3]


def test_jobs_of_hostile_types_fail_once_with_a_clear_error_under_a_worker(harness: Harness) -> None:
    """A processor that meets jobs of types it has no handler for (SQL, HTML,
    quotes, 255 characters) fails each once, saying which type, and keeps
    running the jobs it knows."""
    queue = harness.open()
    types = [t for t in HOSTILE if t.strip()] + ["'" * 255, "<" * 255, "x" * 255]

    async def scenario() -> None:
        hostile = [await queue.enqueue(t, {"t": t}, max_attempts=3) for t in types]
        known = [await queue.enqueue("ok", i) for i in range(3)]
        processor = jobq.JobProcessor(queue, concurrency=3, poll_interval=0.05)
        processor.handle("ok", lambda job: job.data)
        await processor.start()
        try:
            want = {j.id: JobStatus.FAILED for j in hostile} | {j.id: JobStatus.COMPLETED for j in known}
            jobs = await settle(queue, list(want), want)
            late = await queue.enqueue("ok", "late")
            await settle(queue, [late.id], {late.id: JobStatus.COMPLETED})
        finally:
            await processor.stop(timeout=5)
        for job in hostile:
            stored = jobs[job.id]
            assert stored.type == job.type
            assert stored.error == f"No handler registered for job type: {job.type}"
            assert stored.attempts == 1 and stored.lost_count == 0

    harness.run(scenario())
    if harness.backend != "memory":
        assert harness.sql(f"SELECT count(*) FROM {harness.table}")[0][0] == len(types) + 4


# -- corrupted rows -----------------------------------------------------------------

invalid_json = st.one_of(
    st.sampled_from(["", "{", "[1,", "{not json", "undefined", "{'a': 1}", "[1 2]", "\"unterminated", "}{"]),
    st.text(max_size=30).filter(lambda s: not _parses(s)),
    # Deeper than json can decode, even under Hypothesis's raised recursion limit.
    st.integers(5_000, 100_000).map(lambda n: "[" * n + "]" * n),
    st.integers(5_000, 100_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
)


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


async def settle(queue: jobq.Queue, ids: list[str], want: dict[str, JobStatus]) -> dict[str, jobq.Job[Any]]:
    """Waits until every job in ``ids`` reached its status in ``want``."""
    deadline = time.monotonic() + DEADLINE
    while True:
        jobs = {i: await queue.get_job(i) for i in ids}
        if all(j is not None and j.status is want[i] for i, j in jobs.items()):
            return jobs  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError({i: (j.status, j.error) if j else None for i, j in jobs.items()})
        await asyncio.sleep(0.02)


def run_corrupted(harness: Harness, corrupt: list[tuple[str, str]]) -> None:
    """Enqueues good jobs and one job per ``(column, text)`` corruption, writes
    the text straight into that column, and runs a processor: the damaged
    jobs fail once with a clear error, the others complete, the worker lives."""
    queue = harness.open()
    good_ids: list[str] = []
    bad_ids: list[str] = []

    async def scenario() -> None:
        for i in range(6):
            good_ids.append((await queue.enqueue("ok", {"i": i}, priority=i % 3)).id)
        for n, _ in enumerate(corrupt):
            bad_ids.append((await queue.enqueue("ok", {"bad": n}, priority=1)).id)

    harness.run(scenario())
    for job_id, (column, text) in zip(bad_ids, corrupt, strict=True):
        harness.sql(f"UPDATE {harness.table} SET {column} = ? WHERE id = ?", (text, job_id))

    async def work() -> None:
        processor = jobq.JobProcessor(queue, concurrency=3, poll_interval=0.05, batch_size=4)
        ran: list[Any] = []
        failed: list[str] = []
        processor.on("job_failed", lambda e: failed.append(e.job.id if e.job else ""))

        @processor.handler("ok")
        async def ok(job: jobq.Job[Any]) -> Any:
            ran.append(job.data)
            return job.data

        await processor.start()
        try:
            want = {i: JobStatus.COMPLETED for i in good_ids} | {i: JobStatus.FAILED for i in bad_ids}
            jobs = await settle(queue, good_ids + bad_ids, want)
            for job_id, (column, _) in zip(bad_ids, corrupt, strict=True):
                job = jobs[job_id]
                assert job.attempts == 1 and job.lost_count == 0, job
                assert job.error is not None and f"job {job_id!r} cannot be decoded" in job.error, job.error
                what = "payload" if column == "data" else column
                assert f"its {what} is" in job.error, job.error
                assert "not valid JSON" in job.error or "nested too deeply" in job.error, job.error
            # The worker is alive: a job enqueued now runs.
            late = await queue.enqueue("ok", {"late": True})
            await settle(queue, [late.id], {late.id: JobStatus.COMPLETED})
            # And the damaged jobs stay failed, run never and once failed.
            await asyncio.sleep(QUIET)
            for job_id in bad_ids:
                job = await queue.get_job(job_id)
                assert job is not None and job.status is JobStatus.FAILED and job.attempts == 1
            assert all({"bad": n} not in ran for n in range(len(bad_ids)))
            assert sorted(r["i"] for r in ran if "i" in r) == list(range(6))
        finally:
            await processor.stop(timeout=5)

    harness.run(work())


@pytest.mark.shared_store
def test_rows_corrupted_in_the_database_fail_once_and_the_worker_lives(harness: Harness) -> None:
    @fuzz_settings(3, 25)
    @given(st.lists(st.tuples(st.sampled_from(["data", "metadata"]), invalid_json), min_size=2, max_size=6))
    def check(corrupt: list[tuple[str, str]]) -> None:
        harness.run(harness.queues[0].clear()) if harness.queues else None
        run_corrupted(harness, corrupt)

    check()


@pytest.mark.shared_store
def test_regression_a_deeply_nested_row_does_not_stop_the_claim_loop(harness: Harness) -> None:
    """A stored payload nested deeper than json can decode used to raise
    RecursionError out of ``claim``, which the claim loop does not catch: the
    processor stopped claiming for good and the batch stayed ``processing``."""
    # Deeper than any recursion limit in force: another test (Hypothesis)
    # may have left it raised, and json decodes as deep as it allows.
    deep = max(5_000, 10 * sys.getrecursionlimit())
    run_corrupted(harness, [("data", "[" * 20 * deep + "]" * 20 * deep), ("metadata", '{"a":' * deep + "1" + "}" * deep)])


def test_regression_nesting_just_under_the_encoder_limit_never_kills_a_worker(harness: Harness) -> None:
    """A payload nested just shallowly enough to be encoded where the caller
    stands may be too deep to decode deeper in a worker's stack: the job
    either runs with its payload intact or fails once, saying why."""
    queue = harness.open()

    async def scenario() -> None:
        accepted: dict[str, Any] = {}
        for depth in range(900, 1000, 7):
            value = nested(depth, depth % 2)
            try:
                accepted[(await queue.enqueue("deep", value)).id] = value
            except jobq.InvalidJob as exc:
                assert "nested too deeply" in str(exc)
        good = await queue.enqueue("deep", 1)
        processor = jobq.JobProcessor(queue, concurrency=2, poll_interval=0.05)
        processor.handle("deep", lambda job: "ran")
        await processor.start()
        try:
            ids = [*accepted, good.id]
            deadline = time.monotonic() + DEADLINE
            while True:
                jobs = [await queue.get_job(i) for i in ids]
                if all(j is not None and j.status in (JobStatus.COMPLETED, JobStatus.FAILED) for j in jobs):
                    break
                assert time.monotonic() < deadline, [(j.status, j.error) for j in jobs if j]
                await asyncio.sleep(0.02)
            for job in jobs:
                assert job is not None
                if job.status is JobStatus.FAILED:
                    assert job.attempts == 1 and job.error is not None and "nested too deeply" in job.error
                else:
                    assert job.result == "ran"
            assert jobs[-1] is not None and jobs[-1].status is JobStatus.COMPLETED
        finally:
            await processor.stop(timeout=5)

    harness.run(scenario())


# -- regressions for single bugs -----------------------------------------------------------


@pytest.mark.parametrize("where", ["payload", "payload key", "metadata", "type"])
def test_regression_a_lone_surrogate_is_invalid_job_on_every_backend(harness: Harness, where: str) -> None:
    """Lone surrogates were accepted by the memory backend and raised a bare
    UnicodeEncodeError (not a JobqError) from SQLite and PostgreSQL."""
    queue = harness.open()
    calls = {
        "payload": lambda: queue.enqueue("t", {"a": "x\ud800y"}),
        "payload key": lambda: queue.enqueue("t", {"\udfff": 1}),
        "metadata": lambda: queue.enqueue("t", 1, metadata={"a": "\udc80"}),
        "type": lambda: queue.enqueue("t\ud83d", 1),
    }
    with pytest.raises(jobq.InvalidJob, match="not valid Unicode: it holds the lone surrogate"):
        harness.run(calls[where]())
    assert harness.rows(queue) == 0


def test_regression_a_nul_in_a_job_type_is_invalid_job_on_every_backend(harness: Harness) -> None:
    """PostgreSQL cannot store a NUL; the other backends accepted one."""
    queue = harness.open()
    with pytest.raises(jobq.InvalidJob, match="job type must not contain NUL characters"):
        harness.run(queue.enqueue("send\x00message", 1))
    assert harness.rows(queue) == 0


def test_regression_a_result_or_error_with_a_lone_surrogate_is_recorded(harness: Harness) -> None:
    """A handler returning a lone surrogate, or raising with one in its
    message, crashed the job's task with UnicodeEncodeError on SQLite and
    PostgreSQL: the outcome was lost and the job came back after its lease
    as 'worker was lost', running again."""
    queue = harness.open()

    async def scenario() -> None:
        returns = await queue.enqueue("returns", 1, max_attempts=1)
        raises = await queue.enqueue("raises", 1, max_attempts=1)
        processor = jobq.JobProcessor(queue, concurrency=2, poll_interval=0.05)
        processor.handle("returns", lambda job: {"x": "a\ud800b", "\udfff": [1]})

        def fail(job: jobq.Job[Any]) -> None:
            raise ValueError("bad \ud800 thing")

        processor.handle("raises", fail)
        await processor.start()
        try:
            jobs = await settle(
                queue,
                [returns.id, raises.id],
                {returns.id: JobStatus.COMPLETED, raises.id: JobStatus.FAILED},
            )
        finally:
            await processor.stop(timeout=5)
        assert jobs[returns.id].result == {"x": "a\ud800b", "\udfff": [1]}
        assert jobs[raises.id].error == "bad \ufffd thing"
        assert jobs[raises.id].lost_count == 0 and jobs[raises.id].attempts == 1

    harness.run(scenario())


def test_regression_a_queue_name_too_long_for_an_index_is_refused_at_once(harness: Harness) -> None:
    """On PostgreSQL a queue name too large for its index (10,000 random
    characters) was taken for a transient error: the enqueue retried for
    ``pool_timeout`` (30 s) and then raised StoreUnavailable ('no connection
    to PostgreSQL'). It is refused at once with InvalidJob."""
    queue = harness.open()
    name = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(10_000))
    started = time.monotonic()
    try:
        job = harness.run(queue.enqueue("t", 1, queue=name))
    except jobq.InvalidJob as exc:
        assert str(exc).startswith("queue name") or (harness.backend == "postgres" and "index row" in str(exc))
        assert harness.rows(queue) == 0
    else:
        stored = harness.run(queue.get_job(job.id))
        assert stored is not None and stored.queue == name
    assert time.monotonic() - started < 10


# Regressions: queue names and unique keys were not checked like job types,
# and a SQLite row holding invalid UTF-8 stopped every claim that met it.


@pytest.mark.parametrize(
    "field,value",
    [("queue", "q" * 10_000), ("queue", "q\x00"), ("queue", "q\ud800"), ("unique_key", "k\ud800")],
)
def test_regression_queue_names_and_unique_keys_are_checked_like_types(
    harness: Harness, field: str, value: str
) -> None:
    queue = harness.open()
    with pytest.raises(jobq.InvalidJob) as info:
        harness.run(queue.enqueue("t", 1, **{field: value}))
    assert field in str(info.value)
    assert harness.rows(queue) == 0


def test_regression_invalid_utf8_written_into_a_sqlite_row(tmp_path: Path) -> None:
    """Bytes that are not UTF-8, written into a text column by another
    program, make every claim that meets the row raise (the worker retries
    forever and the jobs behind it never run); ``get_job`` raises
    StoreUnavailable. (PostgreSQL validates UTF-8 on write.)"""
    harness = Harness("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path)
    try:
        utf8_scenario(harness)
    finally:
        harness.close()


def utf8_scenario(harness: Harness) -> None:
    queue = harness.open()
    bad = harness.run(queue.enqueue("ok", 1, priority=9))
    harness.sql(f"UPDATE {harness.table} SET data = CAST(x'7b2280ff223a317d' AS TEXT) WHERE id = ?", (bad.id,))
    good = harness.run(queue.enqueue("ok", 2))

    async def scenario() -> None:
        processor = jobq.JobProcessor(queue, concurrency=1, poll_interval=0.05)
        processor.handle("ok", lambda job: job.data)
        await processor.start()
        try:
            jobs = await asyncio.wait_for(
                settle(queue, [good.id, bad.id], {good.id: JobStatus.COMPLETED, bad.id: JobStatus.FAILED}), 10
            )
        finally:
            await processor.stop(timeout=5)
        assert jobs[bad.id].error is not None and "cannot be decoded" in jobs[bad.id].error

    harness.run(scenario())
