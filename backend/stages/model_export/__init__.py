"""Pruned models that leave greentui: ``greentui export-model`` (see ``export.py`` for the steps and
``formats.py`` for what each format is and when it is possible).

``remote_modeling.py`` and ``decilm_modeling.py`` are not imported by greentui: they are the modelling
modules written into exported folders (transformers and torch only). ``check_load.py`` is the script a
fresh interpreter runs to load a folder the way a user would.
"""

from backend.stages.model_export.export import FIXED_TEXT, REPORT_FILE, ExportRequest, decide, export_model

__all__ = ["FIXED_TEXT", "REPORT_FILE", "ExportRequest", "decide", "export_model"]
