"""Outside text made safe for a terminal: the one function every printer and widget passes it through.

Why: a model name, a folder name, an error message or a log line comes from outside greentui (an
imported table, an lm-eval JSON, a path, a library). Printed raw, an escape sequence in it drives the
user's terminal (OSC 52 sets the clipboard, CSI moves the cursor and recolours), and read as Rich or
Textual markup, ``[@click=app.quit]`` becomes a link that runs an app action. So outside text is
*text*: :func:`safe_text` shows every control character as an escape (``\\x1b``, ``\\n``) and cuts a
name that would fill the screen; the caller then shows the result as plain text (a Rich ``Text``, a
Textual ``Content``, ``print(..., markup=False)``), never as markup.

Standard library only: every layer, the CLI and the UI import it.
"""

from __future__ import annotations

import unicodedata

#: what names are cut to where a screen or a table shows them whole (a 10,000-character model name
#: must not push a run's stages and results off the screen)
NAME_LIMIT = 80
ELLIPSIS = "…"

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# characters that are not Unicode "control" (Cc) but reorder or hide what follows on a terminal:
# bidirectional overrides and isolates (the "Trojan source" characters) and the line/paragraph
# separators some terminals treat as line breaks
_INVISIBLE_FORMATTING = set("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")


def _escaped(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _unsafe(ch: str) -> bool:
    return ch in _INVISIBLE_FORMATTING or unicodedata.category(ch) == "Cc"


def safe_text(value: object, limit: int | None = None, *, keep_newlines: bool = False) -> str:
    """``value`` as text a terminal shows and never obeys.

    Control characters (C0, DEL, C1: ESC, BEL, CSI…) and bidirectional overrides are written as
    escapes (``\\x1b``, ``\\u202e``); a newline too unless ``keep_newlines`` (a multi-line error or
    log block). ``limit`` cuts the result to that many characters, the last one an ellipsis. The
    result is plain text: show it as such (Rich ``Text``, ``markup=False``), never as markup.
    """
    text = "" if value is None else str(value)
    if any(_unsafe(ch) for ch in text):
        text = "".join(ch if not _unsafe(ch) or (keep_newlines and ch == "\n") else _escaped(ch)
                       for ch in text)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + ELLIPSIS
    return text


def safe_name(value: object, limit: int = NAME_LIMIT) -> str:
    """A name (model, folder, label) on one line, cut to ``limit`` characters: :func:`safe_text`."""
    return safe_text(value, limit)
