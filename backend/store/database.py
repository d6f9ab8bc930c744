"""The SQLite store: schema, migrations and every query of the project (the only module with SQL).

Why SQLite in WAL mode: the TUI, the detached runner and CLI commands are separate processes that
read and write the same workspace at once; WAL lets readers proceed while one writer commits, and a
busy timeout turns lock contention into a short wait instead of "database is locked". Multi-statement
writes take the write lock up front (``BEGIN IMMEDIATE``) so two writers never deadlock upgrading a
read lock. A run's task results are written in one transaction, so a killed process leaves either a
whole task row or none.

Only stdlib ``sqlite3`` and ``sqlite_utils`` are imported here: the UI imports this module and must
start fast.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from backend.errors import GreentuiError
from backend.store.tables import MIGRATIONS, SCHEMA_VERSION, now

if TYPE_CHECKING:
    import sqlite_utils

SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 30_000

# ------------------------------------------------------------------------------------------- store

class ChangeToken(NamedTuple):
    """A cheap fingerprint of the store (``Store.change_token``); equal tokens mean nothing changed."""

    runs: int
    max_run: int | None
    active: int
    max_event: int | None
    max_result: int | None
    results: int
    models: int
    paused: str | None
    queue: str | None
    jobs: float | None = None   # the last change of a scheduler job's state (jobs.updated_at)

    @property
    def tables(self) -> tuple[Any, ...]:
        """Everything but the event cursor: what run, result, model and queue tables show (a
        progress event alone need not redraw a table)."""
        return self[:3] + self[4:]


class Store:
    """A connection to one workspace's database. Cheap to open; one per thread or process."""

    def __init__(self, path: str | Path, *, check: bool = True):
        """Open (creating when absent) the greentui store at ``path``.

        The rule: an existing file is opened as a store only when it is greentui's (it has the
        ``schema_version`` table) or holds no table at all; anything else is refused before a byte of
        it changes (no table added, no switch to WAL). A store is integrity-checked once per process
        (``PRAGMA quick_check``); a damaged one is refused with what to do (``greentui doctor``).
        ``check=False`` skips that check: ``greentui doctor`` opens damaged stores to report on them.
        """
        self.path = Path(path)
        _refuse_non_database(self.path)
        _refuse_read_only(self.path)
        conn = None
        try:
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False, factory=_Connection)
            conn.path = self.path
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _refuse_foreign(conn, self.path)  # before anything below can write to the file
            if check:
                _check_integrity_once(conn, self.path)
            conn.execute("PRAGMA foreign_keys = ON")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = NORMAL")
        except GreentuiError:
            if conn is not None:
                conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            raise GreentuiError(f"{self.path} is not a usable greentui database ({exc}); "
                                "it was left untouched — move it aside or pass another --runs-dir") from exc
        self.journal_mode = mode
        self.conn = conn
        self._db: Any = None
        self._migrate()
        from backend.store.events import EventRepository
        from backend.store.ingest import IngestRepository
        from backend.store.jobs import JobRepository
        from backend.store.models import ModelRepository
        from backend.store.queue import QueueRepository
        from backend.store.results import ResultRepository
        from backend.store.runners import RunnerRepository
        from backend.store.runs import RunRepository
        from backend.store.settings import SettingsRepository
        from backend.store.studies import StudyRepository
        self.settings = SettingsRepository(self)
        self.models = ModelRepository(self)
        self.runs = RunRepository(self)
        self.queue = QueueRepository(self)
        self.runners = RunnerRepository(self)
        self.results = ResultRepository(self)
        self.events = EventRepository(self)
        self.jobs = JobRepository(self)
        self.ingest = IngestRepository(self)
        self.studies = StudyRepository(self)

    # ---------------------------------------------------------------- plumbing
    @property
    def db(self) -> "sqlite_utils.Database":
        """sqlite_utils over the same connection, made on first use: importing sqlite_utils pulls in
        pandas and numpy when installed (~1.5 s), which the TUI's first screen must not wait for."""
        if self._db is None:
            import sqlite_utils
            self._db = sqlite_utils.Database(self.conn)
        return self._db

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Take the write lock now (BEGIN IMMEDIATE), commit on success, roll back on error."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def _migrate(self) -> None:
        """Bring the schema up to date. A store that is up to date is only read here: opening one
        (``ls``, the TUI) never waits for the write lock, which a long writer (an import) may hold."""
        try:
            current = self.conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
        except sqlite3.OperationalError:
            current = 0  # a new, empty file: no schema_version table yet
        if current == SCHEMA_VERSION:
            return
        with self.transaction() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at REAL)")
            row = c.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > SCHEMA_VERSION:
                raise GreentuiError(
                    f"{self.path} has schema version {current}, newer than this greentui ({SCHEMA_VERSION}); "
                    "upgrade greentui")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version - 1](self.db)
                c.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, now()))

    def schema_version(self) -> int:
        return self.conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]

    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, tuple(params))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def _row(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    # ---------------------------------------------------------------- models
    # ---------------------------------------------------------------- queue
    # ---------------------------------------------------------------- baselines
    # ---------------------------------------------------------------- events and power
    def change_token(self) -> ChangeToken:
        """A cheap fingerprint that changes whenever a run, event, result or the queue changes.

        The TUI polls it twice a second and redraws only when it moves (indexed MAX/COUNT lookups).
        """
        return ChangeToken(*self.conn.execute(
            "SELECT (SELECT COUNT(*) FROM runs), (SELECT MAX(id) FROM runs), "
            "(SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running')), "
            "(SELECT MAX(id) FROM events), (SELECT MAX(id) FROM task_results), "
            "(SELECT COUNT(*) FROM task_results), (SELECT COUNT(*) FROM models), "
            "(SELECT value FROM settings WHERE key = 'queue_paused'), "
            "(SELECT group_concat(id || status || COALESCE(position, '') || COALESCE(cancel_requested, '')) "
            " FROM (SELECT id, status, position, cancel_requested FROM runs "
            "  WHERE status IN ('queued', 'running') ORDER BY position, id)), "
            "(SELECT MAX(updated_at) FROM jobs)").fetchone())


    # ---------------------------------------------------------------- bulk, for tests and benches
    def insert_rows(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        """Insert many rows in one transaction (the demo seeding and the 10,000-run bench use it)."""
        rows = list(rows)
        if not rows:
            return
        cols = list(rows[0])
        with self.transaction() as c:
            c.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                          [tuple(r.get(k) for k in cols) for r in rows])


# Database files this process has already checked (and so may hold open with SQLite locks).
_CHECKED: set[str] = set()


def _refuse_non_database(path: Path) -> None:
    """Never open (and so never let SQLite rewrite) a file that is not an SQLite database.

    The header is read once per process and path, before this process's first connection: SQLite's
    locks are POSIX advisory locks, which ``close()`` of *any* descriptor on the file drops for the
    whole process (sqlite.org/howtocorrupt.html §2.2). Re-reading the header while another Store of
    this process is open would drop its locks; another process closing its connection would then
    think it was the last one, checkpoint and delete the WAL under us, and our later writes would go
    to an orphaned WAL that no other process sees (a queued run or a result silently lost).
    """
    if path.is_dir():
        raise GreentuiError(f"{path} is a directory, not a greentui database")
    key = str(path.resolve())
    if key in _CHECKED:
        return
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as fh:
            head = fh.read(16)
        if head != SQLITE_MAGIC:
            raise GreentuiError(f"{path} is not an SQLite database (corrupted or another file); "
                                "it was left untouched — move it aside or pass another --runs-dir")
    _CHECKED.add(key)  # absent or empty: SQLite creates it, and it is ours from now on


class StoreError(GreentuiError, sqlite3.OperationalError):
    """SQLite refused a read or write for a reason the user can act on (full disk, read-only file,
    damaged file): one line naming the file and what to do. Still an ``OperationalError``, so code
    that handles SQLite errors keeps working."""


def explain(exc: sqlite3.Error, path: Path) -> GreentuiError | None:
    """The one-line answer to an SQLite error a user can fix, or None for anything else (a bug)."""
    text = str(exc).lower()
    if "disk is full" in text or "disk full" in text:
        return StoreError(f"the disk holding {path} is full ({exc}); free some space and retry — what was "
                          "already recorded is intact")
    if "readonly" in text or "read-only" in text:
        return StoreError(f"{path} is read-only ({exc}); greentui must write to its store, so make the file "
                          "and its folder writable or pass another --runs-dir")
    if "malformed" in text or "not a database" in text or "disk i/o error" in text:
        return StoreError(f"{path} is damaged ({exc}); run `greentui doctor --runs-dir {path.parent}` "
                          "to check it and for what to do")
    return None


class _Connection(sqlite3.Connection):
    """A connection whose errors that the user can fix become one-line ``StoreError``s."""

    path: Path = Path("greentui.db")

    def execute(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        try:
            return super().execute(*args, **kwargs)
        except StoreError:
            raise
        except sqlite3.Error as exc:
            better = explain(exc, self.path)
            if better is None:
                raise
            raise better from exc

    def executemany(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        try:
            return super().executemany(*args, **kwargs)
        except sqlite3.Error as exc:
            better = explain(exc, self.path)
            if better is None:
                raise
            raise better from exc


def _refuse_read_only(path: Path) -> None:
    """A store greentui cannot write (read-only file, folder or file system) is refused at open with
    one line: even reading a WAL store needs its ``-shm`` file, and every command records something."""
    folder = path.parent
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreError(f"{path} is read-only; greentui must write to its store, so make it writable "
                         "or pass another --runs-dir")
    if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"the folder of {path} is read-only; greentui must write its store there (and "
                         "the store's -wal/-shm files), so make it writable or pass another --runs-dir")


def _refuse_foreign(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a database that is neither greentui's (``schema_version``) nor empty; reads only."""
    try:
        tables = [r[0] for r in sqlite3.Connection.execute(
            conn, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()]
    except sqlite3.DatabaseError as exc:
        raise GreentuiError(f"{path} cannot be read as an SQLite database ({exc}); it was left untouched — "
                            f"run `greentui doctor --runs-dir {path.parent}` or move it aside") from exc
    if tables and "schema_version" not in tables:
        shown = ", ".join(tables[:5]) + (", …" if len(tables) > 5 else "")
        raise GreentuiError(f"{path} is another application's SQLite database (tables: {shown}), not a "
                            "greentui store; it was left untouched — pass another --runs-dir")


_INTEGRITY_CHECKED: set[str] = set()


def _check_integrity_once(conn: sqlite3.Connection, path: Path) -> None:
    """``PRAGMA quick_check`` the first time this process opens ``path`` (milliseconds on a store of
    10,000 runs): a damaged page is reported at open, with what to do, not as a traceback later."""
    key = str(path.resolve())
    if key in _INTEGRITY_CHECKED:
        return
    try:
        rows = [r[0] for r in sqlite3.Connection.execute(conn, "PRAGMA quick_check(5)").fetchall()]
    except sqlite3.DatabaseError as exc:
        rows = [str(exc)]
    if rows != ["ok"]:
        detail = " ".join(" ".join(rows).split())[:200]
        raise GreentuiError(f"{path} is damaged (integrity check: {detail}); run `greentui doctor "
                            f"--runs-dir {path.parent}` to check it and recover what it can (it keeps a copy)")
    _INTEGRITY_CHECKED.add(key)


def check_integrity_in_background(path: str | Path) -> Callable[[], None]:
    """Start this process's integrity check of ``path`` on a thread; return the wait for its verdict.

    Why: ``PRAGMA quick_check`` reads the whole file (~20 ms for 10,000 runs, more as the store grows)
    and SQLite lets go of the GIL while it reads, so the TUI runs it on another core while Textual
    builds its first screen (P2), then waits for the verdict before the first query. The check and its
    one-line error are those of ``Store(path)``; the wait raises that ``GreentuiError``.
    """
    path = Path(path)
    verdict: list[BaseException] = []

    def check() -> None:
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
            try:
                _check_integrity_once(conn, path)
            finally:
                conn.close()
        except GreentuiError as exc:
            verdict.append(exc)
        except sqlite3.Error as exc:
            verdict.append(explain(exc, path) or GreentuiError(f"{path} cannot be checked ({exc})"))

    thread = threading.Thread(target=check, name="greentui-integrity", daemon=True)
    thread.start()

    def wait() -> None:
        thread.join()
        if verdict:
            raise verdict[0]

    return wait


def integrity_problems(path: Path, *, immutable: bool = False) -> list[str]:
    """``PRAGMA integrity_check`` of the file, opened read-only: ``["ok"]`` or what is wrong.

    ``immutable`` reads a store on a read-only file system, where SQLite cannot create the ``-shm``
    that a read of a WAL store otherwise needs (safe there: nothing can write to it).
    """
    uri = f"{path.resolve().as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        return [str(exc)]
    try:
        return [r[0] for r in conn.execute("PRAGMA integrity_check(20)").fetchall()]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    finally:
        conn.close()


def vacuum_into(path: Path, fresh: Path) -> str | None:
    """Copy what SQLite can still read of ``path`` into a new file ``fresh`` (``VACUUM INTO``);
    None on success, else SQLite's reason."""
    conn = sqlite3.connect(str(path))
    try:
        conn.execute("VACUUM INTO ?", (str(fresh),))
        return None
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()


def open_store(workspace: Path) -> Store:
    from backend.workspace import db_path
    return Store(db_path(workspace))
