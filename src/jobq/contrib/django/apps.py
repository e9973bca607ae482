"""The Django app that brings ``manage.py jobq_worker``."""

from __future__ import annotations

from django.apps import AppConfig


class JobqConfig(AppConfig):  # type: ignore[misc]
    name = "jobq.contrib.django"
    label = "jobq"
    verbose_name = "jobq"
