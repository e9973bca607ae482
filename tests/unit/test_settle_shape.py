"""The shape of a settle batch: what its transitions have in common, which
lets a store write the batch with a statement that leaves out the rest."""

from __future__ import annotations

from jobq import transitions
from jobq.store.sql import GIVEN, settle_params, settle_shape


def shape_of(batch: list[transitions.Transition]) -> dict[str, object]:
    return dict(settle_shape(list(zip(*map(settle_params, batch), strict=True))))


def test_completions_fix_everything_but_the_token_and_result() -> None:
    shape = shape_of([transitions.completed(f"j{n}", f"t{n}", f'"{n}"') for n in range(3)])
    assert shape["status"] == "completed" and shape["token"] == GIVEN and shape["expect_expired"] == 0
    for name in ("expect_status", "expect_attempts", "attempts", "lost_count", "error", "delay_ms"):
        assert shape[name] is None
    assert "result" not in shape  # given, and different per job


def test_a_mixed_batch_fixes_only_what_all_share() -> None:
    batch = [
        transitions.completed("a", "t", None),
        transitions.released("b", "t", 5_000),
        transitions.failed_attempt(
            "c",
            token=None,
            attempts=0,
            max_attempts=3,
            error="x",
            retry_delay_ms=None,
            expect_status="pending",
        ),
    ]
    shape = shape_of(batch)
    assert "status" not in shape and "token" not in shape and "delay_ms" not in shape
    assert "lost_count" in shape and shape["lost_count"] is None


def test_the_shaped_statement_leaves_out_what_cannot_apply() -> None:
    from jobq.store import sql

    d = sql.Dialect(
        value=lambda name: f":{name}", now=":now", table="jobs", among=lambda c, n: "", json_field=str,
        array=list, json_key=str,
    )  # fmt: skip
    shape = sql.settle_shape(
        list(zip(*map(settle_params, [transitions.completed("a", "t", None)]), strict=True))
    )
    assignments, fence = sql.settle_assignments(d, shape), sql.settle_fence(d, shape)
    assert "failed_at" not in assignments and "attempts" not in assignments and ":delay_ms" not in assignments
    assert "completed_at = :now" in assignments and "status = 'completed'" in assignments
    assert fence == "status = 'processing' AND lease_token = :token"
    general = sql.settle_assignments(d) + sql.settle_fence(d)
    for name in ("status", "delay_ms", "attempts", "error", "token", "expect_attempts", "expect_expired"):
        assert f":{name}" in general
