"""The shop's background tasks: Django's own ``@task``, run by jobq."""

try:
    from django.tasks import task  # Django 6
except ImportError:  # Django 5.2 with the django-tasks backport
    from django_tasks import task

from .models import Order


class ReceiptRefused(Exception):
    """The mail server refused the receipt."""


def check_address(email: str) -> None:
    if email.endswith("@refused.example"):
        raise ReceiptRefused(f"cannot mail {email}")


@task(queue_name="emails", priority=10)
def send_receipt(order_id: int) -> dict[str, object]:
    order = Order.objects.get(pk=order_id)
    check_address(order.email)
    order.receipt_sent = True
    order.save(update_fields=["receipt_sent"])
    return {"order": order.pk, "to": order.email}


@task
def add(a: int, b: int) -> int:
    return a + b


@task(takes_context=True)
async def greet(context, name: str) -> dict[str, object]:  # noqa: ANN001 - Django's TaskContext
    return {"hello": name, "attempt": context.attempt, "id": context.task_result.id}
