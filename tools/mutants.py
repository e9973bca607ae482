"""Targeted mutation testing: does the suite notice when a rule that keeps a
promise is broken?

Each mutant is one text replacement in one source file (the rule broken on
purpose). For each, the package is copied to a temporary folder, the
replacement applied there, and the tests that guard that rule run against the
copy (``PYTHONPATH`` points at it; the worktree is never touched), with a
timeout. A mutant is *killed* when those tests fail, and *survives* when they
pass: a broken rule nobody would notice. Survivors the suite cannot be
expected to see carry a reason (``why``); the report lists them apart.

    python tools/mutants.py                # every mutant, a report at the end
    python tools/mutants.py -k fencing     # the mutants whose area or name has "fencing"
    python tools/mutants.py --list         # the mutants, without running them

PostgreSQL's backend is tested too when ``JOBQ_TEST_POSTGRES_URL`` is set
(its fences share the SQL text in ``store/sql.py``); without it the tests run
on the memory and SQLite backends. Exit status: 1 if a mutant without a
``why`` survived (or a replacement no longer matches the source), else 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300.0  # seconds one mutant's tests may run before it counts as killed (a hang is noticed)

# The tests guarding each area (run with -x: the first failure kills the mutant).
CORE = [
    "tests/contract/test_leases.py",
    "tests/contract/test_settle.py",
    "tests/contract/test_queue.py",
    "tests/contract/test_retry_inspect.py",
    "tests/contract/test_foreign_claims.py",
    "tests/contract/test_cancellation.py",
    "tests/unit/test_settle_shape.py",
    "tests/contract/test_lease_lost_paths.py",
    "tests/reliability/test_model.py",
]
LEASES = [
    "tests/unit/test_lease_keeper.py",
    "tests/contract/test_lease_lost_paths.py",
    "tests/acceptance/test_lease_overrun.py",
]
RETRY = ["tests/unit/test_retry.py", "tests/contract/test_retry_inspect.py", "tests/contract/test_processor.py"]
CLAIMS = [
    "tests/contract/test_queue.py",
    "tests/contract/test_named_queues.py",
    "tests/contract/test_suspects.py",
    "tests/contract/test_foreign_claims.py",
]


@dataclasses.dataclass(frozen=True)
class Mutant:
    area: str
    name: str
    path: str  # under src/jobq
    old: str
    new: str
    tests: list[str]
    why: str = ""  # why surviving is acceptable, if it is
    postgres: bool = False  # PostgreSQL's own SQL: only run with JOBQ_TEST_POSTGRES_URL


T = "transitions.py"
SQL = "store/sql.py"
MUTANTS = [
    # -- state transitions (jobq/transitions.py) ---------------------------------
    Mutant("transitions", "retry while attempts are left: one more", T,
           "return attempts + 1 < max_attempts", "return attempts + 1 <= max_attempts", CORE + RETRY),
    Mutant("transitions", "a failed attempt is not counted", T,
           'job_id, "pending" if again else "failed", token=token, attempts=attempts + 1, error=error,',
           'job_id, "pending" if again else "failed", token=token, attempts=attempts + (not again), error=error,',
           CORE),
    Mutant("transitions", "a final failure is not counted", T,
           'job_id, "pending" if again else "failed", token=token, attempts=attempts + 1, error=error,',
           'job_id, "pending" if again else "failed", token=token, attempts=attempts + again, error=error,',
           CORE),
    Mutant("transitions", "a failed attempt retries past max_attempts", T,
           "again = retry_delay_ms is not None and will_retry(attempts, max_attempts)",
           "again = retry_delay_ms is not None", CORE),
    # (released() and cancelled() spell their transition twice, with and
    # without the attempt's history; the holder's path, with it, is mutated.)
    Mutant("transitions", "a release is not fenced by its claim", T,
           'job_id, "pending", token=token, delay_ms=delay_ms, outcome=',
           'job_id, "pending", token=None, delay_ms=delay_ms, outcome=', CORE),
    Mutant("transitions", "a cancel by its holder is not fenced", T,
           'job_id, "cancelled", token=token, error=reason, error_type=error_type, outcome=',
           'job_id, "cancelled", token=None, error=reason, error_type=error_type, outcome=', CORE),
    Mutant("transitions", "a completion is not fenced", T,
           'Transition(job_id, "completed", token, None,', 'Transition(job_id, "completed", None, None,', CORE),
    Mutant("transitions", "a rescue does not check that the lease ran out", T,
           'fence["expect_expired"] = True', 'fence["expect_expired"] = False', CORE),
    Mutant("transitions", "a rescue ignores a cancel request", T,
           "if record.cancel_requested_at is not None:\n        return Transition(record.id, \"cancelled\"",
           "if False:\n        return Transition(record.id, \"cancelled\"", CORE),
    Mutant("transitions", "a rescue does not count the lost worker", T,
           "lost = record.lost_count + 1", "lost = record.lost_count", CORE),
    Mutant("transitions", "quarantine one loss late", T,
           "and lost < max_lost", "and lost <= max_lost", CORE),
    Mutant("transitions", "a rescue is not fenced on attempts", T,
           '"expect_attempts": record.attempts}', "}", CORE),
    Mutant("transitions", "in memory, any claim token passes the fence", T,
           "record.lease_token != t.token):", "False):", CORE),
    Mutant("transitions", "in memory, the attempts compare-and-set passes", T,
           "if t.expect_attempts is not None and record.attempts != t.expect_attempts:",
           "if False:", CORE),
    Mutant("transitions", "in memory, an unexpired lease may be rescued", T,
           "return not (t.expect_expired and record.process_at > now_ms)", "return True", CORE),
    Mutant("transitions", "a settled job keeps its claim token", T,
           "    record.lease_token = None\n    if t.status != \"completed\":",
           "    if t.status != \"completed\":", CORE),
    Mutant("transitions", "a retry delay is ignored", T,
           "record.process_at = now_ms + t.delay_ms", "record.process_at = now_ms", CORE),
    Mutant("transitions", "a lease runs out a second late", T,
           "return record.process_at <= now_ms", "return record.process_at + 1000 <= now_ms", CORE),
    Mutant("transitions", "a foreign claim is taken back early", T,
           "and record.started_at + foreign_timeout_ms <= now_ms",
           "and record.started_at + foreign_timeout_ms // 2 <= now_ms", CORE),
    # -- fencing checks (the SQL stores, jobq/store/sql.py) -------------------------
    Mutant("fencing", "SQL: a claim token fence ignores the token", SQL,
           "= 'processing' AND {d.column('lease_token')} = {d.value('token')}\"",
           "= 'processing'\"", CORE),
    Mutant("fencing", "SQL: a batch of holders' writes is not fenced", SQL,
           "    if token == GIVEN:\n        conditions.append(held(d))",
           "    if token == GIVEN:\n        pass", CORE),
    Mutant("fencing", "SQL: mixed batches are not fenced by token", SQL,
           "conditions.append(f\"({v('token')} IS NULL OR ({held(d)}))\")", "pass", CORE),
    Mutant("fencing", "SQL: no compare-and-set on status and attempts", SQL,
           "conditions.append(f\"({v(name)} IS NULL OR {c(column)} = {v(name)})\")", "pass", CORE),
    Mutant("fencing", "SQL: a mixed rescue does not check expiry", SQL,
           "conditions.append(f\"({v('expect_expired')} = 0 OR {c('process_at')} <= {now})\")", "pass", CORE),
    Mutant("fencing", "SQL: a rescue batch does not check expiry", SQL,
           "conditions.append(f\"{c('process_at')} <= {now}\")", "pass", CORE),
    Mutant("fencing", "SQLite: a renewal reports no lease lost", "store/sqlite/store.py",
           "\"token\": token}).rowcount == 0", "\"token\": token}).rowcount < 0", CORE + LEASES),
    Mutant("fencing", "PostgreSQL: a renewal ignores the claim token", "store/postgres/sql.py",
           'f" WHERE j.id = l.id AND {held(d)} RETURNING j.id"', 'f" WHERE j.id = l.id RETURNING j.id"',
           CORE + LEASES, postgres=True),
    Mutant("fencing", "PostgreSQL: a settle is not fenced", "store/postgres/sql.py",
           'f" WHERE j.id = b.id AND {settle_fence(_SETTLE_DIALECT, shape)} RETURNING {returning}"',
           'f" WHERE j.id = b.id RETURNING {returning}"', CORE, postgres=True),
    Mutant("fencing", "memory: a renewal ignores the claim token", "store/memory.py",
           'record.status != "processing" or record.lease_token != token:',
           'record.status != "processing":', CORE + LEASES),
    # -- rescue -----------------------------------------------------------------------
    Mutant("rescue", "SQL: a lease counts as run out a minute early", SQL,
           "AND (process_at <= {d.now} OR process_at", "AND (process_at <= {d.now} + 60000 OR process_at", CORE),
    Mutant("rescue", "dequeue does not rescue", "queue.py",
           "if rescue and now_ms >= self._next_rescue_ms:", "if False:", CORE),
    Mutant("rescue", "only the first batch of expired jobs is rescued", "rescue.py",
           "            if len(records) < RESCUE_BATCH:\n                break\n        return rescued",
           "            break\n        return rescued", CORE),
    Mutant("rescue", "memory: expired claims are not found", "store/memory.py",
           "elif transitions_.ran_out(record, now_ms, foreign_timeout_ms):", "elif False:", CORE),
    # -- durability (jobq/processor/completer.py) -----------------------------------------
    Mutant("durability", "a completion synced apart is reported before its sync", "processor/completer.py",
           "            await self.queue.store.sync()\n", "            pass\n",
           ["tests/integration/test_durability.py"]),
    # -- lease renewal (jobq/processor/leases.py) -----------------------------------------
    Mutant("lease renewal", "the keeper never renews", "processor/leases.py",
           "                if not self.held:\n                    continue",
           "                if True:\n                    continue", LEASES),
    Mutant("lease renewal", "a renewal does not extend the lease", "processor/leases.py",
           "until = queue.now_ms() + to_ms(queue.lease)", "until = queue.now_ms()", LEASES),
    Mutant("lease renewal", "a lost lease is not remembered", "processor/leases.py",
           "ends[job.id] = (job.lease_token, 0 if job.id in lost else until)",
           "ends[job.id] = (job.lease_token, until)", LEASES),
    Mutant("lease renewal", "a lease found gone is renewed again", "processor/leases.py",
           "if renewed is None or renewed[0] != job.lease_token or renewed[1]:", "if True:", LEASES),
    Mutant("lease renewal", "the completer never hears of a renewal", "processor/leases.py",
           "if renewed is not None and renewed[0] == job.lease_token:", "if False:", LEASES),
    Mutant("lease renewal", "a job whose outcome is written is renewed still", "processor/leases.py",
           "            del self.held[job.id]", "            pass", LEASES),
    # -- retry decisions (jobq/retry.py, the executor) -------------------------------------------
    Mutant("retry", "fixed delays skip the last", "retry.py",
           "len(self.delays) - 1)]", "len(self.delays) - 2)]", RETRY),
    Mutant("retry", "backoff cap gives the base", "retry.py",
           "            ceiling = self.max_delay", "            ceiling = self.base", RETRY),
    Mutant("retry", "backoff without jitter", "retry.py",
           "return ceiling - self.jitter * ceiling * self.rng.random()", "return ceiling", RETRY),
    Mutant("retry", "backoff one step ahead", "retry.py",
           "ceiling = self.base * self.factor**exponent", "ceiling = self.base * self.factor**(exponent + 1)",
           RETRY),
    Mutant("retry", "the processor retries past max_attempts", "processor/executor.py",
           "if retry and transitions.will_retry(job.attempts, job.max_attempts):", "if retry:", RETRY),
    # -- claim filters (jobq/store/sql.py, memory) ------------------------------------------------
    Mutant("claims", "SQL: jobs are claimed a minute early", SQL,
           "return f\"status = 'pending' AND process_at <= {now}\"",
           "return f\"status = 'pending' AND process_at <= {now} + 60000\"", CLAIMS),
    Mutant("claims", "SQL: one queue's filter is dropped", SQL,
           "sql, key, params[\"queue\"] = f\" AND queue = {d.value('queue')}\"",
           "sql, key, params[\"queue\"] = \"\"", CLAIMS),
    Mutant("claims", "SQL: several queues' filter is dropped", SQL,
           "sql, key, params[\"queues\"] = f\" AND {d.among('queue', 'queues')}\"",
           "sql, key, params[\"queues\"] = \"\"", CLAIMS),
    Mutant("claims", "SQL: excluded types are claimed", SQL,
           "sql += f\" AND NOT ({d.among('type', 'exclude')})\"", "sql += \" AND 1 = 1\"", CLAIMS),
    Mutant("claims", "SQL: suspects' bound off by one", SQL,
           "AND lost_count < {d.value('lost_below')}", "AND lost_count <= {d.value('lost_below')}", CLAIMS),
    Mutant("claims", "PostgreSQL: claims do not skip locked rows", "store/postgres/sql.py",
           'lock=" FOR UPDATE SKIP LOCKED")', 'lock="")', ["tests/postgres/test_postgres.py"], postgres=True),
    Mutant("claims", "SQL: a claim's lease is not from now", SQL,
           "process_at = {now} + {v('lease')},", "process_at = {now} + {v('lease')} / 2,", CLAIMS + CORE),
    Mutant("claims", "SQL: lower priority first", SQL,
           'DUE_ORDER = "priority DESC,', 'DUE_ORDER = "priority ASC,', CLAIMS),
]


def run(mutant: Mutant, workdir: Path, postgres: bool) -> tuple[str, float, str]:
    """Applies ``mutant`` to a fresh copy of the package and runs its tests:
    ("killed" | "survived" | "stale", seconds, the last lines of output)."""
    src = workdir / "src"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    target = src / "jobq" / mutant.path
    text = target.read_text()
    if text.count(mutant.old) != 1:
        return "stale", 0.0, f"{mutant.old!r} occurs {text.count(mutant.old)} times in {mutant.path}"
    target.write_text(text.replace(mutant.old, mutant.new))
    tests = [t for t in dict.fromkeys(mutant.tests) if (ROOT / t).exists()]
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("JOBQ_TEST_NO_SKIPS", None)
    args = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]
    if not postgres:
        args += ["-k", "not postgres"]
    started = time.monotonic()
    try:
        done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return "killed", time.monotonic() - started, f"timed out after {TIMEOUT:g} s"
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-3:])
    if done.returncode == 5 or "error" in tail.lower() and "passed" not in tail and "failed" not in tail:
        return "stale", time.monotonic() - started, tail  # no tests ran: a broken setup, not a verdict
    return ("survived" if done.returncode == 0 else "killed"), time.monotonic() - started, tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only mutants whose area or name contains this text")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    options = parser.parse_args()
    chosen = [m for m in MUTANTS if options.k.lower() in f"{m.area} {m.name}".lower()]
    if options.list:
        for m in chosen:
            print(f"[{m.area}] {m.name} ({m.path})")
        return 0
    postgres = bool(os.environ.get("JOBQ_TEST_POSTGRES_URL"))
    if not postgres:
        left_out = [m for m in chosen if m.postgres]
        chosen = [m for m in chosen if not m.postgres]
        for m in left_out:
            print(f"   not run   [{m.area}] {m.name}: PostgreSQL's own SQL, and JOBQ_TEST_POSTGRES_URL is not set")
    results: list[tuple[Mutant, str]] = []
    with tempfile.TemporaryDirectory(prefix="jobq-mutants-") as tmp:
        for i, mutant in enumerate(chosen, 1):
            verdict, seconds, tail = run(mutant, Path(tmp), postgres)
            results.append((mutant, verdict))
            print(f"{i:2}/{len(chosen)} {verdict:8} {seconds:5.1f} s  [{mutant.area}] {mutant.name}", flush=True)
            if verdict == "stale":
                print(f"      {tail}")
    killed = sum(v == "killed" for _, v in results)
    survived = [(m, v) for m, v in results if v == "survived"]
    stale = [m for m, v in results if v == "stale"]
    print(f"\n{len(results)} mutants: {killed} killed, {len(survived)} survived, {len(stale)} stale")
    for m, _ in survived:
        print(f"  survived [{m.area}] {m.name}: {m.why or 'NO REASON: a test is missing'}")
    for m in stale:
        print(f"  stale [{m.area}] {m.name}: the replacement no longer matches {m.path}")
    return 1 if stale or any(not m.why for m, _ in survived) else 0


if __name__ == "__main__":
    sys.exit(main())
