"""Run detail's energy section: the quality badge, Wh ± 95 % CI and CV over repeats, energy above
idle beside the total, J/token and J per correct answer, the energy-noise verdicts and the
efficiency points — the same lines as ``greentui show`` (``backend.results.run_energy``), so the screen and
the CLI never disagree."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from backend.results.run_energy import energy_lines, run_energy_doc
from backend.text import safe_text


class EnergyPanel(Static):
    """Plain lines, redrawn by the screen when results change (``refresh_from``)."""

    DEFAULT_CSS = """
    EnergyPanel {
        height: auto;
        max-height: 14;
        overflow-y: auto;
    }
    """

    def refresh_from(self, store: Any, run: dict[str, Any]) -> None:
        doc = run_energy_doc(store, run)
        lines = energy_lines(doc)
        if not lines:
            self.update(Text("no energy figures yet", style="dim"))
            return
        text = Text()
        for i, line in enumerate(lines):
            style = "bold" if line.startswith("quality:") else ("yellow" if line.startswith("FLAG") else "")
            text.append(safe_text(line) + ("\n" if i < len(lines) - 1 else ""), style=style)  # meters: outside text
        self.update(text)
