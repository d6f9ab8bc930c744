"""Published tables beside your runs: ``greentui import --table FILE.csv --metric acc|wh``.

A paper's table as papers print it: one row per model variant, columns ``model``, ``variant``
(vanilla or pruned), one column per task — its lm-eval name or a usual short header (ARCC / ARC-c,
ARCE / ARC-e, BoolQ, Hella / HellaSwag, PIQA, OBQA / OpenBookQA, Wino / WinoGrande) — and optionally
the printed ``Avg`` and ``Ratio``. Rows become **reference runs** (``kind = "reference"``, never
mixed up with measured ones, meter ``published``): a pruned row pairs with the nearest vanilla row
above it, and an accuracy table and an energy table of the same models merge into the same reference
runs (matched by model name and the pruned row's position among that model's rows).

greentui recomputes Avg (mean of the row's cells) and Ratio (pruned Avg / vanilla Avg over the
tasks both rows hold) from the cells and flags a printed Avg or Ratio that disagrees beyond the
printed rounding: half a unit of the printed value's last digit, plus what the cells' own rounding
can move the recomputed value. Accuracy printed in percent (any cell > 1) is stored as a fraction.

The whole file is parsed and checked before anything is written; the runs are written in one
transaction. A bad table gets a one-line error naming the row (1 = the header) and the column.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from backend.errors import GreentuiError
from backend.schema.runconfig import STUDY_TASKS
from backend.store import Store

METRICS = ("acc", "wh")

_HEADERS = {
    "arc_challenge": ("arc_challenge", "arcc", "arc-c", "arc_c", "arc challenge", "arc-challenge"),
    "arc_easy": ("arc_easy", "arce", "arc-e", "arc_e", "arc easy", "arc-easy"),
    "boolq": ("boolq",),
    "hellaswag": ("hellaswag", "hella", "hella-swag"),
    "piqa": ("piqa",),
    "openbookqa": ("openbookqa", "obqa", "openbook-qa", "openbook qa"),
    "winogrande": ("winogrande", "wino", "winog", "wino-grande"),
}
HEADER_TO_TASK = {alias: task for task, aliases in _HEADERS.items() for alias in aliases}


@dataclass
class TableRow:
    line: int                       # 1-based row number in the file (1 = the header)
    model: str
    variant: str
    cells: dict[str, float]         # task → value as stored (acc as a fraction, Wh)
    digits: dict[str, int]          # task → decimals printed
    printed_avg: float | None = None
    avg_digits: int = 0
    printed_ratio: float | None = None
    ratio_digits: int = 0
    pair_of: int | None = None      # index of the vanilla row a pruned row pairs with


@dataclass
class Check:
    """A printed Avg or Ratio against the value recomputed from the cells."""

    metric: str
    model: str
    variant: str
    line: int
    what: str                       # "Avg" or "Ratio"
    printed: float
    recomputed: float
    tolerance: float
    ok: bool

    def message(self) -> str:
        verdict = "agrees" if self.ok else "DISAGREES"
        return (f"{self.metric} row {self.line} ({self.model} {self.variant}): printed {self.what} "
                f"{self.printed:g} {verdict} with the cells' {self.recomputed:.4g} "
                f"(printed rounding allows ±{self.tolerance:.2g})")


@dataclass
class ParsedTable:
    metric: str
    source: str
    path: str
    tasks: list[str]
    rows: list[TableRow]
    percent: bool
    checks: list[Check] = field(default_factory=list)


def _decimals(text: str) -> int:
    text = text.strip().rstrip("%")
    return len(text.split(".", 1)[1]) if "." in text else 0


def _number(text: str, line: int, column: str, path: Path) -> float:
    raw = text.strip().rstrip("%").strip()
    try:
        value = float(raw)
    except ValueError:
        raise GreentuiError(f"{path.name}: row {line}, column {column!r}: {text.strip()!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise GreentuiError(f"{path.name}: row {line}, column {column!r}: {text.strip()!r} is not a number")
    return value


def parse_table(path: str | Path, metric: str, source: str | None = None) -> ParsedTable:
    """Read and check a published table; raises GreentuiError naming the row and column."""
    p = Path(path)
    if metric not in METRICS:
        raise GreentuiError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise GreentuiError(f"cannot read {p}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise GreentuiError(f"{p.name} is not UTF-8 text ({exc.reason})") from exc
    try:  # the delimiter only: quoting is RFC 4180's ("" inside quotes is one "), whatever the sniffer guesses
        delimiter = csv.Sniffer().sniff(text.splitlines()[0] if text.strip() else ",", delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","
    reader = list(csv.reader(text.splitlines(), delimiter=delimiter, doublequote=True, quotechar='"'))
    if not reader or not any(c.strip() for c in reader[0]):
        raise GreentuiError(f"{p.name}: row 1: the table is empty (expected a header row: model, variant, tasks…)")
    header = [h.strip() for h in reader[0]]
    lower = [re.sub(r"\s+", " ", h.lower()) for h in header]
    for needed in ("model", "variant"):
        if needed not in lower:
            raise GreentuiError(f"{p.name}: row 1, column {needed!r}: missing (the header has {', '.join(header)})")
    col_task: dict[int, str] = {}
    avg_col = ratio_col = None
    for i, h in enumerate(lower):
        if h in ("model", "variant", ""):
            continue
        if h in ("avg", "average", "mean"):
            avg_col = i
        elif h == "ratio":
            ratio_col = i
        elif h in HEADER_TO_TASK:
            if HEADER_TO_TASK[h] in col_task.values():
                raise GreentuiError(f"{p.name}: row 1, column {header[i]!r}: task "
                                    f"{HEADER_TO_TASK[h]} appears twice")
            col_task[i] = HEADER_TO_TASK[h]
        else:
            raise GreentuiError(f"{p.name}: row 1, column {header[i]!r}: not a task header "
                                "(ARCC, ARCE, BoolQ, Hella, PIQA, OBQA, Wino or an lm-eval task name), Avg or Ratio")
    if not col_task:
        raise GreentuiError(f"{p.name}: row 1: no task column (ARCC, ARCE, BoolQ, Hella, PIQA, OBQA, Wino)")
    i_model, i_variant = lower.index("model"), lower.index("variant")
    rows: list[TableRow] = []
    for n, cells in enumerate(reader[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        cells = cells + [""] * (len(header) - len(cells))
        model = cells[i_model].strip()
        if not model:
            raise GreentuiError(f"{p.name}: row {n}, column {header[i_model]!r}: empty model name")
        variant = cells[i_variant].strip().lower()
        if variant not in ("vanilla", "pruned"):
            raise GreentuiError(f"{p.name}: row {n}, column {header[i_variant]!r}: {cells[i_variant].strip()!r} "
                                "is neither vanilla nor pruned")
        values: dict[str, float] = {}
        digits: dict[str, int] = {}
        for i, task in col_task.items():
            if not cells[i].strip() or cells[i].strip() in ("-", "—", "n/a"):
                continue  # a cell the paper left empty stays missing
            values[task] = _number(cells[i], n, header[i], p)
            digits[task] = _decimals(cells[i])
        if not values:
            raise GreentuiError(f"{p.name}: row {n}: no task value in any task column")
        row = TableRow(line=n, model=model, variant=variant, cells=values, digits=digits)
        if avg_col is not None and cells[avg_col].strip():
            row.printed_avg = _number(cells[avg_col], n, header[avg_col], p)
            row.avg_digits = _decimals(cells[avg_col])
        if ratio_col is not None and cells[ratio_col].strip() and cells[ratio_col].strip() not in ("-", "—"):
            row.printed_ratio = _number(cells[ratio_col], n, header[ratio_col], p)
            row.ratio_digits = _decimals(cells[ratio_col])
        if variant == "pruned":
            above = [k for k in range(len(rows) - 1, -1, -1) if rows[k].variant == "vanilla"]
            if not above:
                raise GreentuiError(f"{p.name}: row {n}, column {header[i_variant]!r}: a pruned row with no "
                                    "vanilla row above it to pair with")
            row.pair_of = above[0]
        rows.append(row)
    if not rows:
        raise GreentuiError(f"{p.name}: row 2: no data rows under the header")
    percent = metric == "acc" and any(v > 1.0 for r in rows for v in r.cells.values())
    if percent:
        for r in rows:
            r.cells = {t: v / 100 for t, v in r.cells.items()}
            if r.printed_avg is not None:
                r.printed_avg /= 100
    for r in rows:
        if metric == "acc" and any(not 0 <= v <= 1 for v in r.cells.values()):
            t = next(t for t, v in r.cells.items() if not 0 <= v <= 1)
            col = header[next(i for i, tt in col_task.items() if tt == t)]
            raise GreentuiError(f"{p.name}: row {r.line}, column {col!r}: accuracy must be within 0–1 or 0–100 %")
        if metric == "wh" and any(v < 0 for v in r.cells.values()):
            t = next(t for t, v in r.cells.items() if v < 0)
            col = header[next(i for i, tt in col_task.items() if tt == t)]
            raise GreentuiError(f"{p.name}: row {r.line}, column {col!r}: energy cannot be negative")
    tasks = [t for t in STUDY_TASKS if t in col_task.values()]
    table = ParsedTable(metric=metric, source=source or p.name, path=str(p.resolve()), tasks=tasks,
                        rows=rows, percent=percent)
    table.checks = check_printed(table)
    return table


def check_printed(table: ParsedTable) -> list[Check]:
    """Recompute every printed Avg and Ratio from the cells and compare within printed rounding."""
    scale = 100.0 if table.percent else 1.0
    checks: list[Check] = []
    for r in table.rows:
        cell_err = max((0.5 * 10 ** -d for d in r.digits.values()), default=0.0) / scale
        avg = mean(r.cells.values())
        if r.printed_avg is not None:
            tol = 0.5 * 10 ** -r.avg_digits / scale + cell_err
            checks.append(Check(table.metric, r.model, r.variant, r.line, "Avg", r.printed_avg * scale,
                                avg * scale, tol * scale, abs(r.printed_avg - avg) <= tol + 1e-12))
        if r.printed_ratio is not None and r.pair_of is not None:
            v = table.rows[r.pair_of]
            common = [t for t in r.cells if t in v.cells]
            if common:
                a_p, a_v = mean(r.cells[t] for t in common), mean(v.cells[t] for t in common)
                if a_v:
                    ratio = a_p / a_v
                    v_err = max((0.5 * 10 ** -d for d in v.digits.values()), default=0.0) / scale
                    tol = 0.5 * 10 ** -r.ratio_digits + ratio * (cell_err / a_p + v_err / a_v if a_p else 0)
                    checks.append(Check(table.metric, r.model, r.variant, r.line, "Ratio", r.printed_ratio,
                                        ratio, tol, abs(r.printed_ratio - ratio) <= tol + 1e-12))
    return checks


def reference_runs(table: ParsedTable) -> list[dict[str, Any]]:
    """The reference runs a table describes: one per pruned row (with its vanilla row), plus one per
    vanilla row that no pruned row pairs with. ``key`` matches the same run in another table."""
    runs: list[dict[str, Any]] = []
    paired = {r.pair_of for r in table.rows if r.pair_of is not None}
    seen: dict[str, int] = {}
    for i, r in enumerate(table.rows):
        if r.variant == "vanilla" and i in paired:
            continue
        seen[r.model] = seen.get(r.model, 0) + 1
        key = f"{r.model}#{seen[r.model]}"
        rows = {"pruned": r, "vanilla": table.rows[r.pair_of]} if r.variant == "pruned" else {"vanilla": r}
        checks = [c for c in table.checks if c.line in {x.line for x in rows.values()}]
        runs.append({"key": key, "model": r.model, "rows": rows, "checks": checks})
    return runs


def import_table(store: Store, path: str | Path, metric: str, source: str | None = None) -> list[int]:
    """Parse, check and store a published table; returns the reference run ids (new or merged)."""
    table = parse_table(path, metric, source)
    payload = []
    for run in reference_runs(table):
        results = {variant: {t: ({"acc": v} if metric == "acc" else {"energy_kwh": v / 1000})
                             for t, v in row.cells.items()}
                   for variant, row in run["rows"].items()}
        payload.append({
            "key": run["key"], "model": run["model"], "source": table.source, "metric": metric,
            "file": table.path, "percent": table.percent, "results": results,
            "lines": {variant: row.line for variant, row in run["rows"].items()},
            "checks": [c.__dict__ for c in run["checks"]],
        })
    return store.results.save_reference_runs(payload)


def flags_of(run: dict[str, Any]) -> list[str]:
    """The printed-vs-recomputed disagreements recorded on a reference run (empty when none)."""
    ref = (run.get("config") or {}).get("reference") or {}
    out = []
    for metric in METRICS:
        for c in (ref.get("checks") or {}).get(metric, []):
            if not c["ok"]:
                out.append(Check(**c).message())
    return out


def checks_of(run: dict[str, Any]) -> list[Check]:
    ref = (run.get("config") or {}).get("reference") or {}
    return [Check(**c) for metric in METRICS for c in (ref.get("checks") or {}).get(metric, [])]
