"""Turn a hang into an error: torch-pruning's dependency graph can loop forever (upstream #527)."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from backend.errors import GreentuiError


@contextmanager
def time_limit(seconds: float, what: str):
    """Raise ``GreentuiError`` if the body runs longer than ``seconds``.

    Uses ``SIGALRM``, so it only works in the main thread on Unix; elsewhere it is a no-op (the
    steps guarded here are built so that they cannot hit the known hang in the first place).
    """
    usable = (seconds and seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def _expired(signum, frame):
        raise GreentuiError(f"{what} did not finish within {seconds:g} s (torch-pruning's dependency "
                            "graph can loop forever on some attention shapes, upstream issue #527)")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
