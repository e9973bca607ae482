"""The ``jobq`` commands on named queues: pause and resume.

A paused queue keeps its jobs and takes new ones; workers stop claiming
from it within a second and start again on ``resume`` (see
:meth:`jobq.Queue.pause`). Each prints one line (or JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from .common import opened


async def cmd_pause(args: argparse.Namespace) -> int:
    async with opened(args) as queue:
        changed = await queue.pause(args.queue)
    if args.json:
        print(json.dumps({"queue": args.queue, "paused": True, "changed": changed}))
    else:
        print(f"queue {args.queue} paused" if changed else f"queue {args.queue} was already paused")
    return 0


async def cmd_resume(args: argparse.Namespace) -> int:
    async with opened(args) as queue:
        changed = await queue.resume(args.queue)
    if args.json:
        print(json.dumps({"queue": args.queue, "paused": False, "changed": changed}))
    else:
        print(f"queue {args.queue} resumed" if changed else f"queue {args.queue} was not paused")
    return 0


def add_queue_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """pause and resume."""
    for name, run, help in (
        ("pause", cmd_pause, "stop workers claiming from a named queue (its jobs wait; new ones still arrive)"),
        ("resume", cmd_resume, "let workers claim from a paused queue again"),
    ):
        sub = command(name, help)
        sub.add_argument("queue", help="the named queue")
        sub.add_argument("--json", action="store_true", help="print JSON")
        sub.set_defaults(run=run)
