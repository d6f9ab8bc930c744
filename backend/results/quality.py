"""A run's measurement-quality badge, for the UI: the results layer hands over what
``backend.measure.trust`` computes (the UI never imports the meters; import-linter holds it)."""

from __future__ import annotations

from backend.measure.trust import Badge, quality_badge

__all__ = ["Badge", "quality_badge"]
