"""The worker target of the CLI workloads:
``jobq worker bench.noop_worker:make_processor --url ...``.

A processor whose one handler does nothing, so a figure measures jobq's own
cost. With ``JOBQ_BENCH_READY=1`` in its environment the worker prints
``READY`` on stdout once its processor has started (the RSS workload waits
for it before taking the first sample).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import jobq

JOB_TYPE = "bench"


async def noop(job: jobq.Job[Any]) -> None:
    return None


def _ready(event: jobq.Event) -> None:
    sys.stdout.write("READY\n")
    sys.stdout.flush()


def make_processor(queue: jobq.Queue) -> jobq.JobProcessor:
    processor = jobq.JobProcessor(queue)
    processor.handle(JOB_TYPE, noop)
    if os.environ.get("JOBQ_BENCH_READY"):
        processor.on("processor_started", _ready)
    return processor
