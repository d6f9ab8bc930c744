"""Whole-screen snapshot comparisons for the TUI, with golden files in tests/snapshots/.

Why our own helper: pytest-textual-snapshot 1.1.0 pins syrupy 4.8, which does not run on pytest 9.
This does what it does, on text: the app runs headless at a fixed size (``app.run_test(size=...)``),
the current screen is rendered exactly as Textual's ``export_screenshot`` renders it, and the result
is compared as plain text (every cell of the screen, one line per row) with a golden file. Text
goldens diff readably in review; colours are not compared (an SVG of each screen can be written for
a look, see below).

Regenerate every golden after an intended UI change with one command::

    scripts/update-snapshots            # = GREENTUI_UPDATE_SNAPSHOTS=1 pytest tests/test_snapshots.py

and review the diff (``git diff tests/snapshots``) before committing. ``GREENTUI_SNAPSHOT_SVG=DIR``
also writes an SVG of each screen to DIR (``convert x.svg x.png`` to look at it).
"""

from __future__ import annotations

import difflib
import io
import os
from pathlib import Path

from rich.console import Console

SNAPSHOT_DIR = Path(__file__).resolve().parent / "snapshots"
UPDATE = os.environ.get("GREENTUI_UPDATE_SNAPSHOTS", "") not in ("", "0")


def screen_text(app) -> str:
    """Every cell of the app's current screen (with the screens below a modal), as plain text."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", record=True, legacy_windows=False, safe_box=False)
    # What App.export_screenshot renders (textual 8), exported as text instead of SVG.
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    lines = console.export_text(styles=False).splitlines()
    return "\n".join(line.rstrip() for line in lines) + "\n"


def freeze(app) -> None:
    """Remove what changes between two renders of the same state: the blinking cursor."""
    from textual.widgets import Input

    for widget in app.screen.query(Input):
        widget.cursor_blink = False


async def settled_text(app, pilot, tries: int = 20) -> str:
    """The screen once two renders 0.1 s apart agree (charts may redraw once after a resize)."""
    freeze(app)
    text = screen_text(app)
    for _ in range(tries):
        await pilot.pause(0.1)
        again = screen_text(app)
        if again == text:
            break
        text = again
    return text


async def check(app, pilot, name: str) -> str | None:
    """Compare the current screen with ``snapshots/NAME.txt``; return a diff on mismatch.

    With GREENTUI_UPDATE_SNAPSHOTS=1 the golden is (re)written instead and None is returned.
    """
    golden = SNAPSHOT_DIR / f"{name}.txt"
    expected = golden.read_text() if golden.exists() else None
    freeze(app)
    # A first render equal to the golden is the settled screen the golden holds: the settling wait
    # (0.1 s a screen at least) is for screens that are still redrawing, and for writing goldens.
    text = screen_text(app)
    if UPDATE or text != expected:
        text = await settled_text(app, pilot)
    svg_dir = os.environ.get("GREENTUI_SNAPSHOT_SVG")
    if svg_dir:
        Path(svg_dir).mkdir(parents=True, exist_ok=True)
        (Path(svg_dir) / f"{name}.svg").write_text(app.export_screenshot(title=name))
    if UPDATE:
        SNAPSHOT_DIR.mkdir(exist_ok=True)
        golden.write_text(text)
        return None
    if expected is None:
        return f"{name}: no golden file {golden.name}; create it with scripts/update-snapshots"
    if text == expected:
        return None
    diff = difflib.unified_diff(expected.splitlines(), text.splitlines(), f"{name} (golden)",
                                f"{name} (now)", lineterm="", n=1)
    return "\n".join(diff)
