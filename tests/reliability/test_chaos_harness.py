"""The chaos harness counts what happened; these check the counting itself,
without processes, on a ledger and a store filled by hand."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ lives at the repository root, beside src/
    sys.path.insert(0, str(ROOT))

import jobq  # noqa: E402
from bench.chaos.harness import Backend, Fleet, Result, enqueue, format_table, tally  # noqa: E402
from bench.chaos.ledger import Ledger  # noqa: E402


def complete(url: str, job_ids: list[str]) -> None:
    async def go() -> None:
        async with jobq.connect(url) as queue:
            for job_id in job_ids:
                await queue.complete(job_id, None)

    asyncio.run(go())


def test_tally_counts_loss_and_duplicates_from_the_ledger_and_the_store(tmp_path: Path) -> None:
    url = Backend("sqlite").fresh_url(tmp_path, "store")
    fleet = Fleet(tmp_path, url)
    once, twice, never, unrecorded = enqueue(url, fleet.ledger, [{}] * 4)
    complete(url, [once, twice, unrecorded])
    worker = Ledger(tmp_path).writer("w")
    worker.ended(worker.started(once, 1))
    worker.started(twice, 1)  # killed mid-handler: never ended
    worker.ended(worker.started(twice, 2))
    worker.close()

    counted = tally(fleet)

    assert counted.expected == {once, twice, never, unrecorded}
    # never: not completed; unrecorded: completed in the store, but no handler finished it
    assert counted.lost == {never, unrecorded}
    assert counted.duplicated == 1
    assert counted.extra_runs(twice) == 1 and counted.extra_runs(once) == 0


def test_a_broken_promise_fails_the_result_and_shows_in_the_table() -> None:
    result = Result("x", "sqlite", 10, 1, 0, 0, None)
    result.check(True, "kept")
    assert result.ok
    result.check(False, "2 jobs lost")
    assert not result.ok
    assert "NO: 2 jobs lost" in format_table([result])
