"""The greentui workbench: a Textual app over the workspace's SQLite store.

The UI never does the work (design.md): it records runs in the store, starts the detached runner
(``backend.supervisor.start_runner``) and reads what the runner writes. A 0.5 s timer compares the
store's :meth:`~backend.store.Store.change_token` and tells the visible screen to refresh when it
moved — polling SQLite is cheap, needs no connection to the runner, and survives an SSH drop that
kills this process (the runner, in its own session, keeps going).

Only torch-free modules are imported here; ``tests/test_tui.py`` checks that torch stays out.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from backend.errors import GreentuiError
from backend.store import Store
from backend.supervisor import recover_stale_runs, runner_pid, start_runner
from backend.workspace import db_path

from .screens.runs import RunsScreen


def _queue_screen() -> Screen:
    from .screens.queue import QueueScreen
    return QueueScreen()


def _models_screen() -> Screen:
    from .screens.models import ModelsScreen
    return ModelsScreen()


class GreentuiApp(App):
    """Models, Runs, New run, Run detail, Compare and Queue over one workspace."""

    CSS_PATH = "app.tcss"
    TITLE = "greentui"
    SUB_TITLE = "does pruning this LLM save energy?"
    # screens other than the first are imported when first shown (the first frame waits for nothing else)
    MODES = {"runs": RunsScreen, "queue": _queue_screen, "models": _models_screen}
    DEFAULT_MODE = "runs"
    BINDINGS = [
        Binding("1", "switch_mode('runs')", "Runs", tooltip="All runs with their averages and ratios"),
        Binding("2", "switch_mode('queue')", "Queue", tooltip="Queued and running runs"),
        Binding("3", "switch_mode('models')", "Models", tooltip="Models in the workspace and HF cache"),
        Binding("n", "new_run", "New run", tooltip="Queue a run with the study's defaults"),
        Binding("d", "demo", "Demo", tooltip="Build the tiny demo model and queue a demo run"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]
    POLL_INTERVAL = 0.5

    def __init__(self, workspace: Path, *, device: str = "auto", manage_runner: bool = True,
                 auto_demo: bool = False) -> None:
        """``manage_runner=False`` never starts the detached runner (fast tests on a seeded store)."""
        super().__init__()
        self.workspace = Path(workspace)
        self.device = device
        self.manage_runner = manage_runner
        self.auto_demo = auto_demo
        self.store = Store(db_path(self.workspace))
        self._token: tuple | None = None
        self.table_token: tuple | None = None
        # before the first screen reads the store: a dead runner's run shows as interrupted at once
        self.recovered: list[int] = recover_stale_runs(self.store)
        self.demo_busy = False

    # ------------------------------------------------------------------ lifecycle
    def on_mount(self) -> None:
        self.sub_title = str(self.workspace)
        if self.recovered:
            ids = ", ".join(map(str, self.recovered))
            self.notify(f"run(s) {ids} were interrupted (the runner died); the queue is paused — "
                        "press p on the Queue screen to resume", severity="warning", timeout=15)
        elif self.store.queue_paused() and self.store.count_runs(statuses=["queued"]):
            self.notify("the queue is paused (Queue screen, p to resume)", severity="warning")
        self.ensure_runner()
        self._token = self.store.change_token()
        self.table_token = self._token[:3] + self._token[4:]
        self.set_interval(self.POLL_INTERVAL, self.poll_store, name="poll-store")
        if self.auto_demo:
            self.action_demo()

    def on_unmount(self) -> None:
        try:
            self.store.close()
        except Exception:
            pass

    def open_store(self) -> Store:
        """A separate connection, for thread workers (a connection is not shared across threads)."""
        return Store(db_path(self.workspace))

    def poll_store(self) -> None:
        """Tell the visible screen when the store changed (runs, events, results, queue)."""
        try:
            token = self.store.change_token()
        except Exception:  # a locked or vanished database must never kill the UI
            return
        try:
            screen = self.screen
        except Exception:  # noqa: BLE001 - the app is starting or closing: no screen to tell
            return
        if token != self._token:
            self._token = token
            # runs, queue, results and models without the event cursor: tables need not redraw
            # for every progress event of a running run
            self.table_token = token[:3] + token[4:]
            refresh = getattr(screen, "store_changed", None)
            if refresh is not None and screen.is_mounted:
                refresh()
        tick = getattr(screen, "tick", None)
        if tick is not None:
            tick()

    # ------------------------------------------------------------------ runner
    def runner_pid(self) -> int | None:
        return runner_pid(self.workspace, self.device)

    def ensure_runner(self) -> int | None:
        """Start the detached runner when runs wait, the queue is not paused and none is alive."""
        if not self.manage_runner:
            return None
        try:  # Slurm jobs are followed even while the queue is paused (pausing stops submissions only)
            from backend.executors.slurm import ensure_slurm_runner
            ensure_slurm_runner(self.workspace, self.store)
        except OSError as exc:
            self.notify(f"cannot start the Slurm runner: {exc}", severity="error")
        if self.store.queue_paused() or not self.store.count_runs(statuses=["queued"]):
            return None
        try:
            return start_runner(self.workspace, self.device)
        except OSError as exc:
            self.notify(f"cannot start the runner: {exc}", severity="error")
            return None

    # ------------------------------------------------------------------ navigation
    def action_new_run(self, model: str | None = None) -> None:
        from .screens.new_run import NewRunScreen
        self.push_screen(NewRunScreen(model=model))

    def open_run(self, run_id: int) -> None:
        from .screens.run_detail import RunDetailScreen
        self.push_screen(RunDetailScreen(run_id))

    def open_compare(self, run_ids: list[int], tab: str = "radar") -> None:
        from .screens.compare import CompareScreen
        self.push_screen(CompareScreen(run_ids, tab=tab))

    # ------------------------------------------------------------------ demo
    def action_demo(self) -> None:
        if self.demo_busy:
            self.notify("the demo is already being prepared")
            return
        if self.store.count_runs():  # one key on an empty workspace; asks first otherwise
            from .widgets.confirm import ConfirmScreen
            self.push_screen(ConfirmScreen("Build the tiny demo model (if needed) and queue another demo run?",
                                           yes="Queue demo"),
                             lambda yes: self._start_demo() if yes else None)
            return
        self._start_demo()

    def _start_demo(self) -> None:
        self.demo_busy = True
        self.notify("building the tiny demo model and queueing a demo run (a few minutes on CPU)…",
                    timeout=8)
        self._demo_worker()

    @work(thread=True, exclusive=True, group="demo")
    def _demo_worker(self) -> None:
        from .demo import queue_demo
        store = self.open_store()
        try:
            run_id = queue_demo(self.workspace, store, start=self.manage_runner)
        except (GreentuiError, OSError, ValueError) as exc:
            self.call_from_thread(self._demo_done, None, str(exc))
        else:
            self.call_from_thread(self._demo_done, run_id, None)
        finally:
            store.close()

    def _demo_done(self, run_id: int | None, error: str | None) -> None:
        self.demo_busy = False
        if error:
            self.notify(error, severity="error", timeout=20)
            return
        self.notify(f"demo run {run_id} queued; the runner is on it")
        self.ensure_runner()
        self.poll_store()
        self.open_run(run_id)

    # ------------------------------------------------------------------ command palette
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every key binding of the current screen (and the app) is also a palette command."""
        yield from super().get_system_commands(screen)
        seen: set[str] = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.description or binding.action in seen or binding.action == "quit":
                continue
            if binding.action.startswith("command_palette"):
                continue
            seen.add(binding.action)
            node, action = active.node, binding.action
            yield SystemCommand(binding.description, f"{binding.tooltip or binding.description} "
                                f"[{binding.key_display or key}]",
                                lambda node=node, action=action: self.call_later(self.run_action, action, node))
