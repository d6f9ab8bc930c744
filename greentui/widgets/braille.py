"""A tiny braille canvas: 2x4 dots per terminal cell.

Why braille: a terminal cell is roughly twice as tall as it is wide, and Unicode braille
(U+2800..U+28FF) packs a 2-column x 4-row dot matrix into one cell.  A dot is therefore about
half a cell wide and a quarter of a cell tall, i.e. *square* on a typical 1:2 cell, so lines and
circles drawn in dot coordinates keep their shape.  This gives 8x the resolution of plain
characters with no dependency beyond ``rich``.

Colour: a terminal cell has one foreground colour, so per-dot styles collapse to one style per
cell.  The rule is "last write wins": whatever was drawn last into a cell decides its colour.
Callers exploit that as a z-order (grid first, data series after, labels last).

This module deliberately knows nothing about Textual so it can be unit-tested in isolation.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.style import StyleType
from rich.text import Text

BRAILLE_BASE = 0x2800

# Bit for the dot at (column, row) inside one cell, per the Unicode braille layout:
#   1 4
#   2 5
#   3 6
#   7 8
_DOT_BITS: tuple[tuple[int, ...], ...] = (
    (0x01, 0x02, 0x04, 0x40),  # left column, rows 0..3
    (0x08, 0x10, 0x20, 0x80),  # right column, rows 0..3
)


class BrailleCanvas:
    """A width x height (in cells) canvas addressed in dots: x in [0, 2w), y in [0, 4h).

    Origin is the top-left corner and y grows downward, like the terminal.  Out-of-range
    writes are silently clipped, so callers can draw geometry that spills over the edge
    without bounds-checking every point.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width = max(0, int(width))
        self.height = max(0, int(height))
        self._bits: list[list[int]] = [[0] * self.width for _ in range(self.height)]
        self._styles: list[list[StyleType | None]] = [[None] * self.width for _ in range(self.height)]
        # Text overlays: (row, col) -> (char, style).  They replace the braille glyph.
        self._text: dict[tuple[int, int], tuple[str, StyleType | None]] = {}

    @property
    def dot_width(self) -> int:
        return self.width * 2

    @property
    def dot_height(self) -> int:
        return self.height * 4

    # ------------------------------------------------------------------ dots
    def set(self, x: float, y: float, style: StyleType | None = None) -> None:
        """Turn on the dot nearest (x, y); clip silently outside the canvas."""
        xi, yi = int(round(x)), int(round(y))
        if not (0 <= xi < self.dot_width and 0 <= yi < self.dot_height):
            return
        col, row = xi // 2, yi // 4
        self._bits[row][col] |= _DOT_BITS[xi % 2][yi % 4]
        if style is not None:
            self._styles[row][col] = style

    def get(self, x: int, y: int) -> bool:
        """Whether the dot at (x, y) is on (False outside the canvas)."""
        if not (0 <= x < self.dot_width and 0 <= y < self.dot_height):
            return False
        return bool(self._bits[y // 4][x // 2] & _DOT_BITS[x % 2][y % 4])

    def line(
        self,
        x0: float,
        y0: float,
        x1: float,
        y1: float,
        style: StyleType | None = None,
        *,
        dotted: bool = False,
    ) -> None:
        """Bresenham line between two dot positions (inclusive of both ends).

        ``dotted`` lights every other dot: used for inner grid rings so they read as
        background and do not compete with the data polygons.
        """
        xa, ya, xb, yb = (int(round(v)) for v in (x0, y0, x1, y1))
        dx, dy = abs(xb - xa), -abs(yb - ya)
        sx = 1 if xa < xb else -1
        sy = 1 if ya < yb else -1
        err = dx + dy
        step = 0
        while True:
            if not dotted or step % 2 == 0:
                self.set(xa, ya, style)
            if xa == xb and ya == yb:
                break
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                xa += sx
            if e2 <= dx:
                err += dx
                ya += sy
            step += 1

    def polygon(self, points: list[tuple[float, float]], style: StyleType | None = None, *, dotted: bool = False) -> None:
        """Draw a closed polygon through ``points`` (last vertex joined back to the first)."""
        n = len(points)
        if n == 1:
            self.set(*points[0], style)
        for i in range(n if n > 1 else 0):
            (xa, ya), (xb, yb) = points[i], points[(i + 1) % n]
            self.line(xa, ya, xb, yb, style, dotted=dotted)

    # ------------------------------------------------------------------ text
    def text(self, col: int, row: int, label: str, style: StyleType | None = None) -> int:
        """Place ``label`` starting at cell (col, row), clipped to the canvas.

        Text replaces the braille glyph of the cells it covers.  Wide (double-cell)
        characters are skipped rather than mis-aligning the grid.  Returns the number of
        cells written, so callers can append differently styled text after it.
        """
        if not (0 <= row < self.height):
            return 0
        written = 0
        c = col
        for ch in label:
            if cell_len(ch) != 1:
                continue
            if 0 <= c < self.width:
                self._text[(row, c)] = (ch, style)
                written += 1
            c += 1
        return written

    def is_free(self, col: int, row: int, length: int) -> bool:
        """True when the cells [col, col+length) on ``row`` hold no text (dots may be lit)."""
        return all((row, c) not in self._text for c in range(col, col + length))

    # ------------------------------------------------------------------ output
    def render_lines(self) -> list[Text]:
        """One ``Text`` per cell row, each exactly ``width`` cells wide."""
        lines: list[Text] = []
        for row in range(self.height):
            line = Text(no_wrap=True, overflow="crop")
            for col in range(self.width):
                overlay = self._text.get((row, col))
                if overlay is not None:
                    ch, style = overlay
                    line.append(ch, style or "")
                    continue
                bits = self._bits[row][col]
                if bits:
                    line.append(chr(BRAILLE_BASE + bits), self._styles[row][col] or "")
                else:
                    line.append(" ")
            lines.append(line)
        return lines

    def render(self) -> Text:
        """All rows joined by newlines: a renderable a Textual widget can return directly."""
        out = Text(no_wrap=True, overflow="crop", end="")
        out.append(Text("\n").join(self.render_lines()))
        return out

    def __str__(self) -> str:
        return self.render().plain


__all__ = ["BRAILLE_BASE", "BrailleCanvas"]
