"""The SQLite store: schema, migrations, concurrency across processes, refusal of foreign files."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from backend.errors import GreentuiError
from backend.store import Store
from backend.store.tables import SCHEMA_VERSION

WRITER = textwrap.dedent("""
    import sys
    from backend.store import Store
    db, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = Store(db)
    run = s.runs.create(None, "experiment", {"tag": tag}, status="running")
    for i in range(n):
        if i % 2:
            s.events.add(run, "log", {"i": i, "tag": tag})
        else:
            s.results.save_task_results(run, [{"variant": "pruned", "task": f"t{i}", "acc": 0.5, "energy_kwh": 1e-6}])
    s.runs.finish(run, "done")
    print(run)
""")


def test_fresh_store_has_schema_wal_and_foreign_keys(tmp_path):
    s = Store(tmp_path / "g.db")
    assert s.schema_version() == SCHEMA_VERSION
    assert s.journal_mode == "wal"
    assert s.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    tables = set(s.db.table_names())
    assert {"models", "runs", "task_results", "events", "power_samples", "schema_version"} <= tables
    with pytest.raises(sqlite3.IntegrityError):
        s.runs.create(9999, "experiment", {})  # no such model


def test_reopening_does_not_migrate_twice(tmp_path):
    Store(tmp_path / "g.db").close()
    s = Store(tmp_path / "g.db")
    assert s.conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path):
    s = Store(tmp_path / "g.db")
    s.conn.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 5,))
    s.close()
    with pytest.raises(GreentuiError, match="newer than this greentui"):
        Store(tmp_path / "g.db")


def test_four_processes_write_concurrently_without_losing_rows(tmp_path):
    db = tmp_path / "g.db"
    Store(db).close()
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), "2500", f"w{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(4)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "locked" not in err
    s = Store(db)
    assert s.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 4 * 1250
    assert s.conn.execute("SELECT COUNT(*) FROM task_results").fetchone()[0] == 4 * 1250
    assert s.conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'done'").fetchone()[0] == 4
    assert s.integrity_check() == "ok"


@pytest.mark.parametrize("content", [b"this is not a database\n" * 10, b"\x00\x01garbage" * 100])
def test_a_file_that_is_not_a_database_is_refused_and_left_untouched(tmp_path, content):
    db = tmp_path / "greentui.db"
    db.write_bytes(content)
    with pytest.raises(GreentuiError, match="not an SQLite database.*left untouched"):
        Store(db)
    assert db.read_bytes() == content
    assert not (tmp_path / "greentui.db-wal").exists()


def test_truncated_database_gives_clear_error(tmp_path):
    db = tmp_path / "greentui.db"
    s = Store(db)
    s.runs.create(None, "experiment", {})
    s.close()
    data = db.read_bytes()
    db.write_bytes(data[:100] + b"\xff" * 200)  # valid magic, broken header and pages
    with pytest.raises(GreentuiError):
        Store(db)


def test_task_results_are_written_in_one_transaction(tmp_path):
    s = Store(tmp_path / "g.db")
    run = s.runs.create(None, "experiment", {})
    rows = [{"variant": "pruned", "task": "boolq", "acc": 0.6}, {"variant": "bogus", "task": "piqa", "acc": 0.5}]
    with pytest.raises(ValueError):
        s.results.save_task_results(run, rows)
    assert s.results.task_results(run) == []  # the valid first row was rolled back with the bad one


def test_claim_is_exclusive_and_respects_pause_and_order(tmp_path):
    s = Store(tmp_path / "g.db")
    a = s.runs.create(None, "experiment", {"n": 1})
    b = s.runs.create(None, "experiment", {"n": 2})
    s.queue.move(b, -1)
    assert [r["id"] for r in s.queue.candidates()] == [b, a]
    s.queue.set_paused(True)
    assert not s.queue.claim(b, runner_id=1, executor="local", device="cpu")
    s.queue.set_paused(False)
    assert s.queue.claim(b, runner_id=1, executor="local", device="cpu", slot="cpu")
    assert not s.queue.claim(b, runner_id=2, executor="local", device="cpu")  # one claim per run
    run = s.runs.get(b)
    assert (run["status"], run["runner_id"], run["executor"], run["slot"]) == ("running", 1, "local", "cpu")
    assert [r["id"] for r in s.queue.candidates()] == [a]


def test_interrupted_runs_pause_the_queue_and_keep_whole_results(tmp_path):
    s = Store(tmp_path / "g.db")
    run = s.runs.create(None, "experiment", {}, status="running", pid=999999)
    s.results.save_task_result(run, "pruned", "boolq", {"acc": 0.5})
    assert s.runs.mark_interrupted([run], "gone") == 1
    assert s.runs.get(run)["status"] == "interrupted"
    assert s.queue.paused()
    assert len(s.results.task_results(run)) == 1


def test_list_runs_summarises_against_the_baseline(tmp_path):
    s = Store(tmp_path / "g.db")
    m = s.models.upsert("/m", name="m", arch="llama")
    base = s.runs.create(m, "baseline", {}, status="done")
    exp = s.runs.create(m, "experiment", {"importance": "taylor", "prune_ratio": 0.25}, parent_run_id=base)
    s.results.save_task_results(base, [{"variant": "vanilla", "task": "boolq", "acc": 0.8, "energy_kwh": 0.002},
                               {"variant": "vanilla", "task": "piqa", "acc": 0.6, "energy_kwh": 0.002}])
    s.results.save_task_results(exp, [{"variant": "pruned", "task": "boolq", "acc": 0.6, "energy_kwh": 0.001},
                              {"variant": "pruned", "task": "piqa", "acc": 0.45, "energy_kwh": 0.002}])
    row = next(r for r in s.runs.list() if r["id"] == exp)
    assert row["avg_acc"] == pytest.approx(0.525)
    assert row["base_acc"] == pytest.approx(0.7)
    assert row["acc_ratio"] == pytest.approx(0.75)
    assert row["avg_wh"] == pytest.approx(1.5)
    assert row["wh_ratio"] == pytest.approx(0.75)
    assert row["method"] == "taylor" and row["prune_ratio"] == 0.25
    assert s.runs.count(text="taylor") == 1
    assert [r["id"] for r in s.runs.list(order="avg_acc", descending=True)][0] == base


@pytest.mark.parametrize("order", ["id", "model", "status", "avg_acc", "avg_wh", "acc_ratio", "wh_ratio",
                                   "created", "ratio", "method", "position"])
def test_list_runs_pages_agree_with_one_page_and_with_the_averages(tmp_path, order):
    """Every sort key, both directions: pages of 2 join up to the one-page list, and each row's own and
    baseline averages are those of its task results, whichever way the page was chosen (page-first for
    plain keys, all averages first for the average keys)."""
    s = Store(tmp_path / "g.db")
    m1, m2 = s.models.upsert("/a", name="a", arch="llama"), s.models.upsert("/b", name="b", arch="llama")
    base = s.runs.create(m1, "baseline", {}, status="done")
    runs = [base]
    for i, (acc, wh) in enumerate([(0.6, 0.001), (0.4, 0.003), (0.7, 0.002)]):
        run = s.runs.create(m1 if i % 2 else m2, "experiment", {"importance": ["taylor", "l1", "random"][i],
                           "prune_ratio": [0.2, 0.5, 0.3][i]}, parent_run_id=base, status="done")
        s.results.save_task_results(run, [{"variant": "pruned", "task": "boolq", "acc": acc, "energy_kwh": wh}])
        runs.append(run)
    ref = s.runs.create(m2, "reference", {}, status="done")  # a published pair: its own baseline
    s.results.save_task_results(ref, [{"variant": "vanilla", "task": "boolq", "acc": 0.9, "energy_kwh": 0.004},
                              {"variant": "pruned", "task": "boolq", "acc": 0.45, "energy_kwh": 0.002}])
    runs += [ref, s.runs.create(m1, "experiment", {}, status="failed", parent_run_id=base)]
    s.results.save_task_results(base, [{"variant": "vanilla", "task": "boolq", "acc": 0.8, "energy_kwh": 0.002}])
    expected = {base: (0.8, None), runs[1]: (0.6, 0.75), runs[2]: (0.4, 0.5), runs[3]: (0.7, 0.875),
                ref: (0.45, 0.5), runs[-1]: (None, None)}
    for descending in (True, False):
        whole = s.runs.list(limit=100, order=order, descending=descending)
        paged = [r for off in range(0, 6, 2) for r in s.runs.list(limit=2, offset=off, order=order,
                                                                   descending=descending)]
        assert paged == whole and sorted(r["id"] for r in whole) == sorted(runs)
        for r in whole:
            acc, ratio = expected[r["id"]]
            assert r["avg_acc"] == pytest.approx(acc) and r["acc_ratio"] == pytest.approx(ratio), r
    assert [r["id"] for r in s.runs.list(order="acc_ratio", limit=2)] == [runs[3], runs[1]]
    # a filter (the Runs screen's `/`, `greentui ls --status`) with the same order, one page and two
    of_b = s.runs.list(limit=100, order=order, text="/b")
    assert sorted(r["id"] for r in of_b) == sorted([runs[1], runs[3], ref])
    assert [r for off in (0, 2) for r in s.runs.list(limit=2, offset=off, order=order, text="/b")] == of_b
    assert runs[-1] not in {r["id"] for r in s.runs.list(limit=100, order=order, statuses=["done"])}


def test_delete_refuses_running_runs(tmp_path):
    s = Store(tmp_path / "g.db")
    r = s.runs.create(None, "experiment", {}, status="running", pid=os.getpid())
    with pytest.raises(GreentuiError, match="running"):
        s.runs.delete([r])
    s.runs.finish(r, "failed", "x")
    assert s.runs.delete([r]) == 1


@pytest.mark.parametrize("before", [1, 3])
def test_a_database_made_before_the_control_plane_upgrades_in_place(tmp_path, monkeypatch, before):
    """A workspace made by the code before the control plane (the first schema, and the one just
    before it) opens, gains the control plane, and keeps its rows."""
    import backend.store.database as store_mod
    assert store_mod.MIGRATIONS[before].__name__ == "_migration_control_plane" or before == 1
    path = tmp_path / "old.db"
    with monkeypatch.context() as m:
        m.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:before])
        m.setattr(store_mod, "SCHEMA_VERSION", before)
        old = Store(path)
        assert old.schema_version() == before
        queued = old.runs.create(None, "experiment", {"model": "m"})
        running = old.runs.create(None, "baseline", {"model": "m"}, status="running", pid=424242)
        old.results.save_task_result(running, "vanilla", "boolq", {"acc": 0.5})
        old.close()
    new = Store(path)
    assert new.schema_version() == store_mod.SCHEMA_VERSION > before
    cols = {r[1] for r in new.conn.execute("PRAGMA table_info(runs)")}
    assert {"cancel_requested", "pid_start", "runner_id", "executor", "slot"} <= cols
    assert "runners" in {r[0] for r in new.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert new.runs.get(queued)["status"] == "queued" and new.runs.get(running)["pid"] == 424242
    assert len(new.results.task_results(running)) == 1
    assert new.queue.claim(queued, runner_id=new.runners.register("h", 1, 0.0, requested="auto", devices=[],
                                                               executors=[]), executor="local", device="cpu")
    assert new.queue.request_cancel(queued) == "cancelling"
    assert new.integrity_check() == "ok"
