"""Text that came from inputs (ids, paths, keys, names), made safe to print on a terminal.

Why: an ``image_id`` or a file name is data chosen by whoever made the corpus. Printed raw, an
ANSI escape in it recolours or rewrites the operator's terminal (or hides a line from a log
viewer), a newline forges a second ``vsd:`` line, and a bidi override makes a path read as another.
`printable` keeps every visible character (accents, CJK, emoji) and spells the rest the way
Python's ``repr`` does, so the console shows what the data holds without obeying it.
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Cc: C0/C1 controls (ESC, BEL, DEL, CSI); Cf: format characters (bidi overrides, zero-width);
# Cs: lone surrogates (an undecodable file name); Zl/Zp: line and paragraph separators.
_UNSAFE = ("Cc", "Cf", "Cs", "Zl", "Zp")


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(value: object, limit: int = 0) -> str:
    """``value`` as text with every control or invisible format character escaped (``\\x1b``,
    ``\\n``, ``\\u202e``); plain text passes unchanged. ``limit``: cut the result to that many
    characters (with ``…``), so one hostile 5 kB name cannot flood the console."""
    text = str(value)
    if not text.isprintable() or any(unicodedata.category(c) in _UNSAFE for c in text):
        text = "".join(_escape(c) if unicodedata.category(c) in _UNSAFE else c for c in text)
    if limit and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return text
