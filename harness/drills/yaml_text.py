"""A small, deterministic YAML writer for scaffolded scenarios: block mappings at the top, flow style
inside (one provider, one mix entry, one effect per line), so a generated file reads like a hand-written
one and the same data always gives the same bytes."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

_PLAIN = re.compile(r"^[A-Za-z0-9_./][A-Za-z0-9_./-]*$")


def scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    # Plain only when YAML reads it back as this very string (not 429, 1e3, on, null, ...).
    if _PLAIN.match(text) and yaml.safe_load(text) == text:
        return text
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{scalar(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return scalar(value)


def block(value: dict[str, Any], indent: int = 0, depth: int = 1) -> list[str]:
    """`depth` levels of block mappings, then flow style."""
    pad = " " * indent
    lines: list[str] = []
    for key, v in value.items():
        if isinstance(v, dict) and depth > 0 and v:
            lines.append(f"{pad}{scalar(key)}:")
            lines += block(v, indent + 2, depth - 1)
        else:
            lines.append(f"{pad}{scalar(key)}: {flow(v)}")
    return lines


def items(values: list[Any], indent: int = 2) -> list[str]:
    """A block sequence of flow values (`  - {...}`)."""
    return [f"{' ' * indent}- {flow(v)}" for v in values]


def comments(text: list[str]) -> list[str]:
    return [f"# {line}".rstrip() for line in text]


def flow_lines(key: str, values: list[Any], width: int = 100) -> list[str]:
    """`key: [a, b, ...]` as a flow list wrapped over several lines at `width`, continuation lines aligned
    under the first item (plain YAML, the same bytes for the same values)."""
    head = f"{key}: ["
    lines: list[str] = []
    current = head
    for i, value in enumerate(values):
        text = flow(value) + ("]" if i == len(values) - 1 else ",")
        if current not in (head, " " * len(head)) and len(current) + 1 + len(text) > width:
            lines.append(current)
            current = " " * len(head) + text
        else:
            current += ("" if current in (head, " " * len(head)) else " ") + text
    if not values:
        current += "]"
    lines.append(current)
    return lines
