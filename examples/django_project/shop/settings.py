"""Settings of the example shop.

- ``SHOP_DATABASE_URL``: a PostgreSQL URL (``postgresql://user@host:port/db``,
  its ``options`` query parameter kept, e.g. a ``search_path``). The shop's
  tables and jobq's jobs then share that database, and a task enqueued inside
  ``transaction.atomic()`` commits or rolls back with the request.
- Without it: SQLite, the shop in ``db.sqlite3`` and the jobs in a file of
  their own, ``jobq.db``, both in ``SHOP_DATA_DIR`` (default: this folder).
"""

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SHOP_DATA_DIR", BASE_DIR)).resolve()

SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "example-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "orders",
    "jobq.contrib.django",  # manage.py jobq_worker
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]

database_url = os.environ.get("SHOP_DATABASE_URL")
if database_url:
    url = urlsplit(database_url)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(url.path.lstrip("/")),
            "USER": unquote(url.username or ""),
            "PASSWORD": unquote(url.password or ""),
            "HOST": url.hostname or "",
            "PORT": url.port or "",
            "OPTIONS": dict(parse_qsl(url.query)),
        }
    }
    # The jobs live in the "default" database, PostgreSQL: nothing to say.
    JOBQ_OPTIONS = {}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA_DIR / "db.sqlite3"}}
    JOBQ_OPTIONS = {"url": f"sqlite:///{DATA_DIR / 'jobq.db'}"}

TASKS = {
    "default": {
        "BACKEND": "jobq.contrib.django.JobqBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {**JOBQ_OPTIONS, "worker": {"concurrency": 4}},
    }
}

LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
