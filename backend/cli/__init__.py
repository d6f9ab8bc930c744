"""The command line: the ``greentui`` console script (``main``) and one module per command."""

from backend.cli.main import main

__all__ = ["main"]
