"""Model-based test: a Hypothesis state machine drives enqueue (one at a
time, in batches, with unique keys), claim, dequeue (with the rescue it
does itself), heartbeat, complete, complete_and_claim (the worker's own
completion path), fail, release, cancel, retry, remove, crash, lease expiry
and clock moves against each backend and against :mod:`model_reference`,
and checks after every step that:

- no job is lost: the store holds exactly the model's jobs, each in the
  model's status (pending and delayed told apart by the clock);
- every status change the store shows is a legal one (see
  ``model_reference.LEGAL``), as is every change the model makes;
- ``attempts <= max_attempts`` always;
- a stale claim (its lease rescued, or the job finished) never completes,
  fails or renews anything: it raises ``LeaseLost`` and changes nothing;
- a claim takes ready jobs only, highest priority first, then earliest due.

A second variant runs two queue objects on one store (SQLite, PostgreSQL):
each rule picks one, and two rules race them concurrently (two claims; a
completion against another queue's rescue sweep): no job is claimed twice,
and exactly one of a completion and a rescue wins.

Under ``JOBQ_CHAOS_SCALE=full`` the examples are random and failures are
saved (see ``inproc_harness``); in CI they are the same every run.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from inproc_harness import Harness, examples, fuzz_settings
from model_reference import CANCELLED, COMPLETED, FAILED, LEGAL, PROCESSING, WAITING, Model, ModelJob

import jobq
from jobq import JobStatus

LEASE_MS = 10_500  # a lease never ends exactly on a whole second, where the clock moves
MAX_LOST = 3
START_MS = 1_700_000_000_000
RESCUE_EVERY_MS = 1_000  # claim's own sweep, at most once a second (jobq.rescue.RESCUE_INTERVAL)
KEYS = st.sampled_from([None, None, None, "k1", "k2"])  # unique keys, mostly none


class MovableClock:
    """A clock the test sets to any time, backwards too (``jobq.FakeClock``
    only moves forward)."""

    def __init__(self, ms: int = START_MS) -> None:
        self.ms = ms

    def now(self) -> float:
        return self.ms / 1000

    def on_advance(self, listener: Any) -> Any:  # processors subscribe; none runs here
        return lambda: None


PUBLIC = {
    COMPLETED: JobStatus.COMPLETED,
    FAILED: JobStatus.FAILED,
    CANCELLED: JobStatus.CANCELLED,
    PROCESSING: JobStatus.PROCESSING,
}


STORED = {
    JobStatus.PENDING: WAITING,
    JobStatus.DELAYED: WAITING,
    JobStatus.PROCESSING: PROCESSING,
    JobStatus.COMPLETED: COMPLETED,
    JobStatus.FAILED: FAILED,
    JobStatus.CANCELLED: CANCELLED,
}


def public_status(job: ModelJob, now: int) -> JobStatus:
    if job.status == WAITING:
        return JobStatus.DELAYED if job.process_at > now else JobStatus.PENDING
    return PUBLIC[job.status]


def make_machine(harness: Harness, queues: int = 1) -> type[RuleBasedStateMachine]:
    clock = MovableClock()
    opened = [
        harness.open(clock=clock, lease=LEASE_MS / 1000, max_lost_leases=MAX_LOST) for _ in range(queues)
    ]
    queue = opened[0]
    # When each queue's claims sweep next (jobq.Queue keeps it across examples, so this does too).
    next_rescue = [0] * queues
    pick = st.integers(0, queues - 1)

    class QueueMachine(RuleBasedStateMachine):
        claims = Bundle("claims")  # Job objects returned by claim: live or stale

        def __init__(self) -> None:
            super().__init__()
            harness.run(queue.clear())
            clock.ms = START_MS
            self.model = Model(MAX_LOST)
            self.seen: dict[str, str] = {}  # job id -> stored status last seen (pending/delayed: waiting)

        # -- rules ---------------------------------------------------------------

        @initialize()
        def start(self) -> None:
            assert harness.run(queue.size()) == 0

        @rule(
            priority=st.integers(-2, 2),
            delay=st.sampled_from([0, 0, 0, 1, 5, 30]),
            max_attempts=st.integers(1, 4),
            data=st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
            key=KEYS,
            which=pick,
        )
        def enqueue(
            self, priority: int, delay: int, max_attempts: int, data: dict[str, int], key: str | None, which: int
        ) -> None:
            job = harness.run(
                opened[which].enqueue("t", data, priority=priority, delay=delay, max_attempts=max_attempts,
                                      unique_key=key)
            )  # fmt: skip
            self.added(job, ModelJob(job.id, priority, max_attempts, clock.ms + delay * 1000, data, unique_key=key))

        @rule(
            specs=st.lists(
                st.tuples(st.integers(-2, 2), st.sampled_from([0, 0, 5]), st.integers(1, 4), KEYS),
                min_size=1, max_size=4,
            ),
            which=pick,
        )  # fmt: skip
        def enqueue_many(self, specs: list[tuple[int, int, int, str | None]], which: int) -> None:
            news = [
                jobq.NewJob("t", {"n": i}, priority=p, delay=d, max_attempts=m, unique_key=k)
                for i, (p, d, m, k) in enumerate(specs)
            ]
            jobs = harness.run(opened[which].enqueue_many(news))
            assert len(jobs) == len(news)
            for i, (job, (p, d, m, k)) in enumerate(zip(jobs, specs, strict=True)):
                self.added(job, ModelJob(job.id, p, m, clock.ms + d * 1000, {"n": i}, unique_key=k))

        @rule(target=claims, limit=st.integers(1, 3), which=pick)
        def claim(self, limit: int, which: int) -> Any:
            now = clock.ms
            ready = self.model.ready(now)
            got = harness.run(opened[which].claim(limit, rescue=False))
            assert len(got) == min(limit, len(ready)), (len(got), [j.id for j in ready])
            return self.took(got, ready, now)

        @rule(target=claims, which=pick)
        def dequeue(self, which: int) -> Any:
            """A claim that sweeps expired leases first, at most once a second."""
            now = clock.ms
            if now >= next_rescue[which]:
                self.swept(which, now)
            ready = self.model.ready(now)
            got = harness.run(opened[which].dequeue())
            assert (got is None) == (not ready), (got, [j.id for j in ready])
            return self.took([got] if got else [], ready, now)

        @rule(held=claims)
        def heartbeat(self, held: jobq.Job[Any] | None) -> None:
            if held is None:
                return
            stands = held.id in self.model.jobs and self.model.holds(held.id, held.lease_token)
            gone = harness.run(queue.extend_leases([held]))
            assert gone == (set() if stands else {held.id}), (gone, stands)
            if stands:
                self.model.jobs[held.id].lease_until = clock.ms + LEASE_MS

        @rule(held=consumes(claims), result=st.integers())
        def complete(self, held: jobq.Job[Any] | None, result: int) -> None:
            if held is None:
                return
            if self.stands(held):
                harness.run(queue.complete(held, {"r": result}))
                self.model.complete(held.id)
                stored = harness.run(queue.get_job(held.id))
                assert stored is not None and stored.result == {"r": result}
            else:
                self.stale(lambda: harness.run(queue.complete(held, {"r": result})), held)

        @rule(target=claims, held=consumes(claims), limit=st.integers(0, 3), which=pick)
        def complete_and_claim(self, held: jobq.Job[Any] | None, limit: int, which: int) -> Any:
            """The worker's path: its completions and its next claim in one go."""
            if held is None:
                return None
            stands = self.stands(held)
            before = harness.run(queue.get_job(held.id))
            now = clock.ms
            if stands:
                self.model.complete(held.id)
            ready = self.model.ready(now)
            errors, got = harness.run(opened[which].complete_and_claim([(held, "done")], limit))
            if stands:
                assert errors == [None]
            else:
                assert len(errors) == 1 and isinstance(errors[0], self.stale_error(held)), errors
            assert len(got) == min(limit, len(ready)), (len(got), [j.id for j in ready])
            claimed = self.took(got, ready, now)
            if not stands:
                after = harness.run(queue.get_job(held.id))
                assert after == before or (after is not None and after.id in {j.id for j in got})
            return claimed

        @rule(held=consumes(claims), retry=st.booleans(), delay=st.sampled_from([0, 1, 5]))
        def fail(self, held: jobq.Job[Any] | None, retry: bool, delay: int) -> None:
            if held is None:
                return
            directive = jobq.RetryDirective(retry, delay)
            if self.stands(held):
                after = harness.run(queue.fail(held, "boom", directive))
                self.model.fail(held.id, clock.ms, delay * 1000 if retry else None)
                assert after.status is public_status(self.model.jobs[held.id], clock.ms)
            else:
                self.stale(lambda: harness.run(queue.fail(held, "boom", directive)), held)

        @rule(held=consumes(claims), delay=st.sampled_from([None, 0, 5]))
        def release(self, held: jobq.Job[Any] | None, delay: int | None) -> None:
            if held is None:
                return
            if self.stands(held):
                harness.run(queue.release(held, delay=delay))
                self.model.release(held.id, clock.ms, None if delay is None else delay * 1000)
            else:
                self.stale(lambda: harness.run(queue.release(held, delay=delay)), held)

        @rule(held=consumes(claims))
        def crash(self, held: jobq.Job[Any] | None) -> None:
            """The worker holding the claim dies: nothing is sent; the lease
            runs out on its own."""

        @precondition(lambda self: bool(self.model.jobs))
        @rule(data=st.data())
        def cancel(self, data: st.DataObject) -> None:
            job_id = data.draw(st.sampled_from(sorted(self.model.jobs)))
            expected = self.model.cancel(job_id)
            assert harness.run(queue.cancel(job_id)) is expected

        @precondition(lambda self: bool(self.model.jobs))
        @rule(data=st.data())
        def retry(self, data: st.DataObject) -> None:
            job_id = data.draw(st.sampled_from(sorted(self.model.jobs)))
            if self.model.retry(job_id, clock.ms):
                job = harness.run(queue.retry(job_id))
                assert job.status is JobStatus.PENDING and job.attempts == 0
            else:
                with pytest.raises(jobq.NotRetryable):
                    harness.run(queue.retry(job_id))

        @precondition(lambda self: bool(self.model.jobs))
        @rule(data=st.data())
        def remove(self, data: st.DataObject) -> None:
            job_id = data.draw(st.sampled_from(sorted(self.model.jobs)))
            assert harness.run(queue.remove(job_id)) is self.model.remove(job_id)
            self.seen.pop(job_id, None)
            assert harness.run(queue.remove(job_id)) is False

        @rule(which=pick)
        def rescue(self, which: int) -> None:
            self.swept(which, clock.ms)

        @rule(which=pick)
        def lease_expiry(self, which: int) -> None:
            """Time passes beyond every lease, and the rescuer sweeps."""
            clock.ms += LEASE_MS + 500
            self.swept(which, clock.ms)

        @rule(seconds=st.sampled_from([1, 2, 5, 10, 11, 30]))
        def advance(self, seconds: int) -> None:
            clock.ms += seconds * 1000

        @rule(seconds=st.sampled_from([1, 5, 60, 600]))
        def clock_goes_back(self, seconds: int) -> None:
            clock.ms -= seconds * 1000

        # -- two queue objects at once -------------------------------------------

        @precondition(lambda self: queues > 1)
        @rule(target=claims, first=st.integers(1, 3), second=st.integers(1, 3))
        def claims_race(self, first: int, second: int) -> Any:
            now = clock.ms
            ready = self.model.ready(now)
            a, b = harness.run(
                asyncio.gather(opened[0].claim(first, rescue=False), opened[1].claim(second, rescue=False))
            )
            ids = [j.id for j in a + b]
            assert len(ids) == len(set(ids)), "a job was claimed twice"
            assert len(ids) <= min(first + second, len(ready))
            ready_ids = {j.id for j in ready}
            for job in a + b:
                assert job.id in ready_ids, (job, "claimed a job that was not ready")
                self.model.claimed(job.id, job.lease_token, now + LEASE_MS)
            return multiple_or_one(a + b)

        @precondition(lambda self: queues > 1)
        @rule(held=consumes(claims), expire=st.booleans())
        def complete_races_rescue(self, held: jobq.Job[Any] | None, expire: bool) -> None:
            """A holder completes while another queue sweeps: exactly one wins."""
            if held is None:
                return
            if expire:
                clock.ms += LEASE_MS + 500
            now = clock.ms
            stands = self.stands(held)
            done, _ = harness.run(
                asyncio.gather(opened[0].complete(held, "raced"), opened[1].rescue_expired(), return_exceptions=True)
            )
            next_rescue[1] = now + RESCUE_EVERY_MS
            if done is None:
                assert stands
                self.model.complete(held.id)
            else:
                assert isinstance(done, self.stale_error(held)), done
                assert not stands or self.model.jobs[held.id].lease_until <= now  # lost only to the rescue
            self.model.rescue(now)

        # -- helpers -------------------------------------------------------------

        def added(self, job: jobq.Job[Any], new: ModelJob) -> None:
            holder = self.model.holder_of(new.unique_key)
            if holder is not None:
                assert job.deduplicated and job.id == holder.id, (job, holder)
                return
            assert not job.deduplicated
            assert job.status is (JobStatus.DELAYED if new.process_at > clock.ms else JobStatus.PENDING)
            assert job.attempts == 0
            self.model.add(new)

        def took(self, got: list[jobq.Job[Any]], ready: list[ModelJob], now: int) -> Any:
            ids = {j.id for j in got}
            for job in got:
                mj = self.model.jobs[job.id]
                assert mj.status == WAITING and mj.process_at <= now, (mj, "claimed a job that was not ready")
                assert job.status is JobStatus.PROCESSING and job.data == mj.data
                assert job.lease_token
                self.model.claimed(job.id, job.lease_token, now + LEASE_MS)
            # Highest priority first: nothing left behind outranks what was taken,
            # and, within a priority, the earliest due first.
            taken = [self.model.jobs[i] for i in ids]
            for left in (j for j in ready if j.id not in ids):
                for took in taken:
                    assert (-took.priority, took.process_at) <= (-left.priority, left.process_at), (took, left)
            return multiple_or_one(got)

        def swept(self, which: int, now: int) -> None:
            harness.run(opened[which].rescue_expired())
            next_rescue[which] = now + RESCUE_EVERY_MS
            self.model.rescue(now)

        def stands(self, held: jobq.Job[Any]) -> bool:
            return held.id in self.model.jobs and self.model.holds(held.id, held.lease_token)

        def stale_error(self, held: jobq.Job[Any]) -> type[Exception]:
            """What a call under a claim that no longer stands raises: the job
            was removed, or its claim is gone."""
            return jobq.LeaseLost if held.id in self.model.jobs else jobq.JobNotFound

        def stale(self, call: Any, held: jobq.Job[Any]) -> None:
            """A call under a claim that no longer stands changes nothing."""
            before = harness.run(queue.get_job(held.id))
            with pytest.raises(self.stale_error(held)):
                call()
            after = harness.run(queue.get_job(held.id))
            assert after == before

        # -- invariants ----------------------------------------------------------

        @invariant()
        def matches_the_model(self) -> None:
            now = clock.ms
            page = harness.run(queue.list_jobs(limit=1000))
            stored = {j.id: j for j in page.jobs}
            assert page.total == len(self.model.jobs) == len(stored), "a job was lost or invented"
            for job_id, mj in self.model.jobs.items():
                job = stored[job_id]
                want = public_status(mj, now)
                assert job.status is want, (job_id, job.status, want, mj)
                assert job.attempts == mj.attempts, (job, mj)
                assert job.attempts <= job.max_attempts == mj.max_attempts
                assert job.lost_count == mj.lost_count, (job, mj)
                assert job.data == mj.data
                if mj.status == WAITING:
                    assert round(job.process_at.timestamp() * 1000) == mj.process_at, (job, mj)
                # Every change of stored status since the last step is a legal one.
                was, now_status = self.seen.get(job_id, WAITING), STORED[job.status]
                assert was == now_status or (was, now_status) in LEGAL, (job_id, was, now_status)
                self.seen[job_id] = now_status
                if mj.status in (COMPLETED, FAILED, CANCELLED):
                    assert (job.completed_at, job.failed_at, job.cancelled_at).count(None) == 2, job
                if mj.status == PROCESSING:
                    assert job.lease_expires_at is not None

        @invariant()
        def counts_agree(self) -> None:
            counts = harness.run(queue.counts())
            assert sum(counts.values()) == len(self.model.jobs)
            ready = harness.run(queue.size())
            assert ready == len(self.model.ready(clock.ms))

    return QueueMachine


def multiple_or_one(jobs: list[jobq.Job[Any]]) -> Any:
    """One claimed job into the bundle (the first), or ``None`` when the claim
    came back empty; further jobs of a batch are still in the model and
    are rescued when their lease runs out, like a crashed worker's."""
    return jobs[0] if jobs else None


def test_queue_against_the_reference_model(harness: Harness) -> None:
    machine = make_machine(harness)
    run_state_machine_as_test(
        machine,
        settings=fuzz_settings(
            60 if harness.backend == "memory" else 40,
            400,
            stateful_step_count=examples(40, 80),
        ),
    )


@pytest.mark.shared_store
def test_two_queues_on_one_store_against_the_reference_model(harness: Harness) -> None:
    machine = make_machine(harness, queues=2)
    run_state_machine_as_test(
        machine,
        settings=fuzz_settings(30, 300, stateful_step_count=examples(40, 80)),
    )
