"""``greentui doctor``: check a workspace and repair what can be repaired without losing anything.

Checks, in order: whether the workspace can be written at all, the store's integrity (``PRAGMA
integrity_check``), runs left ``running`` by a process that is gone, run folders with no run row,
and finished runs whose folder is gone. With ``repair=True``: a damaged store is copied aside and
rebuilt with ``VACUUM INTO`` (the copy is kept; the rebuilt file replaces it only when it passes the
integrity check itself), stale running rows become ``interrupted`` (what the runner would do at its
next start), orphaned run folders are moved into ``orphaned/`` inside the workspace (never deleted,
never nested: a name already there gets a suffix). Nothing else is touched.

Every finding has a level: ``ok``, ``fixed`` (repaired now), ``WARN`` (something lost that nothing can
bring back — a finished run's deleted folder: its results in the store are intact) and ``PROBLEM``;
doctor exits non-zero exactly when it prints a PROBLEM. A read-only workspace is said to be one (not
"damaged"): its store is checked read-only, and ``--repair`` refuses in one line before touching it.
All SQL goes through the store (``backend.store``); this module only moves files.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import GreentuiError
from backend.store import Store, StoreError, integrity_problems, vacuum_into
from backend.workspace import db_path, run_dir

RUN_FOLDER = re.compile(r"^run-(\d{5,})$")


@dataclass
class Finding:
    """One thing doctor found: what, whether it is a problem, and what was (or would be) done."""

    check: str
    ok: bool
    detail: str
    action: str = ""
    warning: bool = False           # lost for good, nothing to repair: reported, not failed

    @property
    def mark(self) -> str:
        if self.ok:
            return "ok"
        if self.action.startswith("repaired"):
            return "fixed"
        return "WARN" if self.warning else "PROBLEM"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False exactly when a finding prints as PROBLEM (the exit code follows what is printed)."""
        return all(f.mark != "PROBLEM" for f in self.findings)

    def add(self, *args, **kwargs) -> Finding:
        f = Finding(*args, **kwargs)
        self.findings.append(f)
        return f


def writable(workspace: Path) -> str | None:
    """None when greentui can write the workspace and its store; else why not (a read-only mount,
    folder or file)."""
    path = db_path(workspace)
    for target in (workspace, path):
        if target.exists() and not os.access(target, os.W_OK):
            return f"{target} is read-only"
    return None


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
    why = vacuum_into(path, fresh)
    if why is not None:
        fresh.unlink(missing_ok=True)
        return False, (f"could not rebuild it ({why}); the damaged file is kept as {backup.name}: recover "
                       f"rows with `sqlite3 {path} .recover | sqlite3 new.db` and move new.db to {path.name}")
    if integrity_problems(fresh) != ["ok"]:
        fresh.unlink(missing_ok=True)
        return False, f"the rebuilt copy is damaged too; the original is kept as {backup.name}"
    os.replace(fresh, path)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    return True, f"repaired: rebuilt with VACUUM INTO; the damaged file is kept as {backup.name}"


def _free_name(dest: Path, name: str) -> Path:
    """``dest/name``, or ``dest/name.2``, ``.3``… when taken: an orphan never lands inside another."""
    target, n = dest / name, 1
    while target.exists() or target.is_symlink():
        n += 1
        target = dest / f"{name}.{n}"
    return target


def diagnose(workspace: Path, repair: bool = False) -> Report:
    """Run every check on ``workspace`` (an existing one); repair where safe when asked.

    Raises GreentuiError (one line) for ``repair`` on a workspace that cannot be written.
    """
    from backend.execution.supervisor import run_alive

    report = Report()
    path = db_path(workspace)
    read_only = writable(workspace)
    if read_only is not None:
        if repair:
            raise GreentuiError(f"doctor --repair: {read_only}; nothing can be repaired there — make the "
                                "workspace writable (or copy it somewhere writable) and run it again")
        report.add("workspace", False, f"{read_only}: greentui cannot record anything in this workspace",
                   "make it writable; the checks that need the store's own tools were skipped")
        problems = integrity_problems(path, immutable=True)
        if problems == ["ok"]:
            report.add("integrity", True, f"{path.name}: integrity check ok (read-only)")
        else:
            report.add("integrity", False, f"{path.name} is damaged: {_short(problems)}",
                       "make the workspace writable, then `greentui doctor --repair`")
        return report
    try:  # refuses a foreign database before anything else looks at it
        Store(path, check=False).close()
    except StoreError:
        pass  # damaged: the integrity check below says how
    problems = integrity_problems(path)
    if problems == ["ok"]:
        report.add("integrity", True, f"{path.name}: integrity check ok")
    else:
        f = report.add("integrity", False, f"{path.name} is damaged: {_short(problems)}",
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
        known = store.runs.ids()
        finished = store.runs.finished_with_folders()
    _check_folders(workspace, known, finished, report, repair)
    check_meters(report)
    return report


def check_meters(report: Report) -> None:
    """Which energy meters can measure here (the registry's answer, plugins included), and why the
    others cannot: without a counter every energy figure is an estimate, and doctor says so. A meter
    plugin that fails to load is a warning (its figures would be missing), never a problem."""
    from backend.service.meters import broken_meters, meter_status

    status = meter_status()
    usable = [f"{name} ({kind})" for name, _label, kind, why in status if why is None]
    others = "; ".join(f"{name}: {why}" for name, _label, _kind, why in status if why is not None)
    counters = [name for name, _label, kind, why in status if why is None and kind == "counter"]
    detail = (f"meters here: {', '.join(usable) or 'none'}"
              + ("" if counters else " — no energy counter: every energy figure is an estimate")
              + (f"; not here: {others}" if others else ""))
    report.add("energy meters", True, detail)
    for name, why in broken_meters().items():
        report.add("energy meters", False, f"meter plugin {name!r} did not load: {why}",
                   "reinstall or remove that package", warning=True)


def _check_folders(workspace: Path, known: set[int], finished: list[int], report: Report, repair: bool) -> None:
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
            moved = []
            for i in orphans:
                target = _free_name(dest, folders[i].name)
                os.rename(folders[i], target)
                moved.append(target.name)
            f.action = f"repaired: moved into {dest} ({', '.join(moved[:10])})"
    else:
        report.add("run folders", True, "every run folder belongs to a run")
    gone = [i for i in finished if not run_dir(workspace, i).is_dir()]
    if gone:
        shown = ", ".join(map(str, gone[:10])) + (f" and {len(gone) - 10} more" if len(gone) > 10 else "")
        report.add("deleted folders", False, f"finished run(s) {shown} have no run folder any more (config, "
                   "events, logs and lm-eval files are gone); their results in the store are intact",
                   "nothing to repair; `greentui rm` removes a run you no longer want", warning=True)
    else:
        report.add("deleted folders", True, "every finished run has its folder")


def _short(problems: list[str]) -> str:
    return " ".join(" ".join(problems).split())[:300]
