"""The SQLite store: the one channel between the UI, the CLI and the runner processes."""

from backend.store.database import (
                                    ACTIVE_STATES,
                                    RUN_STATES,
                                    ChangeToken,
                                    Store,
                                    StoreError,
                                    check_integrity_in_background,
                                    open_store,
)

__all__ = ["ACTIVE_STATES", "RUN_STATES", "ChangeToken", "Store", "StoreError",
           "check_integrity_in_background", "open_store"]
