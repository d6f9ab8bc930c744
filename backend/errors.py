"""One exception type for every failure a user can cause or fix.

The CLI prints ``GreentuiError`` as one line on stderr and exits non-zero; the TUI shows it in a
notification. Anything else is a bug and keeps its traceback.
"""


class GreentuiError(Exception):
    """A user-facing error: the message alone must tell the user what went wrong and what to do."""
