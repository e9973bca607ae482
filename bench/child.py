"""One measurement in a fresh interpreter: ``python -m bench.child '<json spec>'``.

The spec names a function of :mod:`bench.workloads` (``"process"``) or of
another bench module (``"raw.sqlite_insert"``) and its keyword arguments. The child writes protocol lines on stdout: ``READY`` when a
worker is idling on its queue (latency runs), then ``RESULT {json}``, or
``ERROR {json}`` with the traceback.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import os
import sys
import traceback

from . import workloads

#: Set by ``python -m bench --log-level``: the level a measuring process logs at.
LOG_LEVEL_ENV = "JOBQ_BENCH_LOG_LEVEL"


def configure_logging() -> None:
    """Logging as ``jobq worker`` sets it up (a handler and formatter on the
    root logger), writing to /dev/null, when ``--log-level`` asked for it."""
    level = os.environ.get(LOG_LEVEL_ENV)
    if level:
        logging.basicConfig(
            level=level, stream=open(os.devnull, "w"),  # noqa: SIM115 - open for the process's life
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )  # fmt: skip


def main(argv: list[str]) -> int:
    configure_logging()
    spec = json.loads(argv[0])
    module_name, _, name = spec["workload"].rpartition(".")
    try:
        module = importlib.import_module(f"bench.{module_name}") if module_name else workloads
        fn = getattr(module, name)
        outcome = fn(**spec.get("args", {}))
        if inspect.isawaitable(outcome):
            outcome = asyncio.run(outcome)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the run
        workloads._emit("ERROR", {"error": repr(exc), "traceback": traceback.format_exc()})
        return 1
    workloads._emit("RESULT", outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
