"""What a run can be: the run schema (every setting once), its machinery, the workspace's
``greentui.toml``, and the fixed vocabularies (methods, architectures, stages, tasks).

Standard library only at import time: every layer above, the UI included, imports it.
"""
