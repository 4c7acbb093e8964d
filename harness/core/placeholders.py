"""`{name}` placeholders in gateway commands, environments, URLs and config files."""

from __future__ import annotations

import re
from typing import Any

from harness.core.errors import HarnessError

PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.\-]+)\}")


def fill(text: str, values: dict[str, str], where: str) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            known = ", ".join("{" + k + "}" for k in sorted(values))
            raise HarnessError(f"{where}: unknown placeholder {{{name}}}\n  hint: known placeholders are {known}")
        return values[name]

    return PLACEHOLDER.sub(one, text)


def fill_tree(node: Any, values: dict[str, str], where: str) -> Any:
    """Fill placeholders in every string of parsed config data (after parsing, so a value such as a
    key or a URL can never change the structure of the config)."""
    if isinstance(node, dict):
        return {key: fill_tree(value, values, f"{where}.{key}") for key, value in node.items()}
    if isinstance(node, list):
        return [fill_tree(value, values, f"{where}[{i}]") for i, value in enumerate(node)]
    if isinstance(node, str):
        return fill(node, values, where)
    return node
