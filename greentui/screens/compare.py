"""Compare: radar and grouped bars of accuracy and Wh per task, the ratio table with stderr, Pareto.

A single experiment is compared with its vanilla baseline (the study's figures: two series,
vanilla and pruned, each axis normalised to the best of the two); several runs show one series per
(run, variant). The numbers come from ``backend.results.report.study_tables`` — the same rows as
``greentui export`` — so the screen and the paper tables can never disagree.

Noise: a pruned-vs-vanilla difference on a task is marked as noise when it is within two combined
standard errors (``|Δ| ≤ 2·√(se_p² + se_v²)``, roughly a 95 % interval), so a reader can tell which
differences the sample size can support.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Header, Static, TabbedContent, TabPane, Tabs

from backend.results.fmt import method_label, plain, ratio_label
from backend.results.ratios import pareto, point_noise
from backend.results.report import SHORT, Row, set_ratios, study_tables
from backend.results.run_energy import Badge, baselines_agree, quality_badge
from backend.text import safe_name, safe_text
from greentui.keymap import binding
from greentui.signals import StoreChange
from greentui.widgets.bars import GroupedBars, ScatterPareto
from greentui.widgets.compare_energy import CompareEnergy
from greentui.widgets.compare_summary import CompareSummary
from greentui.widgets.keys import KeyFooter
from greentui.widgets.radar import RadarChart

from ._live import WatchingScreen
from ._ppl import chance_note, perplexities, perplexity_line


def series_name(row: Row, single_pair: bool) -> str:
    ref = " (ref)" if row.kind == "reference" else ""
    return row.variant + ref if single_pair else f"#{row.run_id} {row.variant}{ref}"


def noise_verdicts(acc_rows: list[Row], tasks: list[str]) -> list[tuple[int, str, float, float, bool]]:
    """(pruned run, task, Δacc, 2·combined stderr, within noise) for each pruned row vs its vanilla row."""
    out = []
    last_vanilla: Row | None = None
    for row in acc_rows:
        if row.variant == "vanilla":
            last_vanilla = row
            continue
        if last_vanilla is None:
            continue
        for t in tasks:
            p, v = row.values.get(t), last_vanilla.values.get(t)
            if p is None or v is None:
                continue
            sp, sv = row.stderr.get(t), last_vanilla.stderr.get(t)
            if sp is None or sv is None or any(math.isnan(x) for x in (sp, sv)):
                continue
            band = 2 * math.sqrt(sp ** 2 + sv ** 2)
            out.append((row.run_id, t, p - v, band, abs(p - v) <= band))
    return out


class RatioTable(DataTable):
    """The ratio table: a row cursor, and ← → scroll its columns (a row cursor would not move)."""

    BINDINGS = [Binding("left", "scroll_left", "Scroll left", show=False),
                Binding("right", "scroll_right", "Scroll right", show=False)]


_TABS = Binding.Group("Tabs", compact=True)
#: quality badges in the full header (the Energy tab lists every run's)
BADGES = 8


class CompareScreen(WatchingScreen):
    """Radar, bars, ratio table, Pareto and energy of the runs; the full header folds below 100 columns.

    Below 100 columns (the app's ``-narrow`` class) the header is two lines (``CompareSummary``) and
    the full one (every quality line, merged baselines, perplexity, the demo note) is behind ``i``,
    so the charts get the rows. ``i`` toggles it at any width; Esc first closes it where it was opened.
    """

    BINDINGS = [binding("back"), binding("details"),
                *(binding(i, group=_TABS) for i in ("tab_radar", "tab_bars", "tab_table")),
                binding("pareto", "tab('pareto')", group=_TABS), binding("tab_energy", group=_TABS),
                binding("swap_chart")]

    def __init__(self, run_ids: list[int], tab: str = "radar") -> None:
        super().__init__()
        self.run_ids = list(dict.fromkeys(run_ids))
        self.initial_tab = tab

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="compare-head"):
            yield CompareSummary(id="compare-summary")
            with Vertical(id="compare-details"):
                yield Static("", id="compare-title")
                yield Static("", id="compare-ppl")
        with TabbedContent(initial=self.initial_tab, id="compare-tabs"):
            with TabPane("Radar", id="radar"):
                with Horizontal(classes="charts"):
                    # each axis is scaled to its highest value: the best accuracy, but the most Wh
                    yield RadarChart("accuracy (per task, normalised)", [], {}, id="radar-acc",
                                     scale_note="(per task: outer ring = highest acc, the best)")
                    yield RadarChart("energy Wh (per task, normalised)", [], {}, id="radar-wh", classes="second",
                                     scale_note="(per task: outer ring = most Wh, the worst)")
            with TabPane("Bars", id="bars"):
                with Vertical(classes="charts"):
                    yield GroupedBars("accuracy per task (±stderr)", id="bars-acc", y_label="acc")
                    yield GroupedBars("energy per task (Wh, ±95 % CI over repeats)", id="bars-wh", y_label="Wh",
                                      classes="second", whiskers="±95 % CI over repeats (none with n=1)")
            with TabPane("Table", id="table"):
                with Vertical():
                    yield RatioTable(id="ratio-table", cursor_type="row", zebra_stripes=True)
                    yield Static("", id="noise")
            with TabPane("Pareto", id="pareto"):
                with Vertical():
                    yield ScatterPareto("avg accuracy vs avg Wh — runs of this model", id="pareto-chart")
                    yield Static("", id="pareto-note")
            with TabPane("Energy", id="energy"):
                yield CompareEnergy(id="compare-energy")
        yield KeyFooter()

    def on_mount(self) -> None:
        # the tab strip takes no focus: r b t p e switch tabs, and the arrows scroll what a tab shows
        # (the ratio table, the energy text) instead of switching tabs under the reader
        self.query_one(Tabs).can_focus = False
        self.rebuild()
        self.call_after_refresh(self._focus_tab, self.initial_tab)

    def store_change(self, change: StoreChange) -> None:
        if change.tables_changed and self.is_mounted:  # new results, not progress
            self.rebuild()

    def on_screen_resume(self) -> None:
        # a resume may arrive before the first mount (on_mount builds then) or after the screen left
        if self.is_mounted and self.is_attached:
            self.rebuild()

    # ------------------------------------------------------------------ data
    def rebuild(self) -> None:
        store = self.app.store
        ids = [i for i in self.run_ids if store.runs.get(i)]
        if not ids:
            gone = Text("none of these runs exist any more", "b red")
            self.query_one("#compare-title", Static).update(gone)
            self.query_one(CompareSummary).show(gone, [])
            return
        tables = study_tables(store, ids)
        tasks: list[str] = tables["tasks"]
        acc: list[Row] = _dedupe(tables["accuracy"])
        wh: list[Row] = _dedupe(tables["energy"])
        acc, wh, merged = merge_identical_baselines(acc, wh, tasks, lambda a, b: baselines_agree(store, a, b))
        if merged:  # a pruned row of a merged baseline: its ratios against the baseline now shown beside it
            set_ratios(store, {"accuracy": acc, "energy": wh})
        single = len(acc) <= 2 and len({r.variant for r in acc}) == len(acc)
        labels = [SHORT.get(t, t) for t in tasks]
        acc_series = {series_name(r, single): [r.values.get(t) for t in tasks] for r in acc}
        wh_series = {series_name(r, single): [r.values.get(t) for t in tasks] for r in wh}
        acc_err = {series_name(r, single): [r.stderr.get(t) for t in tasks] for r in acc}
        self.query_one("#radar-acc", RadarChart).update_data(labels, acc_series)
        self.query_one("#radar-wh", RadarChart).update_data(labels, wh_series)
        self.query_one("#bars-acc", GroupedBars).update_data(labels, acc_series, acc_err)  # named as the radar
        wh_err = {series_name(r, single): [r.ci95.get(t) for t in tasks] for r in wh}
        self.query_one("#bars-wh", GroupedBars).update_data(
            labels, wh_series, wh_err if any(e for v in wh_err.values() for e in v) else None)
        self.fill_table(acc, wh, tasks)
        self.fill_noise(acc, tasks)
        self.fill_pareto(ids[0], acc)
        self.query_one(CompareEnergy).refresh_from(store, tables)
        runs = ", ".join(f"#{i}" for i in ids)
        what = "vs its vanilla baseline" if single and len(ids) == 1 else "side by side"
        meters = sorted({safe_name(m, 40) for r in wh for m in r.meters.values() if m})  # outside text
        refs = sorted({r.run_id for r in acc if r.kind == "reference"})
        notes = []
        for keep in sorted(set(merged.values())):
            dups = ", ".join(f"#{d}" for d, k in merged.items() if k == keep)
            notes.append(f"baseline {dups} = #{keep} (same items, same accuracies, energy within noise): "
                         f"charted once as #{keep}, every ratio against #{keep}")
        # every measured run's badge (up to BADGES) feeds the folded line and the full header (i); the
        # Energy tab lists them all
        badges = {i: quality_badge(store, i) for i in ids[:BADGES] if i not in refs}
        # Text, never markup: the meters' names come from outside (an imported file)
        title = Text.assemble(("Compare", "bold"), f" runs {runs} {what} · {len(tasks)} task(s) · meters: "
                              f"{', '.join(meters) or '—'}")
        if refs:
            title.append(" · ").append("reference", "bold").append(
                f" (published) run(s) {', '.join(f'#{i}' for i in refs)}")
        by_label: dict[str, list[int]] = {}
        for i, b in badges.items():  # every one (the full header is where they are read), none dropped;
            by_label.setdefault(b.label(), []).append(i)  # runs measured alike share one line
        for label, runs_alike in by_label.items():
            title.append("\n").append("quality " + ", ".join(f"#{i}" for i in runs_alike) + ":", "dim")
            title.append(" " + safe_text(label))
        measured = [i for i in ids if i not in refs]
        if len(measured) > len(badges):
            title.append(f"\nquality of {len(measured) - len(badges)} more run(s): the Energy tab (e)", "dim")
        for n in notes:
            title.append("\n" + n, "dim")
        if not acc:
            title.append("\nno task results yet: they appear here as tasks finish", "dim")
        self.query_one("#compare-title", Static).update(title)
        self.fill_perplexity(ids)
        # the folded header (below 100 columns): the same facts, the most important first
        meter = ", ".join(meters) or "no meter"
        # the longest form that fits is shown: "side by side" goes first, then the list of runs
        forms = [f"{short_runs(ids)} {what}", short_runs(ids)] + ([f"{len(ids)} runs #{ids[0]}…#{ids[-1]}"]
                                                                   if len(ids) > 2 else [])
        titles = [Text.assemble(("Compare", "bold"), f" {form} · {len(tasks)} tasks · ", meter) for form in forms]
        folded = self.perplexity_notices(ids)
        folded += [Text(f"baseline {', '.join(f'#{d}' for d, k in merged.items() if k == keep)} = #{keep} "
                        "charted once") for keep in sorted(set(merged.values()))]
        if refs:
            folded.append(Text(f"published reference {', '.join(f'#{i}' for i in refs)}"))
        if not acc:
            folded.append(Text("no task results yet", "dim"))
        if badges:
            folded.append(Text(quality_short(badges)))
        self.query_one(CompareSummary).show(titles, folded, hint="i")

    def fill_table(self, acc: list[Row], wh: list[Row], tasks: list[str]) -> None:
        """The study's table (tasks, Avg, Ratio). Where it does not fit the screen's width (at 80 and
        at 120 columns with seven tasks) Avg and Ratio come right after the variant and the model goes
        last, so the figures that matter are on screen without scrolling."""
        self._table_rows = (acc, wh, tasks)
        table = self.query_one("#ratio-table", DataTable)
        columns = [("metric", "metric"), ("model", "model"), ("run", "run"), ("variant", "variant")]
        columns += [(SHORT.get(t, t), t) for t in tasks] + [("Avg", "avg"), ("Ratio", "ratio")]
        rows = list(self._table_cells(acc, wh, tasks))
        need = sum(2 + max([Text(label).cell_len] + [Text.from_markup(c[key]).cell_len if isinstance(c[key], str)
                                                     else c[key].cell_len for _, c in rows])
                   for label, key in columns) + 2  # cell padding, the scrollbar
        self._table_width = width = self.app.size.width
        self._table_narrow = narrow = need > width
        table.clear(columns=True)
        if narrow:
            first, rest = ["metric", "run", "variant", "avg", "ratio"], ["model"]
            columns.sort(key=lambda c: (first.index(c[1]) if c[1] in first else len(first),
                                        c[1] in rest))
        for label, key in columns:
            table.add_column(label, key=key)
        table.fixed_columns = 5 if narrow else 0  # metric, run, variant, Avg, Ratio stay as ← → scroll
        for row_key, cells in rows:
            table.add_row(*(cells[key] for _, key in columns), key=row_key)

    def _table_cells(self, acc: list[Row], wh: list[Row], tasks: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """(row key, cells by column key) of the ratio table: accuracy rows, then Wh rows."""
        for metric, rows, digits in (("acc", acc, 3), ("Wh", wh, 4)):
            for r in rows:
                cells: dict[str, Any] = {"metric": metric,
                                         "model": plain(safe_name(r.model) + (" (ref)" if r.kind == "reference" else "")),
                                         "run": str(r.run_id), "variant": r.variant}
                for t in tasks:
                    v, se = r.values.get(t), r.stderr.get(t)
                    if v is None:
                        cells[t] = Text("—", style="dim")
                    elif se is not None and not math.isnan(se):
                        cells[t] = f"{v:.{digits}f}±{se:.{digits}f}"
                    else:
                        cells[t] = f"{v:.{digits}f}"
                cells["avg"] = "—" if r.avg is None else f"{r.avg:.{digits}f}"
                # the compact form (0.85±.05, ≈1 when the interval holds 1, 0.70 n=1 without one)
                cells["ratio"] = Text("—", style="dim") if r.ratio is None else Text(r.ratio.compact(), style="bold")
                yield f"{metric}-{r.run_id}-{r.variant}", cells

    def on_resize(self) -> None:
        # this handler runs before Screen's own, which sets the width classes: look after it
        self.call_after_refresh(self._follow_width)

    def _follow_width(self) -> None:
        """A new width may reorder the table's columns (see ``fill_table``)."""
        rows = getattr(self, "_table_rows", None)
        if rows is not None and self.is_mounted and self.app.size.width != self._table_width:
            self.fill_table(*rows)

    def fill_noise(self, acc: list[Row], tasks: list[str]) -> None:
        verdicts = noise_verdicts(acc, tasks)
        box = self.query_one("#noise", Static)
        legend = ("[dim]Ratio: pruned / vanilla ± its 95 % interval; ≈1 = the interval holds 1 (inconclusive); "
                  "n=1 = one pass, no interval[/]")
        if not verdicts:
            box.update(legend + "\n[dim]stderr: no pruned/vanilla pair with standard errors yet[/]")
            return
        lines = [legend, "[b]Which accuracy differences are noise?[/b] (|Δ| ≤ 2·√(se_p² + se_v²) ≈ 95 %)"]
        for run_id, t, delta, band, noise in verdicts:
            verdict = "[dim]within noise[/]" if noise else "[b]beyond noise[/]"
            lines.append(f"  run {run_id} {SHORT.get(t, t):<10} Δacc {delta:+.3f}  ±{band:.3f}  {verdict}")
        box.update("\n".join(lines))

    def fill_pareto(self, run_id: int, acc: list[Row]) -> None:
        store = self.app.store
        run = store.runs.get(run_id)
        if run is None or run.get("model_id") is None:
            return
        rows = store.runs.list(model_id=run["model_id"], statuses=["done"], limit=2000)
        # a dot's label is its run's id, which fits beside it at 80x24; the note below says what each is
        done = [r for r in rows if r["avg_wh"] is not None and r["avg_acc"] is not None]
        points = [(f"#{r['id']}", r["avg_wh"], r["avg_acc"]) for r in done]
        key = " · ".join(f"#{r['id']} {method_label(r)} {ratio_label(r)}".replace(" —", "")
                         for r in sorted(done, key=lambda r: r["id"])[:24])
        # each run's own 95 % half-widths: whiskers, and the noise its dominance is judged with
        errs = point_noise(store, [r["id"] for r in done])
        front = pareto([(f"#{r['id']}", r["avg_acc"], errs[r["id"]][0], r["avg_wh"], errs[r["id"]][1]) for r in done])
        noise = average_noise(acc)
        chart = self.query_one("#pareto-chart", ScatterPareto)
        chart.noise = noise
        chart.errors = {f"#{i}": e for i, e in errs.items()}
        chart.front_labels = front
        model = safe_name(run.get("model_name") or run.get("model_ref"), 60)
        chart.update_data(points, title=f"avg accuracy vs avg Wh — {len(points)} finished run(s) of {model}")
        band = f" Grey: best acc ±{noise:.3f} (2 se)." if noise else ""
        whiskers = " Whiskers: 95 % CIs (none with n=1)." if any(not e[1] for e in errs.values()) else \
            " Whiskers: 95 % CIs."
        self.query_one("#pareto-note", Static).update(
            Text(key + ("" if len(done) <= 24 else f" · … {len(done) - 24} more") + "\nUpper left is better. "
                 "◆ Pareto front (" + (f"{len(front)} runs, green line)" if len(front) > 1 else "1 run)") +
                 ": not beaten beyond noise." + whiskers + band)
            if points else Text("no finished runs of this model with energy figures yet", "dim"))

    def runs_of(self, ids: list[int]) -> Iterator[tuple[int, dict]]:
        """(id, run) for each of ``ids`` still in the store (one may be deleted while compared)."""
        for i in ids:
            run = self.app.store.runs.get(i)
            if run is not None:
                yield i, run

    def perplexity_notices(self, ids: list[int]) -> list[Text]:
        """The folded header's perplexity figures (one per run that has them) and the demo's caveat."""
        store = self.app.store
        out, caveat = [], False
        for i, run in self.runs_of(ids):
            ppl = perplexities(store, run)
            if ppl:
                figures = " · ".join(f"{name.replace('pruned+', '+')} {value:.1f}" for name, value in ppl.items())
                out.append(Text(("" if len(ids) == 1 else f"#{i} ") + f"ppl↓ {figures}"))
            caveat = caveat or bool(chance_note(run))
        if caveat:
            out.append(Text("accuracy near chance"))
        return out

    def fill_perplexity(self, ids: list[int]) -> None:
        """WikiText-2 perplexity per run (vanilla, pruned before LoRA, after LoRA) and the demo's caveat."""
        store = self.app.store
        lines: list[Text] = []
        notes: list[Text] = []
        for i, run in self.runs_of(ids):
            line = perplexity_line(store, run)
            if line:
                lines.append(line if len(ids) == 1 else Text(f"#{i} ").append_text(line))
            note = chance_note(run)
            if note and note.plain not in {n.plain for n in notes}:
                notes.append(note)
        box = self.query_one("#compare-ppl", Static)
        box.update(Text("\n").join(lines + notes))
        box.display = bool(lines or notes)

    # ------------------------------------------------------------------ actions
    def action_back(self) -> None:
        if self.has_class("-details-on", "-narrow"):  # opened with i where it is folded: Esc closes it first
            self.remove_class("-details-on")
            return
        self.app.pop_screen()

    def action_details(self) -> None:
        """Show or hide the full header; the default (shown when wide, folded when narrow) needs no class."""
        wanted = not self.query_one("#compare-details").display
        by_default = not self.has_class("-narrow")
        self.remove_class("-details-on", "-details-off")
        if wanted != by_default:
            self.add_class("-details-on" if wanted else "-details-off")

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        self._focus_tab(tab)

    def _focus_tab(self, tab: str) -> None:
        """Focus what the arrows should move in ``tab``: the ratio table, the energy text."""
        target = {"table": "#ratio-table", "energy": "#energy-scroll"}.get(tab)
        if target is None:
            self.set_focus(None)
            return
        for widget in self.query(target):
            widget.focus()

    def action_swap_chart(self) -> None:
        """Below 100 columns one radar (and one bar chart) at a time: swap accuracy and energy."""
        for first, second in (("#radar-acc", "#radar-wh"), ("#bars-acc", "#bars-wh")):
            a, b = self.query_one(first), self.query_one(second)
            a_second = a.has_class("second")
            a.set_class(not a_second, "second")
            b.set_class(a_second, "second")
        if "-narrow" not in self.classes:
            self.notify("both charts are shown at this width; w swaps them below 100 columns")


def short_runs(ids: list[int], most: int = 6) -> str:
    """``#2, #3, #5`` — or, for many runs, the first few and the count, so the title stays one line."""
    if len(ids) <= most:
        return ", ".join(f"#{i}" for i in ids)
    return ", ".join(f"#{i}" for i in ids[:most - 2]) + f" … #{ids[-1]} ({len(ids)} runs)"


def quality_short(badges: dict[int, Badge]) -> str:
    """The quality badges in a few words: meter kind and repeats (CV and a shared device when known)."""
    def one(b: Badge) -> str:
        text = f"{b.meter} meter, n={b.repeats}"
        if b.max_cv is not None:
            text += f", CV ≤{b.max_cv * 100:.1f} %"
        if b.shared_device:
            text += ", device shared with " + ", ".join(f"#{i}" for i in b.shared_device)
        return text
    forms = {i: one(b) for i, b in badges.items()}
    if len(set(forms.values())) == 1:
        return "quality: " + next(iter(forms.values()))
    return "quality " + "; ".join(f"#{i}: {f}" for i, f in forms.items())


def average_noise(acc: list[Row]) -> float | None:
    """Two standard errors of an average accuracy (the first row with stderrs): √Σse²/n · 2."""
    for row in acc:
        ses = [se for se in row.stderr.values() if se is not None and not math.isnan(se)]
        if ses:
            return 2 * math.sqrt(sum(se ** 2 for se in ses)) / len(ses)
    return None


def merge_identical_baselines(acc: list[Row], wh: list[Row], tasks: list[str],
                              energy_agrees: Callable[[int, int], bool] = lambda a, b: False,
                              ) -> tuple[list[Row], list[Row], dict[int, int]]:
    """Drop a vanilla row whose accuracies equal an earlier vanilla row of the same model and whose
    energy agrees with it within noise (``energy_agrees(kept, dropped)``).

    Two experiments on one model with the same items each got a baseline run; their accuracies are
    the same numbers, and charting both draws two "vanilla" series on top of each other. The first
    one stays; the pruned rows of the dropped one are re-pointed at it (``baseline_run_id``) so that
    the caller recomputes their ratios against the baseline on screen (issue #18: a ratio against a
    vanilla row that is not shown is not readable). Baselines whose energy differs beyond noise, or
    cannot be told apart (one pass each), stay two rows. Returns ``{dropped run: kept run}``.
    """
    kept: dict[tuple, int] = {}
    merged: dict[int, int] = {}
    for row in acc:
        if row.variant != "vanilla" or row.kind == "reference":
            continue
        key = (row.model, tuple(row.values.get(t) for t in tasks))
        if key in kept and kept[key] != row.run_id and energy_agrees(kept[key], row.run_id):
            merged[row.run_id] = kept[key]
        else:
            kept.setdefault(key, row.run_id)

    def keep(rows: list[Row]) -> list[Row]:
        out = [r for r in rows if not (r.variant == "vanilla" and r.run_id in merged)]
        for r in out:
            if r.variant != "vanilla" and r.baseline_run_id in merged:
                r.baseline_run_id = merged[r.baseline_run_id]
        return out
    return keep(acc), keep(wh), merged


def _dedupe(rows: list[Row]) -> list[Row]:
    seen: set[tuple[int, str]] = set()
    out = []
    for r in rows:
        if (r.run_id, r.variant) not in seen:
            seen.add((r.run_id, r.variant))
            out.append(r)
    return out
