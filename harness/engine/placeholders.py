"""`{name}` placeholders in gateway commands, environments, URLs and config files."""

from __future__ import annotations

import re

from harness.core.errors import HarnessError

_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.\-]+)\}")


def fill(text: str, values: dict[str, str], where: str) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            known = ", ".join("{" + k + "}" for k in sorted(values))
            raise HarnessError(f"{where}: unknown placeholder {{{name}}}\n  hint: known placeholders are {known}")
        return values[name]

    return _PLACEHOLDER.sub(one, text)
