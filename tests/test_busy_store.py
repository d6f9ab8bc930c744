"""A busy store never takes the runner down, nor the runs it launched (#22 2.2).

A real second SQLite connection holds the write lock (``BEGIN IMMEDIATE``) longer than the runner's
busy timeout, as a long import or a stuck writer would. The runner's heartbeat write then fails with
"database is locked"; it must wait and retry, not end (ending would take its in-flight runs with it).
"""

from __future__ import annotations

import sqlite3
import threading
import time

from backend.execution.executors import RunnerContext
from backend.execution.worker import Runner, build_executors
from backend.store import open_store
from backend.workspace import db_path


def test_the_runner_survives_a_writer_holding_the_lock(workspace, capfd):
    store = open_store(workspace)
    store.conn.execute("PRAGMA busy_timeout = 50")        # the 30 s default, shortened for the test
    runner_id = store.runners.register("host", 1, None, requested="cpu", devices=[], executors=["local"])
    exs = build_executors(RunnerContext(workspace=workspace, runner_id=runner_id, requested_device="cpu"),
                          ["local"])
    runner = Runner(workspace, store, exs, runner_id)
    before = store.runners.get(runner_id)["heartbeat_at"]
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        other = sqlite3.connect(db_path(workspace), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE settings SET value = value")
        holding.set()
        release.wait(10)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=writer)
    thread.start()
    holding.wait(5)
    threading.Timer(1.0, release.set).start()
    t0 = time.time()
    try:
        assert runner.loop(once=True) == 0                # nothing queued: done, after the lock went
    finally:
        release.set()
        thread.join()
        for ex in exs:
            ex.close()
    assert time.time() - t0 >= 0.9
    assert store.runners.get(runner_id)["heartbeat_at"] > before   # the heartbeat was written after all
    assert "the store is busy" in capfd.readouterr().err
    store.close()


def test_readers_open_and_list_while_a_writer_holds_the_lock(workspace, cli):
    """``ls`` (and the UI, which opens the store the same way) is never blocked by a writer: opening a
    store whose schema is current takes no write lock (it used to: a 30 s wait, then a traceback)."""
    from backend.store import Store

    Store(db_path(workspace)).close()                      # the store exists, schema current
    other = sqlite3.connect(db_path(workspace), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE settings SET value = value")
    try:
        proc = cli("ls")
    finally:
        other.execute("COMMIT")
        other.close()
    assert proc.returncode == 0, proc.stderr
    assert "runs (0 in all)" in proc.stdout
