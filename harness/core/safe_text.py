"""Text from a run (audit fields, provider names, error messages a gateway wrote) made safe to write.

Anything in a ledger came from processes we do not trust: an audit field may hold `\\u0001\\u001b[2J`.
Printed raw it clears the user's terminal; in junit.xml it makes the file not well-formed (XML 1.0
forbids most C0 characters even as character references). Every writer passes such text through
`printable` first: each control character becomes a visible escape (`\\x1b`), so what was sent stays
readable, and nothing a gateway sends can drive a terminal or break a report.
"""

from __future__ import annotations

from typing import Any

# C0 (but tab and newline), DEL and C1: terminal controls (ESC, CSI 0x9b) and what XML 1.0 refuses.
_CONTROLS = [*range(0x00, 0x09), 0x0B, 0x0C, 0x0D, *range(0x0E, 0x20), 0x7F, *range(0x80, 0xA0)]
_TABLE: dict[int, str] = {c: f"\\x{c:02x}" for c in _CONTROLS}
# Lone surrogates cannot be encoded to UTF-8 at all; U+FFFE and U+FFFF are not XML characters.
_TABLE.update({c: f"\\u{c:04x}" for c in (*range(0xD800, 0xE000), 0xFFFE, 0xFFFF)})
_ONE_LINE = {**_TABLE, 0x09: "\\t", 0x0A: "\\n"}


def printable(text: Any, one_line: bool = False) -> str:
    """`text` (str() of anything) with every control character as a visible escape; tabs and newlines
    kept unless `one_line`."""
    return str(text).translate(_ONE_LINE if one_line else _TABLE)


def printable_tree(value: Any) -> Any:
    """The same for every string (keys too) in a JSON-like value."""
    if isinstance(value, str):
        return value.translate(_TABLE)
    if isinstance(value, dict):
        return {printable_tree(k) if isinstance(k, str) else k: printable_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_tree(v) for v in value]
    return value
