"""``greentui doctor``: check a workspace and repair what can be repaired without losing anything.

Checks, in order: the store's integrity (``PRAGMA integrity_check``), runs left ``running`` by a
process that is gone, and run folders with no run row (or run rows whose folder is gone). With
``repair=True``: a damaged store is copied aside and rebuilt with ``VACUUM INTO`` (the copy is kept;
the rebuilt file replaces it only when it passes the integrity check itself), stale running rows
become ``interrupted`` (what the runner would do at its next start), orphaned run folders are moved
into ``orphaned/`` inside the workspace (never deleted). Nothing else is touched.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from backend.store import Store, StoreError
from backend.workspace import db_path

RUN_FOLDER = re.compile(r"^run-(\d{5,})$")


@dataclass
class Finding:
    """One thing doctor found: what, whether it is a problem, and what was (or would be) done."""

    check: str
    ok: bool
    detail: str
    action: str = ""


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok or f.action.startswith("repaired") for f in self.findings)

    def add(self, *args, **kwargs) -> Finding:
        f = Finding(*args, **kwargs)
        self.findings.append(f)
        return f


def _integrity(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("PRAGMA integrity_check(20)").fetchall()]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    finally:
        conn.close()


def _rebuild(path: Path) -> tuple[bool, str]:
    """Copy the damaged file aside, VACUUM INTO a new file, swap it in only if it checks clean."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.name}.damaged-{stamp}")
    shutil.copy2(path, backup)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            shutil.copy2(side, backup.with_name(backup.name + suffix))
    fresh = path.with_name(f"{path.name}.rebuilt-{stamp}")
    conn = sqlite3.connect(str(path))
    try:
        conn.execute("VACUUM INTO ?", (str(fresh),))
    except sqlite3.DatabaseError as exc:
        fresh.unlink(missing_ok=True)
        return False, (f"could not rebuild it ({exc}); the damaged file is kept as {backup.name}: recover "
                       f"rows with `sqlite3 {path} .recover | sqlite3 new.db` and move new.db to {path.name}")
    finally:
        conn.close()
    if _integrity(fresh) != ["ok"]:
        fresh.unlink(missing_ok=True)
        return False, f"the rebuilt copy is damaged too; the original is kept as {backup.name}"
    os.replace(fresh, path)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    return True, f"repaired: rebuilt with VACUUM INTO; the damaged file is kept as {backup.name}"


def diagnose(workspace: Path, repair: bool = False) -> Report:
    """Run every check on ``workspace`` (an existing one); repair where safe when asked."""
    from backend.execution.supervisor import run_alive

    report = Report()
    path = db_path(workspace)
    try:  # refuses a foreign database before anything else looks at it
        Store(path, check=False).close()
    except StoreError:
        pass  # damaged: the integrity check below says how
    problems = _integrity(path)
    if problems == ["ok"]:
        report.add("integrity", True, f"{path.name}: integrity check ok")
    else:
        detail = " ".join(" ".join(problems).split())[:300]
        f = report.add("integrity", False, f"{path.name} is damaged: {detail}",
                       "run `greentui doctor --repair` to rebuild it (a copy is kept)")
        if repair:
            done, f.action = _rebuild(path)
            if not done:
                return report
        else:
            return report  # the other checks read the store; they wait for the repair
    with Store(path) as store:
        runners = {r["id"]: r for r in store.runners.active()}  # pid + start time, or a live claimer
        stale = [r["id"] for r in store.runs.running() if not run_alive(r, runners)]
        if stale:
            f = report.add("stale runs", False, f"run(s) {', '.join(map(str, stale))} are marked running but "
                           "no process runs them", "run `greentui doctor --repair` to mark them interrupted")
            if repair:
                store.runs.mark_interrupted(stale, "the runner process disappeared (found by greentui doctor)")
                f.action = "repaired: marked interrupted (the queue is paused; greentui resume goes on)"
        else:
            report.add("stale runs", True, "no run is left running without a process")
        known = {int(r[0]) for r in store.conn.execute("SELECT id FROM runs").fetchall()}
    folders = {int(m.group(1)): p for p in sorted(workspace.iterdir())
               if p.is_dir() and (m := RUN_FOLDER.match(p.name))}
    orphans = sorted(set(folders) - known)
    if orphans:
        f = report.add("run folders", False, f"{len(orphans)} run folder(s) with no run in the store: "
                       + ", ".join(folders[i].name for i in orphans[:10]),
                       "run `greentui doctor --repair` to move them into orphaned/ (nothing is deleted)")
        if repair:
            dest = workspace / "orphaned"
            dest.mkdir(exist_ok=True)
            for i in orphans:
                shutil.move(str(folders[i]), str(dest / folders[i].name))
            f.action = f"repaired: moved into {dest}"
    else:
        report.add("run folders", True, "every run folder belongs to a run")
    return report
