"""The PostgreSQL backend (:class:`PostgresStore`): its verbs in :mod:`.store`,
the plumbing in :mod:`.resilience` (pool, outages), :mod:`.listen`
(wake-ups), :mod:`.schema` and :mod:`.sql` (statement builders).

Importing it needs psycopg (the ``postgres`` extra)."""

from .listen import LISTEN_FALLBACK_POLL
from .resilience import POOL_SIZE, POOL_TIMEOUT
from .store import CRON_TABLE, PostgresStore

__all__ = ["CRON_TABLE", "LISTEN_FALLBACK_POLL", "POOL_SIZE", "POOL_TIMEOUT", "PostgresStore"]
