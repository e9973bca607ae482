"""The SQLite backend (:class:`SQLiteStore`): its verbs in :mod:`.store`, the
plumbing in :mod:`.connection`, :mod:`.schema` and :mod:`.wake`."""

from .connection import BUSY_TIMEOUT, DURABILITY_MODES, Durability
from .store import CRON_TABLE, SQLiteStore

__all__ = ["BUSY_TIMEOUT", "CRON_TABLE", "DURABILITY_MODES", "Durability", "SQLiteStore"]
