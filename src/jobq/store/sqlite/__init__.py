"""The SQLite backend (:class:`SQLiteStore`): the worker's verbs in
:mod:`.store`, the operators' in :mod:`.admin`, what both stand on in
:mod:`.core`; the plumbing in :mod:`.connection` (connections, the database
thread, busy waits, durability), :mod:`.wake` (wake-ups across processes)
and :mod:`.schema`."""

from .connection import BUSY_TIMEOUT, DURABILITY_MODES, Durability
from .store import CRON_TABLE, SQLiteStore

__all__ = ["BUSY_TIMEOUT", "CRON_TABLE", "DURABILITY_MODES", "Durability", "SQLiteStore"]
