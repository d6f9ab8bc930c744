"""Every ratio with its interval (issue #18): the forms, the paired and unpaired designs on a real
store, the Runs page computed in a bounded number of queries, and no bare ratio in any golden.

The store tests write rows through the store's repositories (``save_task_results`` with repeats), as
the pipeline does; the golden scan reads every TUI snapshot (80×24 and 160×48) and every export
golden and fails on a ratio cell that is a bare number.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from backend.results.ratios import (
    METHOD_PAIRED,
    METHOD_UNPAIRED,
    Ratio,
    attach,
    paired_task_ratio,
    run_ratios,
)
from backend.schema.runconfig import RunConfig
from backend.store import Store
from backend.workspace import db_path

ROOT = Path(__file__).resolve().parent
TASKS = ("arc_easy", "boolq", "piqa")

#: what a ratio cell may hold: an interval, the inconclusive mark, or why there is none
NUM = r"\d+\.\d+"
RATIO_CELL = re.compile(
    rf"^(—|≈1|≈1 \(inconclusive\)|≈1 \(inconclusive: {NUM} ±{NUM}\)|{NUM} ±{NUM}|{NUM}±\d*\.\d+|{NUM} n=1|"
    rf"{NUM} \(n=1\)|{NUM} ±\?|{NUM} \(no stderr\))?$")


def test_the_three_written_forms() -> None:
    clear = Ratio(0.912, 0.884, 0.941, "n=5", 5, METHOD_UNPAIRED)
    noisy = Ratio(0.99, 0.95, 1.03, "n=5", 5, METHOD_PAIRED)
    single = Ratio(0.912, note="n=1", n=1)
    assert (clear.text(), clear.cell(), clear.compact()) == ("0.912 ±0.029", "0.912 ±0.029", "0.91±.03")
    assert (noisy.text(), noisy.cell(), noisy.compact()) == ("≈1 (inconclusive: 0.990 ±0.040)",
                                                            "≈1 (inconclusive)", "≈1")
    assert (single.text(), single.cell(), single.compact()) == ("0.912 (n=1)", "0.912 (n=1)", "0.91 n=1")
    assert Ratio(0.9, note="no stderr").compact() == "0.90 ±?"
    assert Ratio(3.2, 2.0, 4.6).compact() == "3.20±1.4"  # a half-width ≥ 1 keeps its integer part
    for r in (clear, noisy, single):
        assert RATIO_CELL.match(r.text()) and RATIO_CELL.match(r.compact()) and RATIO_CELL.match(r.cell())
        assert len(r.compact()) <= 8
    d = clear.to_dict()
    assert (d["lo"], d["hi"], d["n"], d["method"]) == (0.884, 0.941, 5, METHOD_UNPAIRED)


def _rows(variant: str, wh: float, passes: list[float] | None, acc: float = 0.5) -> list[dict]:
    out = []
    for i, t in enumerate(TASKS):
        row = {"variant": variant, "task": t, "acc": acc, "acc_stderr": 0.02, "n_samples": 100,
               "energy_kwh": wh * (i + 1) / 1000, "meter": "codecarbon:cpu_load-estimate", "seconds": 2.0}
        if passes:
            row["repeats"] = [{"repeat": k + 1, "energy_kwh": f * wh * (i + 1) / 1000, "seconds": 2.0}
                              for k, f in enumerate(passes)]
        out.append(row)
    return out


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(db_path(tmp_path))
    yield s
    s.close()


def _model(store: Store) -> int:
    return store.models.upsert("org/tiny", name="org/tiny", arch="llama", params=1000, layers=2, heads=2,
                               kv_heads=2, hidden=8, intermediate=16, size_bytes=10)


# the machine's load, pass by pass: it moves both models' energy alike when they are measured together
LOAD = [1.30, 0.80, 1.10, 0.95, 1.20]


def test_a_paired_run_is_judged_on_its_own_pairs_and_load_cancels(store: Store) -> None:
    """Same figures, two shapes: a run that measured its own vanilla windows (paired) and one that
    leans on a baseline run measured at other moments (unpaired). The load that both members of a
    pair share cancels in the paired log-ratios: a narrow interval that excludes 1; unpaired, the
    same spread of loads makes the interval wide enough to hold 1."""
    mid = _model(store)
    cfg = RunConfig(model="org/tiny", limit=10).to_dict()
    base = store.runs.create(mid, "baseline", dict(cfg, no_prune=True), status="done")
    store.results.save_task_results(base, _rows("vanilla", 1.0, LOAD))
    unpaired = store.runs.create(mid, "experiment", dict(cfg, energy_design="sequential"), status="done",
                                 parent_run_id=base)
    store.results.save_task_results(unpaired, _rows("pruned", 0.9, list(reversed(LOAD)), acc=0.45))
    paired = store.runs.create(mid, "experiment", dict(cfg, energy_design="paired"), status="done",
                               parent_run_id=base)
    store.results.save_task_results(paired, [*_rows("vanilla", 1.0, LOAD),
                                             *_rows("pruned", 0.9, [x * 1.01 for x in LOAD], acc=0.45)])

    acc_u, energy_u = run_ratios(store, unpaired)
    acc_p, energy_p = run_ratios(store, paired)
    assert energy_p.design == "paired" and energy_p.average.method == METHOD_PAIRED
    assert energy_u.design == "unpaired" and energy_u.average.method == METHOD_UNPAIRED
    assert energy_p.average.n == energy_u.average.n == len(LOAD)
    assert energy_p.average.value == pytest.approx(0.909, abs=1e-3)
    assert not energy_p.average.inconclusive and energy_p.average.hi < 1
    assert energy_u.average.inconclusive  # the load's spread, uncancelled: the answer is "≈1"
    assert set(energy_p.per_task) == set(TASKS)
    # the accuracy ratio is from the stderrs either way (0.45 / 0.5)
    assert acc_p.value == acc_u.value == pytest.approx(0.9) and acc_p.lo < 0.9 < acc_p.hi

    # the Runs page says the same, design included, for every row of the page at once
    rows = {r["id"]: r for r in attach(store, store.runs.list())}
    assert rows[paired]["wh_ratio_ci"] == energy_p.average and rows[paired]["energy_design"] == "paired"
    assert rows[unpaired]["wh_ratio_ci"] == energy_u.average and rows[unpaired]["energy_design"] == "unpaired"
    assert rows[base]["wh_ratio_ci"] is None and rows[base]["acc_ratio_ci"] is None

    # `show`, `show --json` and Run detail: the same ratios, the design named
    from backend.results.run_energy import energy_lines, run_energy_doc
    doc = run_energy_doc(store, store.runs.require(paired))
    assert doc["ratios"]["energy"]["design"] == "paired"
    assert doc["ratios"]["energy"]["average"]["lo"] == energy_p.average.lo
    line = next(ln for ln in energy_lines(doc) if ln.startswith("ratio pruned / vanilla"))
    assert f"Wh × {energy_p.average.text()}" in line and "paired with its own vanilla windows" in line


def test_one_pass_has_no_interval_and_says_so(store: Store) -> None:
    mid = _model(store)
    cfg = RunConfig(model="org/tiny", limit=10).to_dict()
    base = store.runs.create(mid, "baseline", dict(cfg, no_prune=True), status="done")
    store.results.save_task_results(base, _rows("vanilla", 1.0, None))
    exp = store.runs.create(mid, "experiment", cfg, status="done", parent_run_id=base)
    store.results.save_task_results(exp, _rows("pruned", 0.8, None))
    _, energy = run_ratios(store, exp)
    assert energy.average.lo is None and energy.average.text() == "0.800 (n=1)"
    assert paired_task_ratio([(0.8, 1.0)]).compact() == "0.80 n=1"


def test_the_runs_page_costs_a_fixed_number_of_queries(store: Store) -> None:
    """Intervals for a page of 60 runs in a bounded number of statements, not one query per row
    (bench P2: the Runs list with 10,000 runs)."""
    mid = _model(store)
    cfg = RunConfig(model="org/tiny", limit=10).to_dict()
    base = store.runs.create(mid, "baseline", dict(cfg, no_prune=True), status="done")
    store.results.save_task_results(base, _rows("vanilla", 1.0, LOAD))
    for _ in range(60):
        e = store.runs.create(mid, "experiment", cfg, status="done", parent_run_id=base)
        store.results.save_task_results(e, _rows("pruned", 0.9, LOAD))
    rows = store.runs.list(limit=100)
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    try:
        attach(store, rows)
    finally:
        store.conn.set_trace_callback(None)
    assert len(statements) <= 3, statements
    assert all(r["wh_ratio_ci"] is not None for r in rows if r["kind"] == "experiment")


# ------------------------------------------------------------------------------------ goldens

#: headers of the columns that hold pruned/vanilla ratios in the TUI's tables
SCREEN_RATIO_HEADERS = ("acc×", "Wh×", "acc ×base", "Wh ×base", "Ratio")


def _screen_ratio_cells(text: str) -> list[tuple[str, str]]:
    """(header, cell) of every ratio column of every table on a screen: a header line's word gives the
    column's start; the rows below it (up to a blank line) are read from there to the next gap."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        for header in SCREEN_RATIO_HEADERS:
            for m in re.finditer(rf"(?<!\S){re.escape(header)}[▼▲]?(?=\s|$)", line):
                if header == "Ratio" and not re.search(r"\bAvg\s+Ratio", line):
                    continue  # prose, not the table's header
                for row in lines[i + 1:]:
                    if (not re.search(r"[0-9A-Za-z—≈]", row) or row.lstrip().startswith(("?", "runs ", "━"))
                            or "█" in row):
                        break  # a blank line, a scrollbar's row, the footer, a dialog over it: the table ended
                    seg = row[m.start():]
                    cell = "" if seg[:1].isspace() else re.split(r"\s{2,}", seg, maxsplit=1)[0].strip()
                    if row[m.start() - 1:m.start()].strip():  # a cell that runs in from the left: not this column
                        continue
                    out.append((header, cell))
    return out


def test_no_bare_ratio_in_any_screen_snapshot() -> None:
    seen = 0
    for path in sorted((ROOT / "snapshots").glob("*.txt")):
        for header, cell in _screen_ratio_cells(path.read_text()):
            seen += 1
            assert RATIO_CELL.match(cell), f"{path.name}: bare ratio {cell!r} under {header!r}"
    assert seen > 40  # the scan reads the Runs and Compare tables of both sizes, not nothing


def _markdown_ratio_cells(text: str) -> list[tuple[str, str]]:
    out = []
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]  # "\|" is a name's pipe
        if header is None:
            header = cells
        elif not set(line) <= set("|:- "):
            out += [(h, c.replace("\\", "")) for h, c in zip(header, cells)
                    if ("Ratio" in h or "×" in h) and "exact" not in h]
    return out


def _latex_ratio_cells(text: str) -> list[tuple[str, str]]:
    """(header, cell) of the ratio columns of every tabular, the cells unescaped back to text."""
    def cells(line: str) -> list[str]:
        parts = re.split(r"(?<!\\)&", line.strip().removesuffix(r"\\"))
        return [p.strip().replace(r"$\pm$", "±").replace(r"$\approx$", "≈").replace("---", "—")
                .replace(r"$\times$", "×") for p in parts]
    out = []
    header: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(r"\begin{tabular}"):
            header = []
        elif header == [] and "&" in line:
            header = cells(line)
        elif line.startswith(r"\bottomrule"):
            header = None
        elif header and "&" in line:
            out += [(h, c) for h, c in zip(header, cells(line)) if ("Ratio" in h or "×" in h) and "exact" not in h]
    return out


def test_no_bare_ratio_in_any_export_golden() -> None:
    golden = ROOT / "golden"
    md = _markdown_ratio_cells((golden / "export.md").read_text())
    assert len(md) >= 8
    for header, cell in md:
        assert RATIO_CELL.match(cell), f"export.md: bare ratio {cell!r} under {header!r}"
    tex = _latex_ratio_cells((golden / "export.tex").read_text())
    assert len(tex) >= 8
    for header, cell in tex:
        assert RATIO_CELL.match(cell), f"export.tex: bare ratio {cell!r} under {header!r}"
    records = list(csv.DictReader(io.StringIO((golden / "export.csv").read_text())))
    ratios = [r for r in records if r["record"] == "ratio"]
    assert ratios and all(RATIO_CELL.match(r["ratio_text"]) for r in ratios)
    assert all(r["ratio_method"] for r in ratios)
    assert all(r["ratio_lo"] and r["ratio_hi"] for r in ratios if "±" in r["ratio_text"])
    doc = json.loads((golden / "export.json").read_text())
    rows = [r for key in ("accuracy", "energy_wh") for r in doc[key] if r["ratio"] is not None]
    assert rows
    for r in rows:
        assert {"value", "lo", "hi", "n", "method", "text"} <= set(r["ratio"])
        assert RATIO_CELL.match(r["ratio"]["text"])


def test_the_scan_catches_a_bare_ratio() -> None:
    """The scan is not vacuous: main's Runs table before issue #18 (bare 0.572) fails it."""
    before = (" id▼  model           method           status       acc    Wh      acc×   Wh×\n"
              "  6   org/tiny-llama  layer-drop 1/4   done         0.276  2.4000  0.572  0.600\n"
              "  4   org/tiny-llama  vanilla          done         0.483  4.2000  —      —\n")
    cells = _screen_ratio_cells(before)
    assert ("acc×", "0.572") in cells and ("Wh×", "—") in cells
    assert not all(RATIO_CELL.match(c) for _, c in cells)
    assert any(not RATIO_CELL.match(c) for _, c in _markdown_ratio_cells(
        "| Model | Avg | Ratio |\n|:--|--:|--:|\n| a\\|b | 0.4 | 0.804 |\n"))
