"""Model-based test: a Hypothesis state machine drives enqueue, claim,
heartbeat, complete, fail, cancel, crash, lease expiry and clock moves
against each backend and against :mod:`model_reference`, and checks after
every step that:

- no job is lost: the store holds exactly the model's jobs, each in the
  model's status (pending and delayed told apart by the clock);
- every status change is a legal one (see ``model_reference.LEGAL``);
- ``attempts <= max_attempts`` always;
- a stale claim (its lease rescued, or the job finished) never completes,
  fails or renews anything: it raises ``LeaseLost`` and changes nothing;
- a claim takes ready jobs only, highest priority first, then earliest due.
"""

from __future__ import annotations

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
from model_reference import CANCELLED, COMPLETED, FAILED, PROCESSING, WAITING, Model, ModelJob

import jobq
from jobq import JobStatus

LEASE_MS = 10_500  # a lease never ends exactly on a whole second, where the clock moves
MAX_LOST = 3
START_MS = 1_700_000_000_000


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


def public_status(job: ModelJob, now: int) -> JobStatus:
    if job.status == WAITING:
        return JobStatus.DELAYED if job.process_at > now else JobStatus.PENDING
    return PUBLIC[job.status]


def make_machine(harness: Harness) -> type[RuleBasedStateMachine]:
    clock = MovableClock()
    queue = harness.open(clock=clock, lease=LEASE_MS / 1000, max_lost_leases=MAX_LOST)

    class QueueMachine(RuleBasedStateMachine):
        claims = Bundle("claims")  # Job objects returned by claim: live or stale

        def __init__(self) -> None:
            super().__init__()
            harness.run(queue.clear())
            clock.ms = START_MS
            self.model = Model(MAX_LOST)
            self.seen: dict[str, list[JobStatus]] = {}

        # -- rules ---------------------------------------------------------------

        @initialize()
        def start(self) -> None:
            assert harness.run(queue.size()) == 0

        @rule(
            priority=st.integers(-2, 2),
            delay=st.sampled_from([0, 0, 0, 1, 5, 30]),
            max_attempts=st.integers(1, 4),
            data=st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
        )
        def enqueue(self, priority: int, delay: int, max_attempts: int, data: dict[str, int]) -> None:
            job = harness.run(queue.enqueue("t", data, priority=priority, delay=delay, max_attempts=max_attempts))
            assert job.status is (JobStatus.DELAYED if delay else JobStatus.PENDING)
            assert job.attempts == 0
            self.model.add(ModelJob(job.id, priority, max_attempts, clock.ms + delay * 1000, data))

        @rule(target=claims, limit=st.integers(1, 3))
        def claim(self, limit: int) -> Any:
            now = clock.ms
            ready = self.model.ready(now)
            got = harness.run(queue.claim(limit, rescue=False))
            assert len(got) == min(limit, len(ready)), (len(got), [j.id for j in ready])
            ids = {j.id for j in got}
            for job in got:
                mj = self.model.jobs[job.id]
                assert mj.status == WAITING and mj.process_at <= now, (mj, "claimed a job that was not ready")
                assert job.status is JobStatus.PROCESSING and job.data == mj.data
                assert job.lease_token
                self.model.claimed(job.id, job.lease_token, now + LEASE_MS)
            # Highest priority first: nothing left behind outranks what was taken.
            # and, within a priority, the earliest due first.
            taken = [self.model.jobs[i] for i in ids]
            for left in (j for j in ready if j.id not in ids):
                for took in taken:
                    assert (-took.priority, took.process_at) <= (-left.priority, left.process_at), (took, left)
            return multiple_or_one(got)

        @rule(held=claims)
        def heartbeat(self, held: jobq.Job[Any] | None) -> None:
            if held is None:
                return
            stands = self.model.holds(held.id, held.lease_token)
            gone = harness.run(queue.extend_leases([held]))
            assert gone == (set() if stands else {held.id}), (gone, stands)
            if stands:
                self.model.jobs[held.id].lease_until = clock.ms + LEASE_MS

        @rule(held=consumes(claims), result=st.integers())
        def complete(self, held: jobq.Job[Any] | None, result: int) -> None:
            if held is None:
                return
            if self.model.holds(held.id, held.lease_token):
                harness.run(queue.complete(held, {"r": result}))
                self.model.complete(held.id)
                stored = harness.run(queue.get_job(held.id))
                assert stored is not None and stored.result == {"r": result}
            else:
                self.stale(lambda: harness.run(queue.complete(held, {"r": result})), held)

        @rule(held=consumes(claims), retry=st.booleans(), delay=st.sampled_from([0, 1, 5]))
        def fail(self, held: jobq.Job[Any] | None, retry: bool, delay: int) -> None:
            if held is None:
                return
            directive = jobq.RetryDirective(retry, delay)
            if self.model.holds(held.id, held.lease_token):
                after = harness.run(queue.fail(held, "boom", directive))
                self.model.fail(held.id, clock.ms, delay * 1000 if retry else None)
                assert after.status is public_status(self.model.jobs[held.id], clock.ms)
            else:
                self.stale(lambda: harness.run(queue.fail(held, "boom", directive)), held)

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

        @rule()
        def rescue(self) -> None:
            harness.run(queue.rescue_expired())
            self.model.rescue(clock.ms)

        @rule()
        def lease_expiry(self) -> None:
            """Time passes beyond every lease, and the rescuer sweeps."""
            clock.ms += LEASE_MS + 500
            harness.run(queue.rescue_expired())
            self.model.rescue(clock.ms)

        @rule(seconds=st.sampled_from([1, 2, 5, 10, 11, 30]))
        def advance(self, seconds: int) -> None:
            clock.ms += seconds * 1000

        @rule(seconds=st.sampled_from([1, 5, 60, 600]))
        def clock_goes_back(self, seconds: int) -> None:
            clock.ms -= seconds * 1000

        # -- helpers -------------------------------------------------------------

        def stale(self, call: Any, held: jobq.Job[Any]) -> None:
            """A call under a claim that no longer stands changes nothing."""
            before = harness.run(queue.get_job(held.id))
            with pytest.raises(jobq.LeaseLost):
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
                seen = self.seen.setdefault(job_id, [])
                if not seen or seen[-1] is not job.status:
                    seen.append(job.status)
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
