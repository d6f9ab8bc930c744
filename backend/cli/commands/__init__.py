"""One module per CLI subcommand.

Each module exposes ``register(subparsers, parents)`` which adds its parser(s) with
``parser.set_defaults(func=run)``, and ``run(args) -> int``. ``args.runs_dir`` is always present (the
global ``--runs-dir``). Raise ``backend.errors.GreentuiError`` for user errors: ``backend.cli.main``
prints it as one line on stderr and exits 2.
"""
