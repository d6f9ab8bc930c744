"""The SQLite store: the one channel between the UI, the CLI and the runner processes.

``Store`` is one connection; its repositories (``store.runs``, ``store.queue``, ``store.results``,
``store.events``, ``store.models``, ``store.runners``, ``store.jobs``, ``store.ingest``,
``store.settings``) hold the queries of one concern each; ``tables`` holds the columns and migrations.
"""

from backend.store.database import (
    ChangeToken,
    Store,
    StoreError,
    check_integrity_in_background,
    integrity_problems,
    open_store,
    vacuum_into,
)
from backend.store.tables import ACTIVE_STATES, RUN_STATES

__all__ = ["ACTIVE_STATES", "RUN_STATES", "ChangeToken", "Store", "StoreError",
           "check_integrity_in_background", "integrity_problems", "open_store", "vacuum_into"]
