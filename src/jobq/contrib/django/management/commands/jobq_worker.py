"""``manage.py jobq_worker``: runs the project's tasks until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...worker import build_processor


class Command(BaseCommand):  # type: ignore[misc]
    help = "Runs the Django tasks of a jobq task backend until SIGTERM or Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--backend", default="default", help="the alias in TASKS (default: default)")
        parser.add_argument("--queues", help="comma-separated queue names (default: the backend's QUEUES)")
        parser.add_argument("--concurrency", type=int, help="jobs run at once")

    def handle(self, *args: Any, **options: Any) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        settings: dict[str, Any] = {}
        if options["queues"]:
            settings["queues"] = [name.strip() for name in options["queues"].split(",") if name.strip()]
        if options["concurrency"] is not None:
            settings["concurrency"] = options["concurrency"]
        processor = build_processor(options["backend"], **settings)

        async def run() -> None:
            try:
                await processor.run()
            finally:
                await processor.queue.close()

        self.stdout.write(f"jobq worker {processor.worker_id} on {processor.queue!r}")
        self.stdout.flush()
        asyncio.run(run())
