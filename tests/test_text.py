"""Text from inputs printed on a terminal: shown, never obeyed."""

from __future__ import annotations

from vsd.text import printable


def test_control_and_invisible_characters_are_escaped_visible_text_is_kept():
    assert printable("tâble 桌子 🙂 a b") == "tâble 桌子 🙂 a b"
    assert printable("\x1b[2J\x1b[31mred\x07") == "\\x1b[2J\\x1b[31mred\\x07"
    assert printable("a\nvsd: error: forged\r") == "a\\nvsd: error: forged\\r"
    assert printable("evil\u202egnp.exe") == "evil\\u202egnp.exe"  # a bidi override reads as another name
    assert printable("caf\udce9") == "caf\\udce9"  # an undecodable file name
    assert printable("\x9b31m") == "\\x9b31m"  # the 8-bit CSI
    once = printable("\x1b]0;title\x07")
    assert printable(once) == once and once.isprintable()
    assert printable("x" * 5000, limit=80) == "x" * 79 + "…"
