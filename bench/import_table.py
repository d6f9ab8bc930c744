"""IMPORT — is a published table's import linear, and are its write transactions short?

``greentui import --table`` of a 100,000-row table (50,000 models, a vanilla and a pruned row each, the
seven tasks, Avg and Ratio) against ten times a 10,000-row one: a ratio near 1 means linear time
(issue #22 2.11: it was quadratic — 4k rows 3.5 s, 20k rows 64 s, 100k rows unfinished after 17 min).
Each import goes into a fresh workspace, in this process (``import_table``, what the CLI calls), sides
alternated. The notes give rows per second and the longest write transaction (the time between two
batch callbacks, an upper bound on how long the runner, ``pause`` or the UI can wait for the lock).

    python -m bench.import_table [--rows 100000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from .common import Row, alternate, row_from_pairs

TASKS = "ARCC,ARCE,BoolQ,Hella,PIQA,OBQA,Wino"


def write_table(path: Path, rows: int) -> Path:
    lines = [f"model,variant,{TASKS},Avg,Ratio"]
    for i in range(rows // 2):
        lines.append(f"Model-{i},vanilla,50.0,80.0,82.0,78.0,81.0,44.0,73.0,69.7,")
        lines.append(f"Model-{i},pruned,45.0,75.0,80.0,70.0,78.0,40.0,70.0,65.4,0.938")
    path.write_text("\n".join(lines) + "\n")
    return path


def import_once(table: Path, work: Path, longest: list[float]) -> float:
    """Seconds to import ``table`` into a new workspace; appends the longest batch's seconds."""
    from backend.results.reference_tables import import_table
    from backend.store import open_store

    ws = Path(tempfile.mkdtemp(prefix="ws-", dir=work))
    marks = [time.perf_counter()]
    with open_store(ws) as store:
        t = time.perf_counter()
        import_table(store, table, "acc", "bench", progress=lambda done, total: marks.append(time.perf_counter()))
        seconds = time.perf_counter() - t
    longest.append(max(b - a for a, b in zip(marks[1:], marks[2:])) if len(marks) > 2 else seconds)
    return seconds


def run(work: Path, *, rows: int = 100_000, repeats: int = 2, log=print) -> list[Row]:
    big = write_table(work / f"table-{rows}.csv", rows)
    small = write_table(work / f"table-{rows // 10}.csv", rows // 10)
    longest: list[float] = []
    a, b = alternate(repeats, lambda: import_once(big, work, longest), lambda: import_once(small, work, longest))
    b10 = [x * 10 for x in b]
    log(f"IMPORT: {rows} rows {min(a):.1f} s, {rows // 10} rows {min(b):.2f} s")
    notes = (f"{rows / min(a):,.0f} rows/s; longest write transaction {max(longest) * 1000:.0f} ms "
             f"(batches of {_batch()} reference runs)")
    return [row_from_pairs("IMPORT", f"import --table of {rows:,} rows / 10 × {rows // 10:,} rows (1 = linear)",
                           a, b10, "s", a_label=f"{rows // 1000}k rows", b_label=f"10 × {rows // 10000}k rows",
                           notes=notes)]


def _batch() -> int:
    from backend.store.results import ResultRepository
    return ResultRepository.REFERENCE_BATCH


def main(argv: list[str] | None = None) -> int:
    from .common import table_lines

    p = argparse.ArgumentParser(prog="python -m bench.import_table", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="greentui-bench-import-") as tmp:
        rows = run(Path(tmp), rows=args.rows, repeats=args.repeats)
    print("\n".join(table_lines(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
