"""The correlation token: carried in the message content because gateways strip headers.

Format: `[[harness:id=r000042;tenant=acme;class=chat;region=eu;data=internal]]`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\[\[harness:([^\]]*)\]\]")
_KEYS = {"id": "id", "tenant": "tenant", "class": "request_class", "region": "region", "data": "data_class"}
_SHORT = {v: k for k, v in _KEYS.items()}


@dataclass(frozen=True)
class Correlation:
    id: str
    tenant: str | None = None
    request_class: str | None = None
    region: str | None = None
    data_class: str | None = None

    def token(self) -> str:
        parts = [f"{_SHORT[k]}={getattr(self, k)}" for k in _SHORT if getattr(self, k) is not None]
        return "[[harness:" + ";".join(parts) + "]]"


def find(text: str) -> Correlation | None:
    """The first token in `text`, or None."""
    m = _TOKEN.search(text)
    if not m:
        return None
    values: dict[str, str] = {}
    for part in m.group(1).split(";"):
        key, _, value = part.partition("=")
        if key in _KEYS and value:
            values[_KEYS[key]] = value
    if "id" not in values:
        return None
    return Correlation(**values)
