"""jobq as a Django task backend (``pip install 'jobq[django]'``).

In ``settings.py``::

    INSTALLED_APPS = [..., "jobq.contrib.django"]   # for manage.py jobq_worker
    TASKS = {"default": {"BACKEND": "jobq.contrib.django.JobqBackend"}}

Tasks are Django's own (``@task`` from ``django.tasks``, or from
``django_tasks`` on Django 5.2); ``task.enqueue()`` stores a jobq job, a
worker (``manage.py jobq_worker`` or ``jobq worker
jobq.contrib.django.worker:processor``) runs it, and ``task.get_result(id)``
reads its result back. See docs/frameworks.md.
"""

from .backend import JobqBackend, postgres_dsn

__all__ = ["JobqBackend", "postgres_dsn"]
