"""One measurement in a fresh interpreter: ``python -m bench.child '<json spec>'``.

The spec names a function of :mod:`bench.workloads` and its keyword
arguments. The child writes protocol lines on stdout: ``READY`` when a
worker is idling on its queue (latency runs), then ``RESULT {json}``, or
``ERROR {json}`` with the traceback.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import traceback

from . import workloads


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    fn = getattr(workloads, spec["workload"])
    try:
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
