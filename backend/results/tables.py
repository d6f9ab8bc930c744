"""The one table writer of every export: Markdown, LaTeX and CSV, each with one escape function.

Why one module: the exports printed model names from outside (imported tables, lm-eval files, model
folders) through two hand-written writers that escaped differently (LaTeX only ``_``, Markdown
nothing, CSV cells verbatim), so a ``|`` broke a Markdown row, a ``&`` a LaTeX table, and a name
starting with ``=`` became a spreadsheet formula. Here everything handed to a writer — titles,
headers, cells, notes — is plain text, and the writer escapes all of it for its format:

- ``escape_markdown``: CommonMark's backslash escapes for what could change a table's structure or
  turn text into a link, HTML, math or emphasis (``\\ ` * _ [ ] < > | & ~ $``); a line break would
  end the row, so it is written as the two characters ``\\n``.
- ``escape_latex``: the ten specials ``& % $ # _ { } ~ ^ \\`` (and ``< > |``, which the default font
  encoding prints as other glyphs; ``[ ] *`` braced, which after a row's ``\\\\`` would be read as
  its options), and the few Unicode signs greentui's own cells use (``± × — –``…)
  as LaTeX commands, so the output compiles with any engine.
- ``csv_cell``: RFC 4180 quoting is the ``csv`` module's; on top of it, OWASP's advice against
  formula injection: a text cell starting with ``= + - @`` (or a tab or carriage return) gets a
  leading ``'``. Decision: a real number stays a number — a Python ``int``/``float`` cell, and a
  text cell that is a plain decimal number (``-0.5``, ``+3``, ``1e-3``), is written as it is: a
  spreadsheet reads those as numbers, never as formulas, and a negative Wh difference must stay
  summable.

In every format a control character (C0, DEL, C1: ESC, OSC 52's BEL…) and a bidirectional override
is written as its escape (``\\x1b``, ``backend.text.safe_text``: the project's one such function), so
an export printed to a terminal never sends it a control sequence; CSV keeps a line break *inside* a
quoted cell (RFC 4180 allows it, and it is data).
JSON needs no help: ``json.dumps`` escapes control characters and quotes itself.

Markdown tables are laid out by ``tabulate`` (aligned columns, readable in a terminal), CSV by the
standard ``csv`` module; the LaTeX tabular (booktabs rules) is three lines of joining.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.text import safe_text

# ------------------------------------------------------------------------------------ Markdown

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|&~$])")


def escape_markdown(text: Any) -> str:
    """Plain text as Markdown (GFM) that shows the same characters, in a table cell or a line."""
    return _MD_SPECIAL.sub(r"\\\1", safe_text(text))


# --------------------------------------------------------------------------------------- LaTeX

_LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
    ">": r"\textgreater{}", "|": r"\textbar{}",
    # braced so that a row starting with them is not read as ``\\[length]`` or ``\\*``
    "[": "{[}", "]": "{]}", "*": "{*}",
    # the signs greentui's own cells and captions use, as commands every engine knows
    "±": r"$\pm$", "×": r"$\times$", "—": "---", "–": "--", "≤": r"$\le$", "≥": r"$\ge$",
    "Δ": r"$\Delta$", "·": r"$\cdot$", "√": r"$\surd$", "²": r"$^2$", "≈": r"$\approx$", "⚠": "(!)",
}
_LATEX_SPECIAL = re.compile("|".join(re.escape(k) for k in _LATEX))


def escape_latex(text: Any) -> str:
    """Plain text as LaTeX that typesets the same characters (in a cell, a caption or a comment)."""
    return _LATEX_SPECIAL.sub(lambda m: _LATEX[m.group()], safe_text(text))


# ----------------------------------------------------------------------------------------- CSV

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    """One CSV cell, safe to open in a spreadsheet; the ``csv`` module adds RFC 4180's quotes.

    ``None`` is an empty cell; numbers and booleans are written as they are; text gets its control
    characters shown (line breaks inside it kept) and a leading ``'`` when a spreadsheet
    would take it for a formula (OWASP, "CSV Injection"), unless it is a plain number.
    """
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = str(value)
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        text = "'" + text
    return safe_text(text, keep_newlines=True)


def csv_text(columns: Sequence[str], records: Iterable[Mapping[str, Any]]) -> str:
    """Records as CSV (header first, RFC 4180 quoting, CRLF line ends); keys not in ``columns`` are
    left out, missing ones are empty."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([csv_cell(c) for c in columns])
    for rec in records:
        writer.writerow([csv_cell(rec.get(c)) for c in columns])
    return buf.getvalue()


# -------------------------------------------------------------------------------------- tables

@dataclass
class Table:
    """A table as plain text: the writers escape every string in it for their format.

    ``align`` has one letter per column, ``l`` or ``r`` (numbers); ``note`` is a sentence printed
    under the title in Markdown and as a comment above the tabular in LaTeX.
    """

    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    align: str = ""
    note: str = ""
    notes_after: list[str] = field(default_factory=list)

    def alignment(self) -> str:
        n = len(self.header)
        return (self.align or "l" * n).ljust(n, "r")[:n]


def markdown_table(table: Table) -> str:
    """A titled GFM pipe table with aligned columns, every string escaped."""
    from tabulate import tabulate

    body = tabulate([[escape_markdown(c) for c in row] for row in table.rows],
                    headers=[escape_markdown(h) for h in table.header], tablefmt="pipe",
                    disable_numparse=True,
                    colalign=["right" if a == "r" else "left" for a in table.alignment()])
    parts = [f"### {escape_markdown(table.title)}", ""]
    if table.note:
        parts += [escape_markdown(table.note), ""]
    parts.append(body)
    if table.notes_after:
        parts += [""] + [escape_markdown(n) for n in table.notes_after]
    return "\n".join(parts) + "\n"


def markdown_lines(title: str, lines: Iterable[str], bullet: bool = True) -> str:
    """A heading-less paragraph followed by a bulleted list, escaped (quality badges, checks)."""
    items = [escape_markdown(title), ""] + [("- " if bullet else "") + escape_markdown(x) for x in lines]
    return "\n".join(items) + "\n"


def latex_table(table: Table) -> str:
    """A ``table`` float with a booktabs ``tabular``, caption and every cell escaped."""
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{escape_latex(table.title)}}}"]
    if table.note:
        out.append(latex_comment(table.note))
    out += [rf"\begin{{tabular}}{{{table.alignment()}}}", r"\toprule",
            " & ".join(escape_latex(h) for h in table.header) + r" \\", r"\midrule"]
    out += [" & ".join(escape_latex(c) for c in row) + r" \\" for row in table.rows]
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    out += [latex_comment(n) for n in table.notes_after]
    return "\n".join(out) + "\n"


def latex_comment(text: str) -> str:
    """One comment line: a line break in the text cannot end the comment (it is shown escaped)."""
    return "% " + escape_latex(text)
