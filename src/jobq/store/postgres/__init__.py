"""The PostgreSQL backend (:class:`PostgresStore`): the worker's verbs in
:mod:`.store`, the operators' in :mod:`.admin`, what both stand on in
:mod:`.core`; the plumbing in :mod:`.resilience` (pool, outages),
:mod:`.listen` (wake-ups), :mod:`.transactional` (inserts on the
application's connection), :mod:`.schema` and :mod:`.sql` (statements
PostgreSQL alone has).

Importing it needs psycopg (the ``postgres`` extra)."""

from .listen import LISTEN_FALLBACK_POLL
from .resilience import POOL_SIZE, POOL_TIMEOUT
from .store import CRON_TABLE, PostgresStore

__all__ = ["CRON_TABLE", "LISTEN_FALLBACK_POLL", "POOL_SIZE", "POOL_TIMEOUT", "PostgresStore"]
