"""Published tables beside your runs: ``greentui import --table FILE.csv --metric acc|wh``.

A paper's table as papers print it: one row per model variant, columns ``model``, ``variant``
(vanilla or pruned), one column per task — its lm-eval name or a usual short header (ARCC / ARC-c,
ARCE / ARC-e, BoolQ, Hella / HellaSwag, PIQA, OBQA / OpenBookQA, Wino / WinoGrande) — and optionally
the printed ``Avg`` and ``Ratio``. Rows become **reference runs** (``kind = "reference"``, never
mixed up with measured ones, meter ``published``): a pruned row pairs with the nearest vanilla row
above it, and an accuracy table and an energy table of the same models merge into the same reference
runs (matched by model name, in any case, and the pruned row's position among that model's rows).

greentui recomputes Avg (mean of the row's cells) and Ratio (pruned Avg / vanilla Avg over the
tasks both rows hold) from the cells and flags a printed Avg or Ratio that disagrees beyond the
printed rounding: half a unit of the printed value's last digit, plus what the cells' own rounding
can move the recomputed value. Accuracy printed in percent is stored as a fraction: a cell printed
with ``%`` makes the table percent (``0.9%`` is 0.009), and unmarked cells above 1 can only be percent.

Model names match in any case, and ``--rename OLD=NEW`` maps other spellings. A second table of the
same metric from another source becomes runs of its own (``ResultRepository.save_reference_runs``).

The whole file (at most ``MAX_TABLE_BYTES``) is parsed and checked in one linear pass before anything
is written; the runs are then written in short batches. A bad table gets a one-line error naming the
row (1 = the header) and the column.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean as mean  # float sums: exact Fractions made a 100k-row table slow
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


#: a published table is a few kB; this bound keeps `--table /dev/zero` (or a wrong, huge file) from
#: filling memory before a word is said, and still reads a 100,000-row table (~7 MB)
MAX_TABLE_BYTES = 64 * 2**20


def read_table_text(p: Path) -> str:
    """The file's text, read at most ``MAX_TABLE_BYTES`` (+1 to know it is more), as UTF-8."""
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_TABLE_BYTES + 1)
    except OSError as exc:
        raise GreentuiError(f"cannot read {p}: {exc.strerror or exc}") from exc
    if len(data) > MAX_TABLE_BYTES:
        raise GreentuiError(f"{p} is larger than {MAX_TABLE_BYTES // 2**20} MiB; a published table is a "
                            "CSV of a few kB (model, variant, one column per task)")
    if b"\x00" in data:
        raise GreentuiError(f"{p.name} holds NUL bytes: it is not a CSV text table")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GreentuiError(f"{p.name} is not UTF-8 text ({exc.reason})") from exc


def _records(text: str, p: Path) -> list[list[str]]:
    """The CSV records, RFC 4180 (a quoted cell may hold the delimiter, a line break or a doubled quote)."""
    first = text.split("\n", 1)[0]
    try:  # the delimiter only: quoting is RFC 4180's whatever the sniffer guesses (it turned "" off)
        delimiter = csv.Sniffer().sniff(first if first.strip() else ",", delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, doublequote=True, quotechar='"')
    try:
        return list(reader)
    except csv.Error as exc:
        raise GreentuiError(f"{p.name}: row {reader.line_num}: not a CSV table ({exc})") from None


def parse_renames(pairs: list[str] | None) -> dict[str, str]:
    """``--rename OLD=NEW`` values → {old name casefolded: new name}; a malformed one names itself."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise GreentuiError(f"--rename {pair!r}: expected OLD=NEW (a model name of the table and its new name)")
        out[old.strip().casefold()] = new.strip()
    return out


def parse_table(path: str | Path, metric: str, source: str | None = None,
                renames: dict[str, str] | None = None) -> ParsedTable:
    """Read and check a published table; raises GreentuiError naming the row and column.

    ``renames`` maps a model name of the table (any case) to the name to store: the same model
    printed differently by two papers (``Llama 3.1 8B`` / ``Llama-3.1-8B``) becomes one.
    One pass over the rows: time linear in the file's size.
    """
    p = Path(path)
    if metric not in METRICS:
        raise GreentuiError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")
    reader = _records(read_table_text(p), p)
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
    value_cols = [*col_task, *(c for c in (avg_col,) if c is not None)]
    renames = dict(renames or {})
    renamed: set[str] = set()
    rows: list[TableRow] = []
    marked_percent: tuple[int, int] | None = None      # (row, column) of the first cell printed with %
    last_vanilla: int | None = None
    for n, cells in enumerate(reader[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        cells = cells + [""] * (len(header) - len(cells))
        model = cells[i_model].strip()
        if not model:
            raise GreentuiError(f"{p.name}: row {n}, column {header[i_model]!r}: empty model name")
        if model.casefold() in renames:
            renamed.add(model.casefold())
            model = renames[model.casefold()]
        variant = cells[i_variant].strip().lower()
        if variant not in ("vanilla", "pruned"):
            raise GreentuiError(f"{p.name}: row {n}, column {header[i_variant]!r}: {cells[i_variant].strip()!r} "
                                "is neither vanilla nor pruned")
        if marked_percent is None:
            marked_percent = next(((n, i) for i in value_cols if cells[i].strip().endswith("%")), None)
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
            if last_vanilla is None:
                raise GreentuiError(f"{p.name}: row {n}, column {header[i_variant]!r}: a pruned row with no "
                                    "vanilla row above it to pair with")
            row.pair_of = last_vanilla
        else:
            last_vanilla = len(rows)
        rows.append(row)
    if not rows:
        raise GreentuiError(f"{p.name}: row 2: no data rows under the header")
    for old in renames:
        if old not in renamed:
            raise GreentuiError(f"--rename: no model {old!r} in {p.name} (names match in any case)")
    if marked_percent is not None and metric == "wh":
        n, i = marked_percent
        raise GreentuiError(f"{p.name}: row {n}, column {header[i]!r}: a percentage in an energy (Wh) table")
    # percent means percent: a cell printed with % makes the table's figures percentages (0.9% is
    # 0.009); unmarked, accuracy above 1 can only be a percentage
    percent = metric == "acc" and (marked_percent is not None
                                   or any(v > 1.0 for r in rows for v in r.cells.values()))
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
    vanilla row that no pruned row pairs with. ``key`` matches the same run in another table: the
    model name in any case ("Gemma-2B" and "Gemma-2b" are one model) and the run's place among that
    model's runs."""
    runs: list[dict[str, Any]] = []
    paired = {r.pair_of for r in table.rows if r.pair_of is not None}
    checks_by_line: dict[int, list[Check]] = {}
    for c in table.checks:
        checks_by_line.setdefault(c.line, []).append(c)
    seen: dict[str, int] = {}
    for i, r in enumerate(table.rows):
        if r.variant == "vanilla" and i in paired:
            continue
        folded = r.model.casefold()
        seen[folded] = seen.get(folded, 0) + 1
        key = f"{folded}#{seen[folded]}"
        if r.variant == "pruned":
            if r.pair_of is None:  # the parser pairs every pruned row (one with no vanilla above is refused)
                raise GreentuiError(f"row {r.line}: a pruned row with no vanilla row to pair with")
            rows = {"pruned": r, "vanilla": table.rows[r.pair_of]}
        else:
            rows = {"vanilla": r}
        checks = [c for x in rows.values() for c in checks_by_line.get(x.line, [])]
        checks.sort(key=lambda c: c.line)
        runs.append({"key": key, "model": r.model, "rows": rows, "checks": checks})
    return runs


def import_table(store: Store, path: str | Path, metric: str, source: str | None = None,
                 renames: dict[str, str] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> list[int]:
    """Parse, check and store a published table; returns the reference run ids (new or merged).

    Everything is checked before the first write; the runs are then written in short batches
    (``store.results.save_reference_runs``) so that the runner, ``pause`` and the UI never wait
    long for the store. ``progress(done, total)`` is called after each batch.
    """
    table = parse_table(path, metric, source, renames)
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
    return store.results.save_reference_runs(payload, progress=progress)


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
