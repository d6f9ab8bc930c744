"""Compare's Energy tab: the quality badge of each run, "paper vs yours" when a published reference
run sits beside your own, J/token, J per correct answer and Wh above idle per (run, variant), the
energy-noise verdicts, and the efficiency chart (J/token vs batch size, vanilla vs pruned).

All figures come from ``backend.results.report_energy.energy_sections`` — the same as every export."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from backend.results.ratios import Ratio
from backend.results.ratios import text as ratio_text
from backend.results.report import SHORT, Row
from backend.results.report_energy import energy_sections
from backend.text import safe_name, safe_text

from .efficiency import EfficiencyChart


def _f(x: float | None, fmt: str = ".4g") -> str:
    return "—" if x is None else format(x, fmt)


def paper_vs_yours(acc: list[Row], wh: list[Row]) -> list[str]:
    """One line per (reference pruned row, measured pruned row): their accuracy and energy ratios."""
    def ratios(rows: list[Row], reference: bool) -> list[tuple[Row, Ratio | None]]:
        return [(r, r.ratio) for r in rows if r.variant == "pruned" and (r.kind == "reference") == reference]

    lines = []
    wh_ratio = {(r.run_id, r.variant): r.ratio for r in wh}
    for ref, ref_acc in ratios(acc, True):
        for own, own_acc in ratios(acc, False):
            lines.append(f"paper #{ref.run_id} {ref.model} vs yours #{own.run_id} {own.model}: "
                         f"acc ratio {ratio_text(ref_acc)} vs {ratio_text(own_acc)} · "
                         f"Wh ratio {ratio_text(wh_ratio.get((ref.run_id, 'pruned')))} vs "
                         f"{ratio_text(wh_ratio.get((own.run_id, 'pruned')))}")
    return lines


def ratio_lines(acc: list[Row], wh: list[Row]) -> list[str]:
    """Each measured pruned row's ratios against the vanilla row shown beside it, with the design."""
    wh_by = {(r.run_id, r.variant): r for r in wh}
    out = []
    for r in acc:
        w = wh_by.get((r.run_id, r.variant))
        if r.variant != "pruned" or r.kind == "reference" or (r.ratio is None and (w is None or w.ratio is None)):
            continue
        design = f" ({w.design})" if w is not None and w.design and w.ratio is not None else ""
        out.append(f"#{r.run_id} vs #{r.baseline_run_id}: acc × {ratio_text(r.ratio)} · "
                   f"Wh × {ratio_text(w.ratio if w else None)}{design}")
    return out


class CompareEnergy(Vertical):
    """The Energy tab's content; ``refresh_from`` is called by Compare on each rebuild."""

    DEFAULT_CSS = """
    CompareEnergy { height: 1fr; }
    CompareEnergy #energy-text { height: auto; }
    CompareEnergy #energy-scroll { height: 1fr; }
    CompareEnergy EfficiencyChart { height: 14; min-height: 8; }
    CompareEnergy EfficiencyChart.-empty { height: 1; min-height: 1; }
    """

    def compose(self) -> ComposeResult:
        yield EfficiencyChart(id="efficiency-chart")
        with VerticalScroll(id="energy-scroll"):
            yield Static("", id="energy-text")

    def refresh_from(self, store: Any, tables: dict[str, Any]) -> None:
        sec = energy_sections(store, tables)
        # Text lines, never markup: models, meters and reference checks come from outside (imports)
        lines: list[Text | str] = []
        for rid, badge in sec["badges"].items():
            lines.append(Text.assemble((f"quality #{rid}", "bold"), " ", safe_text(badge.label())))
        own = ratio_lines(tables["accuracy"], tables["energy"])
        if own:
            lines.append("[b]ratios pruned / vanilla[/b] (± 95 % interval; ≈1 = inconclusive; n=1 = none)")
            lines += [Text("  " + x) for x in own]
        pvy = paper_vs_yours(tables["accuracy"], tables["energy"])
        if pvy:
            lines.append("[b]paper vs yours[/b] (ratios pruned / vanilla)")
            lines += [Text("  " + safe_text(x)) for x in pvy]
        if sec["rows"]:
            lines.append("[b]per (run, variant), mean over tasks[/b]: Wh total · above idle · J/token · J/correct")
            shown: set[tuple[int, str]] = set()
            for er in sec["rows"]:
                if (er.run_id, er.variant) in shown:  # a baseline shared by two experiments: once
                    continue
                shown.add((er.run_id, er.variant))
                mark = " (reference)" if er.kind == "reference" else ""
                a = er.avg
                lines.append(Text(f"  #{er.run_id} {safe_name(er.model)}{mark} {er.variant}: {_f(a['wh'])} · "
                                  f"{_f(a['above_idle_wh'])} · {_f(a['j_per_token'])} · {_f(a['j_per_correct'])}"
                                  + ("" if a.get("max_cv") is None else f" · CV ≤{a['max_cv'] * 100:.1f} %")))
        if sec["noise"]:
            lines.append("[b]Which energy differences are noise?[/b] (|Δ| ≤ 2·√(se_p² + se_v²) ≈ 95 %)")
            for n in sec["noise"]:
                verdict = n["verdict"] if n["within_noise"] is None else (
                    "[dim]within noise[/]" if n["within_noise"] else "[b]beyond noise[/]")
                band = "" if n["band_wh"] is None else f" ±{n['band_wh']:.5f}"
                lines.append(f"  run {n['run_id']} {SHORT.get(n['task'], n['task']):<10} "
                             f"ΔWh {n['delta_wh']:+.5f}{band}  {verdict}")
        for rid, checks in sec["checks"].items():
            for c in checks:
                if not c.ok:
                    lines.append(Text(f"⚠ reference #{rid}: {safe_text(c.message())}", "yellow"))
        text = Text("\n").join(line if isinstance(line, Text) else Text.from_markup(line) for line in lines)
        self.query_one("#energy-text", Static).update(text if lines else Text("no energy figures yet", "dim"))
        chart = self.query_one(EfficiencyChart)
        if sec["efficiency"]:
            rid, table3 = next(iter(sec["efficiency"].items()))
            series = {v: [(ln["batch_size"], ln[f"{v}_j_per_token"]) for ln in table3] for v in ("vanilla", "pruned")}
            chart.update_data(series, table3, title=f"J/token vs batch size — run #{rid}")
        else:
            chart.update_data({}, [], title="J/token vs batch size")
        chart.set_class(not sec["efficiency"], "-empty")  # no points: one line, the rows go to the text
