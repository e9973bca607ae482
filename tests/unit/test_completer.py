"""The completer's two ways of writing outcomes: with the next claim
(deferred), or on its own at once; and every outcome kind, in groups."""

from __future__ import annotations

import asyncio
from typing import Any

import jobq
from jobq import JobStatus, codec
from jobq.processor.completer import Completer
from jobq.processor.executor import Kind, Outcome

Reports = list[tuple[str, Kind, BaseException | None]]


def recording(reports: Reports) -> Any:
    return lambda outcome, error: reports.append((outcome.job.id, outcome.kind, error))


async def claimed(queue: jobq.Queue, n: int) -> list[jobq.Job[Any]]:
    for i in range(n):
        await queue.enqueue("t", i)
    return await queue.claim(n)


def completed(job: jobq.Job[Any], result: Any = None) -> Outcome:
    return Outcome(Kind.COMPLETED, job, result, stored_result=codec.encode_result(result))


async def test_without_a_claim_coming_completions_are_written_at_once() -> None:
    async with jobq.connect("memory://") as queue:
        reports: Reports = []
        completer = Completer(queue, recording(reports))
        jobs = await claimed(queue, 3)
        for job in jobs:
            completer.hand_in(completed(job, job.data))
        await completer.drain()
        assert reports == [(job.id, Kind.COMPLETED, None) for job in jobs]
        assert (await queue.counts())[JobStatus.COMPLETED] == 3


async def test_deferred_completions_wait_for_take_or_flush() -> None:
    async with jobq.connect("memory://") as queue:
        reports: Reports = []
        completer = Completer(queue, recording(reports))
        jobs = await claimed(queue, 4)
        completer.defer()
        for job in jobs:
            completer.hand_in(completed(job))
        await asyncio.sleep(0.01)
        assert reports == [] and len(completer) == 4  # held for the next claim
        outcomes, transitions = completer.take()
        assert len(completer) == 0 and [t.job_id for t in transitions] == [job.id for job in jobs]
        errors, _ = await queue.settle_and_claim(transitions[:2], 1)
        completer.settle((outcomes[:2], transitions[:2]), errors)
        completer.give_back((outcomes[2:], transitions[2:]))  # as after a failed claim: written on their own
        await completer.drain()
        assert sorted(reports, key=str) == sorted([(job.id, Kind.COMPLETED, None) for job in jobs], key=str)


async def test_a_lost_claim_is_reported_for_its_job_alone() -> None:
    async with jobq.connect("memory://") as queue:
        errors: dict[str, BaseException | None] = {}
        completer = Completer(queue, lambda outcome, error: errors.__setitem__(outcome.job.id, error))
        held, lost = await claimed(queue, 2)
        await queue.complete(lost.id)  # finished by id elsewhere: this claim is gone
        completer.hand_in(completed(held, 1))
        completer.hand_in(completed(lost, 2))
        await completer.drain()
        assert errors[held.id] is None
        assert isinstance(errors[lost.id], jobq.LeaseLost)


async def test_every_kind_is_written_in_one_group_and_write_waits_for_it() -> None:
    clock = jobq.FakeClock()
    async with jobq.connect("memory://", clock=clock) as queue:
        reports: Reports = []
        completer = Completer(queue, recording(reports))
        done, retry, failed, snoozed, cancelled, released = await claimed(queue, 6)
        completer.defer()  # a claim is coming: the completion alone would wait for it
        completer.hand_in(completed(done, "ok"))
        settles: list[int] = []
        settle = queue.settle

        async def counting(transitions: Any) -> Any:
            settles.append(len(transitions))
            return await settle(transitions)

        queue.settle = counting  # type: ignore[method-assign]
        await completer.write(
            Outcome(Kind.RETRY, retry, error="boom", delay=5),
            Outcome(Kind.FAILED, failed, error="gone"),
            Outcome(Kind.SNOOZED, snoozed, delay=30),
            Outcome(Kind.CANCELLED, cancelled, error="stop", exception=jobq.CancelJob("stop")),
            Outcome(Kind.RELEASED, released),
        )
        assert settles == [6]  # the deferred completion went along
        assert {job_id: error for job_id, _, error in reports} == {
            j.id: None for j in (done, retry, failed, snoozed, cancelled, released)
        }
        stored = {
            j.id: await queue.get_job(j.id) for j in (done, retry, failed, snoozed, cancelled, released)
        }
        assert stored[done.id].status is JobStatus.COMPLETED and stored[done.id].result == "ok"  # type: ignore[union-attr]
        again = stored[retry.id]
        assert again is not None and again.status is JobStatus.DELAYED and again.attempts == 1
        assert again.process_at.timestamp() == clock.now() + 5 and again.error == "boom"
        gone = stored[failed.id]
        assert gone is not None and gone.status is JobStatus.FAILED and gone.error == "gone"
        later = stored[snoozed.id]
        assert later is not None and later.status is JobStatus.DELAYED and later.attempts == 0
        ended = stored[cancelled.id]
        assert ended is not None and ended.status is JobStatus.CANCELLED and ended.error == "stop"
        back = stored[released.id]
        assert back is not None and back.status is JobStatus.PENDING and back.attempts == 0


async def test_an_outcome_that_cannot_be_written_fails_its_job_alone() -> None:
    """A retry delay its policy got wrong cannot be stored: the job fails for
    good saying so (it used to keep its lease until it ran out, and run
    again, and again, until quarantined as a job killing its worker)."""

    class Broken:
        def delay(self, attempts: int) -> float:
            return float("nan")

    async with jobq.connect("memory://") as queue:
        reports: Reports = []
        completer = Completer(queue, recording(reports))
        ok, bad = await claimed(queue, 2)
        completer.hand_in(completed(ok))
        await completer.write(Outcome(Kind.RETRY, bad, error="boom", delay=Broken().delay(0)))
        await completer.drain()
        expected = [(ok.id, Kind.COMPLETED, None), (bad.id, Kind.FAILED, None)]
        assert sorted(reports, key=str) == sorted(expected, key=str)
        failed = await queue.get_job(bad.id)
        assert failed is not None and failed.status is JobStatus.FAILED and failed.attempts == 1
        assert failed.error is not None and failed.error.startswith("its retry could not be stored (retry delay")
