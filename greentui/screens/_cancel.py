"""Cancel runs the same way from every screen (``x``: Runs, Queue, Run detail).

A queued run is taken off the queue at once (``R`` queues it again); stopping a running run asks
first, with buttons that say what they do. The work is the service layer's
(``backend.service.runs.cancel``: a flag the run obeys at its next safe point).
"""

from __future__ import annotations

from collections.abc import Callable

from textual.screen import Screen

from backend.errors import GreentuiError

ACTIVE = ("queued", "running")


def cancel_runs(screen: Screen, run_ids: list[int], done: Callable[[], object] | None = None) -> None:
    """Cancel the queued and running runs among ``run_ids`` (asking before a running one is stopped);
    say so when none of them can be cancelled. ``done`` runs after a cancel (the screen reloads)."""
    store = screen.app.store
    rows = [r for r in (store.runs.get(i) for i in run_ids) if r is not None]
    active = [r for r in rows if r["status"] in ACTIVE]
    if not active:
        what = ", ".join(f"run {r['id']} is {r['status']}" for r in rows[:3]) or "no run"
        screen.notify(f"nothing to cancel: {what}", severity="warning")
        return

    def go(yes: bool | None = True) -> None:
        if not yes:
            return
        from backend.service.runs import cancel  # the service layer (the supervisor behind it)
        said = []
        for r in active:
            try:
                said.append(f"run {r['id']}: {cancel(store, r['id'])}")
            except GreentuiError as exc:
                screen.notify(str(exc), severity="error")
        if said:
            screen.notify("; ".join(said))
        if done is not None:
            done()

    running = [r["id"] for r in active if r["status"] == "running"]
    if running:
        from greentui.widgets.confirm import ConfirmScreen  # the widgets package: not at start-up (P2)
        which = ", ".join(map(str, running))
        queued = len(active) - len(running)
        also = f" and take {queued} queued run(s) off the queue" if queued else ""
        screen.app.push_screen(ConfirmScreen(f"Stop running run {which}{also}? Finished tasks are kept.",
                                             yes="Stop the run", no="Keep it running"), go)
    else:
        go()
