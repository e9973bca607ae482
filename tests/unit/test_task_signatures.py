"""Units of the task API: a task's signature as stored and decoded, its
name, the defaults rule, and the synchronous queue's declared verbs."""

from __future__ import annotations

import inspect
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

import jobq
from jobq.conversion import Signature
from jobq.newjobs import QUEUE_DEFAULTS, Defaults
from jobq.processor.config import ProcessorConfig


def later_defined(item: Item, *, count: int = 1) -> Item:
    return item


class Item:  # defined after the function that names it
    pass


def test_annotations_may_name_classes_defined_later() -> None:
    signature = Signature(later_defined, "later")
    assert signature.hints["item"] is Item and signature.hints["return"] is Item


def test_positional_only_and_extra_keyword_arguments() -> None:
    def fn(a: int, /, b: str, **extra: float) -> None: ...

    signature = Signature(fn, "fn")
    data = signature.encode((1,), {"b": "x", "ratio": 0.5})
    assert data == {"a": 1, "b": "x", "ratio": 0.5}
    assert signature.decode(data) == ([1], {"b": "x", "ratio": 0.5})
    with pytest.raises(TypeError, match="argument 'ratio' does not fit float"):
        signature.encode((1,), {"b": "x", "ratio": "half"})
    with pytest.raises(jobq.ArgumentMismatch, match="argument 'ratio' does not fit float"):
        signature.decode({"a": 1, "b": "x", "ratio": "half"})


def test_a_default_not_given_is_not_stored() -> None:
    def fn(a: int, b: int = 2) -> None: ...

    signature = Signature(fn, "fn")
    assert signature.encode((1,), {}) == {"a": 1}
    assert signature.decode({"a": 1}) == ([], {"a": 1})


def test_unannotated_parameters_take_any_json_value() -> None:
    def fn(a, b=None):  # type: ignore[no-untyped-def]
        return a

    signature = Signature(fn, "fn")
    assert signature.encode(({"x": [1, 2]},), {}) == {"a": {"x": [1, 2]}}
    assert signature.decode({"a": [1, "two"]}) == ([], {"a": [1, "two"]})


def test_an_annotation_that_cannot_be_resolved_is_a_type_error() -> None:
    def fn(a: Missing) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(TypeError, match="cannot resolve its annotations"):
        Signature(fn, "fn").encode((1,), {})


def test_dict_keys_come_back_as_their_annotated_type() -> None:
    def fn(counts: dict[int, str]) -> None: ...

    signature = Signature(fn, "fn")
    data = signature.encode(({1: "one", 2: "two"},), {})
    stored = json.loads(json.dumps(data))  # as a store keeps it: JSON keys are text
    assert stored == {"counts": {"1": "one", "2": "two"}}
    assert signature.decode(stored) == ([], {"counts": {1: "one", 2: "two"}})


def test_the_defaults_rule() -> None:
    """One rule, three sets of defaults: k-msg's queue, k-msg's processor,
    and each task's."""
    assert QUEUE_DEFAULTS.job("t") == jobq.NewJob("t", None, 0, 0, 3, None, "default", None)
    add = ProcessorConfig(max_retries=7, queues=["mail", "sms"]).add_defaults
    assert (add.priority, add.max_attempts, add.queue) == (5, 7, "mail")
    task = Defaults(priority=2, max_attempts=4, queue="sms", timeout=30)
    assert task.job("t", priority=0, metadata={"k": 1}) == jobq.NewJob(
        "t", None, 0, 0, 4, {"k": 1, "jobq.timeout": 30}, "sms", None
    )
    with pytest.raises(jobq.InvalidOption, match="timeout"):
        task.job("t", timeout=0)


async def test_queue_enqueue_and_processor_add_keep_their_kmsg_defaults() -> None:
    async with jobq.connect("memory://") as queue:
        low = await queue.enqueue("t")
        processor = jobq.JobProcessor(queue, max_retries=4)
        added = await queue.get_job(await processor.add("t"))
    assert (low.priority, low.max_attempts) == (0, 3)
    assert added is not None and (added.priority, added.max_attempts) == (5, 4)


def test_every_queue_verb_is_declared_on_the_sync_queue_with_its_signature() -> None:
    assert "__getattr__" not in vars(jobq.SyncQueue)
    verbs = [
        name for name, member in inspect.getmembers(jobq.Queue)
        if not name.startswith("_") and inspect.iscoroutinefunction(member) and name != "close"
    ]  # fmt: skip
    with jobq.connect_sync("memory://") as queue:
        for name in verbs:
            assert name in vars(jobq.SyncQueue), f"SyncQueue does not declare {name}"
            method = getattr(jobq.Queue, name)
            assert getattr(queue, name).__doc__ == method.__doc__
        assert queue.enqueue("t", {"a": 1}).data == {"a": 1}


def test_mypy_sees_the_sync_queues_verbs_and_the_tasks_arguments(tmp_path: Path) -> None:
    from mypy import api

    snippet = tmp_path / "typed_use.py"
    snippet.write_text(
        textwrap.dedent(
            """
            import jobq

            app = jobq.App("memory://")

            @app.task
            async def send(to: str, count: int = 1) -> float:
                return 1.0

            def use(queue: jobq.SyncQueue) -> None:
                job = queue.enqueue("t", priority="high")
                reveal_type(queue.size())
                handle = send.defer_sync(to=1)
                reveal_type(handle.result_sync())
            """
        )
    )
    out, _, _ = api.run([str(snippet), "--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache")])
    assert 'typed_use.py:11: error: Argument "priority" has incompatible type "str"; expected "int | None"' in out
    assert 'typed_use.py:12: note: Revealed type is "int"' in out, out
    assert 'typed_use.py:13: error: Argument "to" to "defer_sync" of "Task" has incompatible type "int"' in out
    assert 'typed_use.py:14: note: Revealed type is "float"' in out, out


def test_task_names_default_to_module_and_function(tmp_path: Path) -> None:
    app = jobq.App("memory://")

    def helper(x: int) -> Any: ...

    task = app.task(helper)
    assert task.name == f"{__name__}.test_task_names_default_to_module_and_function.helper"
    assert app.task(name="custom")(lambda: None).name == "custom"


def test_keys_that_collide_once_they_are_text_are_refused() -> None:
    app = jobq.App("memory://")

    @app.task(name="counts")
    def counts(by_key: dict[Any, str]) -> None: ...

    with pytest.raises(jobq.InvalidJob, match="keys collide once JSON makes them strings"):
        counts.defer_sync({1: "a", "1": "b"})
    app.close_sync()
