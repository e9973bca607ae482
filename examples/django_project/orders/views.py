"""A JSON API over the shop's tasks: orders whose receipts go out in the
background, and Django's task API (enqueue, aenqueue, get_result,
aget_result) for any task of the shop."""

import json
from datetime import timedelta

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from . import tasks
from .models import Order

try:
    from django.tasks import default_task_backend
    from django.tasks.exceptions import TaskResultDoesNotExist
except ImportError:
    from django_tasks import default_task_backend
    from django_tasks.exceptions import TaskResultDoesNotExist


class Rollback(Exception):
    """Undoes the order, and the task enqueued with it."""


def index(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"shop": "ok"})


@csrf_exempt
def place_order(request: HttpRequest) -> JsonResponse:
    """Creates an order and enqueues its receipt in one transaction. With
    ``rollback`` the transaction rolls back after the enqueue: on
    PostgreSQL the job goes with it."""
    body = json.loads(request.body or b"{}")
    try:
        with transaction.atomic():
            order = Order.objects.create(email=body["email"])
            result = tasks.send_receipt.enqueue(order.pk)
            if body.get("rollback"):
                raise Rollback(result.id)
    except Rollback as undone:
        return JsonResponse({"rolled_back": True, "task": str(undone)}, status=409)
    return JsonResponse({"order": order.pk, "task": result.id}, status=201)


@csrf_exempt
def place_order_on_commit(request: HttpRequest) -> JsonResponse:
    """The same, with the enqueue deferred to the commit: what a backend
    whose jobs live outside the transaction (a SQLite file) needs. The
    callback runs as the outermost ``atomic`` commits, before it returns."""
    body = json.loads(request.body or b"{}")
    enqueued = []
    try:
        with transaction.atomic():
            order = Order.objects.create(email=body["email"])
            transaction.on_commit(lambda: enqueued.append(tasks.send_receipt.enqueue(order.pk)))
            if body.get("rollback"):
                raise Rollback()
    except Rollback:
        return JsonResponse({"rolled_back": True}, status=409)
    return JsonResponse({"order": order.pk, "task": enqueued[0].id}, status=201)


def order(request: HttpRequest, pk: int) -> JsonResponse:
    found = Order.objects.filter(pk=pk).first()
    if found is None:
        return JsonResponse({"error": "no such order"}, status=404)
    return JsonResponse({"order": found.pk, "receipt_sent": found.receipt_sent})


def _task(name: str, body: dict):  # noqa: ANN202 - a Django Task
    chosen = getattr(tasks, name)
    changes = {}
    if "priority" in body:
        changes["priority"] = body["priority"]
    if "queue" in body:
        changes["queue_name"] = body["queue"]
    if "run_after" in body:
        changes["run_after"] = timezone.now() + timedelta(seconds=body["run_after"])
    return chosen.using(**changes) if changes else chosen


@csrf_exempt
def enqueue(request: HttpRequest, name: str) -> JsonResponse:
    body = json.loads(request.body or b"{}")
    result = _task(name, body).enqueue(*body.get("args", []), **body.get("kwargs", {}))
    return JsonResponse(_describe(result), status=201)


@csrf_exempt
async def aenqueue(request: HttpRequest, name: str) -> JsonResponse:
    body = json.loads(request.body or b"{}")
    result = await _task(name, body).aenqueue(*body.get("args", []), **body.get("kwargs", {}))
    return JsonResponse(_describe(result), status=201)


def result(request: HttpRequest, result_id: str) -> JsonResponse:
    try:
        found = default_task_backend.get_result(result_id)
    except TaskResultDoesNotExist:
        return JsonResponse({"error": "no such task result"}, status=404)
    return JsonResponse(_describe(found))


async def aresult(request: HttpRequest, result_id: str) -> JsonResponse:
    try:
        found = await default_task_backend.aget_result(result_id)
    except TaskResultDoesNotExist:
        return JsonResponse({"error": "no such task result"}, status=404)
    return JsonResponse(_describe(found))


def _describe(result) -> dict[str, object]:  # noqa: ANN001 - a Django TaskResult
    described: dict[str, object] = {
        "id": result.id,
        "task": result.task.module_path,
        "status": str(result.status),
        "priority": result.task.priority,
        "queue": result.task.queue_name,
        "run_after": result.task.run_after.isoformat() if result.task.run_after else None,
        "args": result.args,
        "kwargs": result.kwargs,
        "attempts": result.attempts,
        "enqueued_at": result.enqueued_at.isoformat() if result.enqueued_at else None,
        "finished_at": result.finished_at.isoformat() if result.finished_at else None,
        "errors": [
            {"exception_class_path": e.exception_class_path, "traceback": e.traceback} for e in result.errors
        ],
    }
    if result.status == "SUCCESSFUL":
        described["return_value"] = result.return_value
    return described
