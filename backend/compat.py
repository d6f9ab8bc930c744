"""Every private internal of a framework that greentui relies on, in one place, with the versions it
was checked against.

A private name (``App._handle_exception``, ``textual.widgets._footer``, plotext's ``_utility``,
lm-eval's evaluator internals) can change in any release. Each one greentui touches is reached
through this module only, so an upgrade is checked here: :func:`checked` says whether the installed
version is one the shim was written for, and a shim whose framework moved on degrades (a feature
lost, a warning logged) instead of failing at a user.

Standard library only at import time: the UI imports this module; each framework is imported inside
the function that needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager
from functools import lru_cache
from importlib import metadata

log = logging.getLogger("greentui.compat")


@lru_cache(maxsize=None)
def version_of(distribution: str) -> tuple[int, ...]:
    """The installed version of ``distribution`` as numbers (``(8, 2, 8)``); ``()`` when absent."""
    try:
        text = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ()
    parts: list[int] = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def checked(distribution: str, lowest: tuple[int, ...], below: tuple[int, ...]) -> bool:
    """Whether the installed ``distribution`` is within ``[lowest, below)``: the versions a shim was
    written and tested for. Outside that range the caller takes its fallback and this logs why."""
    have = version_of(distribution)
    ok = bool(have) and lowest <= have < below
    if not ok:
        log.warning("%s %s is outside the versions greentui's shim was checked with (%s to below %s)",
                    distribution, ".".join(map(str, have)) or "(absent)", ".".join(map(str, lowest)),
                    ".".join(map(str, below)))
    return ok


# ------------------------------------------------------------------------------------------ Textual
# Checked with Textual 8.x (pyproject: textual>=8.0,<9). Each shim below reaches one private name and
# degrades to Textual's public behaviour when the name is gone or the version is outside the range.

TEXTUAL_CHECKED = ((8, 0), (9, 0))


def _textual_ok(what: str, present: bool) -> bool:
    if present and checked("textual", *TEXTUAL_CHECKED):
        return True
    if not present:
        log.warning("textual %s: %s is gone; greentui falls back to Textual's default",
                    ".".join(map(str, version_of("textual"))) or "(absent)", what)
    return False


def route_uncaught_errors(app: object, handler: Callable[[Exception], bool]) -> bool:
    """Show ``handler(error)`` every exception no handler caught in ``app`` before Textual's own
    handling (``App._handle_exception``, private): the workbench ends on a store error with the CLI's
    one line instead of a traceback. ``handler`` returns True when it dealt with the error; otherwise
    Textual's handling (its traceback) follows. Returns False (nothing installed) when Textual moved on;
    an error then shows as Textual's traceback, the app otherwise unchanged."""
    original = getattr(app, "_handle_exception", None)
    if not _textual_ok("App._handle_exception", callable(original)) or original is None:
        return False

    def _handle_exception(error: Exception) -> None:
        if not handler(error):
            original(error)

    app._handle_exception = _handle_exception  # type: ignore[attr-defined]  # the instance's, not the class's
    return True


def start_at_app_css_generation(screen: object, app: object) -> bool:
    """Give a new ``screen`` the app's stylesheet generation (``_css_update_count``, private).

    Why: Textual re-parses every stylesheet (~40 ms, bench P2) when a mode's first screen carries an
    older generation than the app's; a screen built at the current one skips that, and a later theme
    change still restyles it. Without the attribute this costs only those 40 ms."""
    count = getattr(app, "_css_update_count", None)
    if not _textual_ok("App._css_update_count", isinstance(count, int) and hasattr(screen, "_css_update_count")):
        return False
    screen._css_update_count = count  # type: ignore[attr-defined]
    return True


def footer_parts():
    """Textual's footer pieces ``(FooterKey, FooterLabel, KeyGroup)`` from ``textual.widgets._footer``
    (private: the footer widget is public, its parts are not), or ``None`` when they moved, in which
    case ``KeyFooter`` shows Textual's own footer (every key, in Textual's order)."""
    try:
        from textual.widgets._footer import FooterKey, FooterLabel, KeyGroup
    except ImportError:
        _textual_ok("textual.widgets._footer", False)
        return None
    if not _textual_ok("textual.widgets._footer", True):
        return None
    return FooterKey, FooterLabel, KeyGroup


# ------------------------------------------------------------------------------------------ plotext
# Checked with plotext 5.3 (pyproject: plotext>=5.3,<6).

PLOTEXT_CHECKED = ((5, 3), (6, 0))


def _ordered_no_duplicates(data) -> list:
    """``plotext._utility.no_duplicates`` keeping the first of each item, in order (plotext's goes
    through a ``set``: which of two crowded tick labels survived, and in what order, depended on the
    interpreter's hash seed, so axis labels moved by a column from one start of the app to the next)."""
    return list(dict.fromkeys(data))


@lru_cache(maxsize=None)
def stable_plotext_ticks() -> bool:
    """Replace plotext's ``_utility.no_duplicates`` (private; its modules call it as
    ``_utility.no_duplicates`` at run time, so one assignment covers every figure) with the ordered one.
    Without it (plotext moved on) charts still draw; crowded tick labels may then differ between runs."""
    try:
        import plotext._utility as utility
    except ImportError:
        log.warning("plotext._utility is gone; tick labels keep plotext's own (unordered) de-duplication")
        return False
    if not callable(getattr(utility, "no_duplicates", None)):
        log.warning("plotext._utility.no_duplicates is gone; tick labels keep plotext's own de-duplication")
        return False
    if not checked("plotext", *PLOTEXT_CHECKED):
        return False
    utility.no_duplicates = _ordered_no_duplicates
    return True


# ------------------------------------------------------------------------------------------ lm-eval
# Checked with lm-eval 0.4.x (pyproject). ``simple_evaluate`` calls ``lm_eval.evaluator.add_env_info`` and
# ``get_git_commit_hash`` (module globals, not API) on every call.

LM_EVAL_CHECKED = ((0, 4), (0, 5))
_LM_EVAL_ENV: dict[str, object] = {}
_GIT_HASH: list[str | None] = []


def _git_hash() -> str | None:
    import subprocess
    if not _GIT_HASH:
        try:
            out = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, timeout=5)
            _GIT_HASH.append(out.stdout.strip() or None if out.returncode == 0 else None)
        except (OSError, subprocess.SubprocessError):
            _GIT_HASH.append(None)
    return _GIT_HASH[0]


@contextmanager
def cheap_lm_eval_env_info():
    """Within the block, lm-eval's per-call environment collection (torch's collect_env, pip: 0.5-2 s per
    task, inside an energy window; ``git describe`` printing "fatal: not a git repository" outside a repo)
    is done once per process and reused. Yields a function that pays it now (before any window).

    When lm-eval moved the two names, nothing is replaced: each call then pays the collection again
    (slower windows, the same results)."""
    import lm_eval.evaluator as ev

    orig_env, orig_git = getattr(ev, "add_env_info", None), getattr(ev, "get_git_commit_hash", None)
    if not (callable(orig_env) and callable(orig_git)) or not checked("lm-eval", *LM_EVAL_CHECKED):
        log.warning("lm_eval.evaluator.add_env_info/get_git_commit_hash moved: lm-eval collects its "
                    "environment on every call")
        yield lambda: None
        return

    def add_env_info(storage: dict[str, object]) -> None:
        if not _LM_EVAL_ENV:
            tmp: dict[str, object] = {}
            orig_env(tmp)
            _LM_EVAL_ENV.update(tmp)
        storage.update(_LM_EVAL_ENV)

    def warm() -> None:
        add_env_info({})
        _git_hash()

    ev.add_env_info, ev.get_git_commit_hash = add_env_info, _git_hash
    try:
        yield warm
    finally:
        ev.add_env_info, ev.get_git_commit_hash = orig_env, orig_git
