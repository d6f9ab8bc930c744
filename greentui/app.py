"""The greentui workbench: a Textual app over the workspace's SQLite store.

The UI never does the work (docs/architecture.md): it records runs through the service layer
(``backend.service.runs``), which starts the detached runner, and reads what the runner writes. A 0.5 s timer
compares the store's :meth:`~backend.store.Store.change_token` and publishes the ``store_changed``
signal when it moved; screens subscribe to it (``screens/_live.py``). Polling SQLite is cheap, needs
no connection to the runner, and survives an SSH drop that kills this process (the runner, in its own
session, keeps going).

Thread workers never take the app down: they run with ``exit_on_error=False`` and the one
``on_worker_state_changed`` handler below turns any failure into a notification.

Only torch-free modules are imported here (and never the CLI's command modules);
``tests/test_tui.py`` checks both in a fresh interpreter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.signal import Signal
from textual.worker import Worker, WorkerState

from backend.compat import route_uncaught_errors
from backend.errors import GreentuiError
from backend.schema.catalog import DEMO_DURATION
from backend.schema.wsconfig import workspace_keymap
from backend.service.execution import recover_stale_runs, runner_pid
from backend.store import ChangeToken, Store, check_integrity_in_background
from backend.text import safe_text
from backend.workspace import PACKAGE_DATA, db_path

from .keymap import binding, check_keymap
from .screens.runs import RunsScreen
from .signals import StoreChange


def _queue_screen() -> Screen:
    from .screens.queue import QueueScreen
    return QueueScreen()


def _models_screen() -> Screen:
    from .screens.models import ModelsScreen
    return ModelsScreen()


def _studies_screen() -> Screen:
    from .screens.studies import StudiesScreen
    return StudiesScreen()


class GreentuiApp(App):
    """Models, Runs, New run, Run detail, Compare, Queue and Studies over one workspace."""

    CSS_PATH = "app.tcss"
    TITLE = "greentui"
    SUB_TITLE = "does pruning this LLM save energy?"
    # screens other than the first are imported when first shown (the first frame waits for nothing else)
    MODES = {"runs": RunsScreen, "queue": _queue_screen, "models": _models_screen, "studies": _studies_screen}
    DEFAULT_MODE = "runs"
    _SCREENS = Binding.Group("Runs/Queue/Models/Studies", compact=True)
    # the app's keys (greentui/keymap.py holds every key of the app, with its id for the user's keymap)
    BINDINGS = [
        binding("help"),
        binding("runs", group=_SCREENS), binding("queue", group=_SCREENS), binding("models", group=_SCREENS),
        binding("studies", group=_SCREENS),
        binding("quit"),  # not a priority key: q types into a text field, Ctrl+Q quits from there too
        binding("new_run"),
        binding("demo"),
    ]
    POLL_INTERVAL = 0.5
    NOTIFICATION_TIMEOUT = 4  # s: a toast says what happened and goes (errors set their own, longer)
    DEMO_BUILD_TIMEOUT_S = 600.0  # the random-model fallback's build subprocess (no shipped model)
    # = backend.service.runs.SHIPPED_DEMO_MODEL; spelled here so the first frame need not import backend.service.runs
    # (run schema, task registry): P2, the start with 10,000 runs, is measured against a bare app
    DEMO_SHIPPED_MODEL: Path | None = PACKAGE_DATA / "demo-model"
    # screens get -narrow below 100 columns (80x24 is a first-class size) and -wide above
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]

    def __init__(self, workspace: Path, *, device: str = "auto", manage_runner: bool = True,
                 auto_demo: bool = False) -> None:
        """``manage_runner=False`` never starts the detached runner (fast tests on a seeded store)."""
        super().__init__()
        self.workspace = Path(workspace)
        self.device = device
        self.manage_runner = manage_runner
        self.auto_demo = auto_demo
        # The integrity check of a store reads all of it: it runs on a thread while Textual builds the
        # first screen, and the first query waits for its verdict (store_ready; P2).
        self.store = Store(db_path(self.workspace), check=False)
        self._integrity_wait: Callable[[], None] | None = check_integrity_in_background(db_path(self.workspace))
        #: the one-line error that ended the app (a damaged store…); run_workbench raises it
        self.fatal_error: GreentuiError | None = None
        self._token: ChangeToken | None = None
        #: published (a StoreChange) whenever the store's change token moved
        self.store_changed: Signal[StoreChange] = Signal(self, "store-changed")
        self.recovered: list[int] = []  # runs found dead at start (store_ready)
        self._first_frame_callbacks: list[Callable[[], object]] | None = []  # None once it is shown
        self.demo_busy = False
        self._quitting = False
        route_uncaught_errors(self, self.uncaught_error)
        # the user's keymap (greentui.toml [keys]): checked here, so a bad one is the CLI's one line
        keymap = workspace_keymap(self.workspace)
        if keymap:
            self.set_keymap(check_keymap(keymap, self.workspace / "greentui.toml"))

    # ------------------------------------------------------------------ lifecycle
    def store_ready(self) -> bool:
        """Wait for the store's integrity check; False (and ``fatal_error`` set) if the store is damaged.

        The first screen calls this before its first query (it mounts before the app's on_mount, which
        then ends the app: exiting while a screen mounts breaks Textual's mount)."""
        if self._integrity_wait is not None:
            wait, self._integrity_wait = self._integrity_wait, None
            try:
                wait()
                # before the first screen reads the store: a dead runner's run shows as interrupted
                self.recovered = recover_stale_runs(self.store)
            except GreentuiError as exc:
                self.fatal_error = exc
        return self.fatal_error is None

    def fail(self, error: GreentuiError) -> None:
        """End the app on an error the user must act on; the CLI prints it as one line (exit code 2)."""
        if self.fatal_error is None:
            self.fatal_error = error
        self.exit(return_code=2)

    def uncaught_error(self, error: BaseException) -> bool:
        """A store error that no handler caught (disk full, damaged page) ends the app as one line,
        like the CLI's, not as a traceback; anything else is a bug and keeps Textual's traceback.
        (Textual's hook for it is private: ``backend.compat.route_uncaught_errors``.)"""
        if isinstance(error, GreentuiError):
            self.fail(error)
            return True
        return False

    def on_mount(self) -> None:
        if not self.store_ready():
            self.fail(self.fatal_error)
            return
        self.sub_title = safe_text(self.workspace)
        if self.recovered:
            ids = ", ".join(map(str, self.recovered))
            self.notify(f"run(s) {ids} were interrupted (the runner died); the queue is paused — "
                        "press p on the Queue screen to resume", severity="warning", timeout=15)
        elif self.store.queue.paused() and self.store.runs.count(statuses=["queued"]):
            self.notify("the queue is paused (Queue screen, p to resume)", severity="warning")
        # after the first frame: starting the runner imports the run service (schema, tasks), ~40 ms
        # of the UI's start otherwise (issue #12, P2)
        self.after_first_frame(self.ensure_runner)
        self._token = self.store.change_token()
        self.set_interval(self.POLL_INTERVAL, self.poll_store, name="poll-store")
        if self.auto_demo:
            self.action_demo()

    def after_first_frame(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once the first frame is on the screen (Textual's ``Ready``), or soon if it is.

        Work that the first frame does not show (the rest of the first page, starting the runner)
        waits for it, so the user sees the workbench as early as possible (P2)."""
        if self._first_frame_callbacks is None:
            self.call_later(callback)
        else:
            self._first_frame_callbacks.append(callback)

    def on_ready(self) -> None:
        callbacks, self._first_frame_callbacks = self._first_frame_callbacks or [], None
        for callback in callbacks:
            self.call_later(callback)

    def on_unmount(self) -> None:
        try:
            self.store.close()
        except Exception:
            pass

    def open_store(self) -> Store:
        """A separate connection, for thread workers (a connection is not shared across threads)."""
        return Store(db_path(self.workspace))

    def poll_store(self) -> None:
        """Publish ``store_changed`` when the store moved (runs, events, results, models, queue)."""
        try:
            token = self.store.change_token()
        except Exception:  # a locked or vanished database must never kill the UI
            return
        if token != self._token:
            change = StoreChange(token, self._token)
            self._token = token
            self.store_changed.publish(change)

    NOTIFY_LIMIT = 600  # characters of a toast: a long name in an error must not fill the screen

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Every toast is plain text: its message often quotes outside text (a model path, an error with
        ``[/]`` in it), which must never be read as markup (``[@click=app.quit]`` would be a link that
        runs an action) nor reach the terminal with its control characters. ``markup`` is ignored."""
        kwargs = {} if timeout is None else {"timeout": timeout}
        super().notify(safe_text(message, self.NOTIFY_LIMIT), title=safe_text(title, 80), severity=severity,
                       markup=False, **kwargs)

    # ------------------------------------------------------------------ workers
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every thread worker's failure (any exception) ends here, as a notification, never a crash."""
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        if isinstance(error, GreentuiError):
            message = str(error)
        elif isinstance(error, TimeoutError) or type(error).__name__ == "TimeoutExpired":
            message = f"{event.worker.name or 'a background task'} timed out: {error}"
        else:
            message = f"{event.worker.name or 'a background task'} failed: {type(error).__name__}: {error}"
        self.notify(message, severity="error", timeout=20)

    # ------------------------------------------------------------------ runner
    def runner_pid(self) -> int | None:
        return runner_pid(self.workspace, self.device)

    def ensure_runner(self) -> int | None:
        """Start the detached runner when runs wait, the queue is not paused and none is alive."""
        if not self.manage_runner:
            return None
        from backend.service.runs import start_runners
        try:
            return start_runners(self.workspace, self.store, self.device)
        except OSError as exc:
            self.notify(f"cannot start the runner: {exc}", severity="error")
            return None

    # ------------------------------------------------------------------ navigation
    def action_go(self, mode: str) -> None:
        """``1/2/3``: the mode's *first* screen (Runs, Queue, Models), whatever is open above it."""
        if self.current_mode != mode:
            self.switch_mode(mode)
        while len(self.screen_stack) > 1:  # Run detail, Compare, New run, a dialog: back to the list
            self.pop_screen()

    def action_help(self) -> None:
        from .widgets.keys import HelpScreen, key_rows
        if type(self.screen).__name__ == "HelpScreen":
            self.screen.dismiss(None)
            return
        title = {"RunsScreen": "Runs", "QueueScreen": "Queue", "ModelsScreen": "Models",
                 "RunDetailScreen": "Run detail", "CompareScreen": "Compare",
                 "NewRunScreen": "New run", "StudiesScreen": "Studies", "StudyScreen": "Study",
                 "NewStudyScreen": "New study"}.get(type(self.screen).__name__, type(self.screen).__name__)
        self.push_screen(HelpScreen(key_rows(self.screen), title))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Once quitting, the app's keys do nothing: a key typed while the app closes (n) would open a
        screen that the shutdown then tears down half-built (a NoMatches traceback after the exit)."""
        return not self._quitting

    async def action_quit(self) -> None:
        """Quit; say what the runner is still doing (it is a separate process and goes on). Once: keys
        typed while the app closes (q, or Ctrl+Q and q together) must not print the message twice and
        Textual's "1 of 2 errors shown" after it."""
        if self._quitting:
            return
        self._quitting = True
        message = None
        try:
            running = self.store.runs.count(statuses=["running"])
            queued = self.store.runs.count(statuses=["queued"])
        except Exception:
            running = queued = 0
        if running or queued:
            message = (f"greentui closed; the runner goes on with {running} running and {queued} queued "
                       f"run(s) in {self.workspace} — run greentui again to watch them.")
        self.exit(message=message)

    def action_new_run(self, model: str | None = None) -> None:
        from .screens.new_run import NewRunScreen
        self.push_screen(NewRunScreen(model=model))

    def clone_run(self, run_id: int) -> None:
        """Open New run filled with run ``run_id``'s recorded config (edit it, then queue)."""
        from backend.errors import GreentuiError
        from backend.service.form_advice import run_config

        from .screens.new_run import NewRunScreen
        try:
            cfg = run_config(self.store, run_id)
        except GreentuiError as exc:
            self.notify(str(exc), severity="error")
            return
        self.push_screen(NewRunScreen(config=cfg, source=f"run {run_id}"))

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
        if self.store.runs.count():  # one key on an empty workspace; asks first otherwise
            from .widgets.confirm import ConfirmScreen
            self.push_screen(ConfirmScreen("Build the tiny demo model (if needed) and queue another demo run?",
                                           yes="Queue demo"),
                             lambda yes: self._start_demo() if yes else None)
            return
        self._start_demo()

    def _start_demo(self) -> None:
        self.demo_busy = True
        self.notify(f"queueing a demo run of the tiny trained demo model ({DEMO_DURATION})…", timeout=6)
        self._demo_worker()

    @work(thread=True, exclusive=True, group="demo", name="building the demo", exit_on_error=False)
    def _demo_worker(self) -> None:
        """A failure (a build error, a timeout) reaches ``on_worker_state_changed``; ``finally`` frees the key."""
        from backend.service.runs import queue_demo
        store = self.open_store()
        try:
            run_id = queue_demo(self.workspace, store, start=self.manage_runner, device=self.device,
                                timeout=self.DEMO_BUILD_TIMEOUT_S, shipped=self.DEMO_SHIPPED_MODEL)
        finally:
            store.close()
            self.call_from_thread(setattr, self, "demo_busy", False)
        self.call_from_thread(self._demo_done, run_id)

    def _demo_done(self, run_id: int) -> None:
        self.notify(f"demo run {run_id} queued; the runner is on it")
        self.ensure_runner()
        self.poll_store()
        self.open_run(run_id)

    # ------------------------------------------------------------------ command palette
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The app's actions: every key of the current screen and the app, export, theme, quit.

        Widget internals (a table's cursor keys, focus next/previous) and Textual's "Keys" panel
        (replaced by the Help screen, which Esc closes) are left out.
        """
        for cmd in super().get_system_commands(screen):
            if cmd.title == "Theme":
                yield cmd
        yield SystemCommand("Screenshot", "Save an SVG picture of the screen in the workspace",
                            lambda: self.set_timer(0.1, self.save_screenshot_in_workspace))
        yield SystemCommand("Quit", "Close greentui; queued and running runs go on in the runner [ctrl+q]",
                            lambda: self.call_later(self.run_action, "quit"))
        for fmt, (name, what) in EXPORT_FORMATS.items():
            yield SystemCommand(f"Export tables ({name})", f"{what} of every run to "
                                f"{export_file_name(fmt)} in the workspace, like greentui export --format {fmt}",
                                lambda fmt=fmt: self.export_tables(fmt))
        seen: set[str] = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.description or binding.action in seen or binding.action == "quit":
                continue
            if active.node is not screen and active.node is not self:
                continue  # a focused widget's own keys (cursor moves…) are not app actions
            if binding.action.startswith("command_palette"):
                continue
            seen.add(binding.action)
            node, action = active.node, binding.action
            yield SystemCommand(binding.description, f"{binding.tooltip or binding.description} "
                                f"[{binding.key_display or key}]",
                                lambda node=node, action=action: self.call_later(self.run_action, action, node))

    def export_tables(self, fmt: str = "md") -> None:
        """Write the study tables of every run in the workspace (``greentui export``'s content)."""
        from backend.results.export_file import write_export
        from backend.results.report import render
        path = self.workspace / export_file_name(fmt)
        try:
            write_export(path, render(self.store, fmt) + "\n")
        except (GreentuiError, OSError) as exc:
            self.notify(f"export failed: {exc}", severity="error", markup=False)
            return
        self.notify(f"wrote {path}", markup=False)

    def save_screenshot_in_workspace(self) -> None:
        """An SVG of the screen, saved in the workspace and named in a notification.

        Why not Textual's own Screenshot command: it saves to the user's Downloads folder, which a
        headless box (an SSH session on a GPU server) often does not have, and the save failed there.
        """
        try:
            path = self.save_screenshot(path=str(self.workspace))
        except OSError as exc:
            self.notify(f"screenshot failed: {exc.strerror or exc}", severity="error", markup=False)
            return
        self.notify(f"screenshot saved to {path}", title="Screenshot", markup=False)


#: the palette's exports: format → (its name, what it holds); the files are those of ``greentui export``
EXPORT_FORMATS = {"md": ("Markdown", "Table 1 (accuracy), Table 2 (Wh) and the energy tables"),
                  "latex": ("LaTeX", "The same tables as LaTeX"),
                  "csv": ("CSV", "One line per run, variant and task with stderr, meters and configs"),
                  "json": ("JSON", "Every table, run, result and check")}


def export_file_name(fmt: str) -> str:
    return f"greentui-tables.{'tex' if fmt == 'latex' else fmt}"


def run_workbench(workspace: Path, *, device: str = "auto", demo: bool = False) -> None:
    """Open the workbench on ``workspace`` (the console script's ``greentui``, ``tui`` and ``demo``)."""
    app = GreentuiApp(workspace, device=device, auto_demo=demo)
    app.run()
    if app.fatal_error is not None:
        raise app.fatal_error
