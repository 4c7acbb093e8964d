"""A violation's `diff` (DeepDiff, as JSON) in lines a reviewer reads without knowing DeepDiff.

Checks put DeepDiff's JSON into a violation (trust_boundary: the primary's and the fallback's trust
envelopes; equivalence: the primary's and the fallback's response shapes). As JSON it reads
`{"values_changed": {"root['content']": {"new_value": "text", "old_value": "json"}}}`; the reports show
it as `~ content: "json" -> "text"`, `- json`, `+ tool_calls[0]: "search"` instead, the raw JSON kept
beside it. Anything that is not a DeepDiff is left to the caller to show as JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_VALUE_CHARS = 120
ADDED, REMOVED, CHANGED = "+", "-", "~"

# DeepDiff's report keys -> what each line says (values_changed and type_changes carry old and new).
_ADDED = ("dictionary_item_added", "iterable_item_added", "set_item_added", "attribute_added")
_REMOVED = ("dictionary_item_removed", "iterable_item_removed", "set_item_removed", "attribute_removed")
_CHANGED = ("values_changed", "type_changes")
_OTHER = ("repetition_change", "attribute_value_changed")
REPORT_KEYS = frozenset((*_ADDED, *_REMOVED, *_CHANGED, *_OTHER))
_STEP = re.compile(r"""\[(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|(-?\d+))\]|\.([A-Za-z_]\w*)""")


@dataclass(frozen=True)
class DiffLine:
    mark: str   # + added, - removed, ~ changed
    path: str   # `content`, `json.items[0]`; "(whole value)" for the root
    text: str   # the line without its mark: `content: "json" -> "text"`

    def __str__(self) -> str:
        return f"{self.mark} {self.text}"


def is_deepdiff(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and set(value) <= REPORT_KEYS


def diff_lines(diff: Any) -> list[DiffLine] | None:
    """The diff as lines, or None when it is not a DeepDiff (nor a dict of named DeepDiffs, as
    {"shape": DeepDiff}); the lines of a named one are prefixed with its name."""
    if is_deepdiff(diff):
        return _lines(diff)
    if isinstance(diff, dict) and diff and all(is_deepdiff(v) for v in diff.values()):
        out: list[DiffLine] = []
        for name, sub in diff.items():
            out += [DiffLine(line.mark, f"{name}: {line.path}", f"{name}: {line.text}") for line in _lines(sub)]
        return out
    return None


def readable_path(path: str) -> str:
    """root['json']['items'][0] -> json.items[0]; a path DeepDiff wrote otherwise is kept as it is."""
    if path == "root":
        return "(whole value)"
    if not path.startswith("root"):
        return path
    rest, parts, pos = path[4:], [], 0
    for match in _STEP.finditer(rest):
        if match.start() != pos:
            return path  # not a plain chain of keys and indexes: show DeepDiff's own words
        pos = match.end()
        key, dq, index, attr = match.groups()
        if index is not None:
            parts.append(f"[{index}]")
        else:
            name = key if key is not None else dq if dq is not None else attr
            parts.append(("." if parts else "") + name.replace("\\'", "'").replace('\\"', '"'))
    return "".join(parts) if pos == len(rest) and parts else path


def _value(value: Any) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + " ..."


def _lines(diff: dict[str, Any]) -> list[DiffLine]:
    out: list[DiffLine] = []
    for key in sorted(diff, key=_order):
        body = diff[key]
        mark = ADDED if key in _ADDED else REMOVED if key in _REMOVED else CHANGED
        # dictionary_item_added / removed are lists of paths (no value) in DeepDiff's JSON; others map
        # path -> value (or, for changes, -> old and new).
        items = body.items() if isinstance(body, dict) else ((p, None) for p in body) if isinstance(
            body, list) else ()
        for raw, detail in sorted(items, key=lambda kv: str(kv[0])):
            path = readable_path(str(raw))
            if key in _CHANGED and isinstance(detail, dict):
                old, new = _value(detail.get("old_value")), _value(detail.get("new_value"))
                if key == "type_changes":
                    old += f" ({detail.get('old_type')})"
                    new += f" ({detail.get('new_type')})"
                text = f"{path}: {old} -> {new}"
            elif key in _OTHER:
                text = f"{path}: {key.replace('_', ' ')} {_value(detail)}"
            else:
                text = path if detail is None else f"{path}: {_value(detail)}"
            out.append(DiffLine(mark, path, text))
    return out


def _order(key: str) -> tuple[int, str]:
    """Changes first, then what was removed, then what was added: the order a reviewer reads a contract in."""
    rank = 0 if key in _CHANGED else 1 if key in _REMOVED else 2 if key in _ADDED else 3
    return rank, key


def diff_text(diff: Any, indent: str = "") -> list[str]:
    """Lines for the terminal and JUnit: the readable lines, or the diff as one JSON line."""
    lines = diff_lines(diff)
    if lines is None:
        return [indent + json.dumps(diff, default=str, sort_keys=True)]
    return [f"{indent}{line}" for line in lines]
