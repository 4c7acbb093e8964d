"""What came back, as the client sees it: the `answer` of a request event.

The client-side half of equivalence and vendor-fallback evidence. For every 2xx with a readable answer
the request event records who the answer says it is (`model`, `system_fingerprint`, any region header),
and its *shape*: what kind of content (text, JSON and its type tree, tool calls by name) and why it
finished. The shape is one canonical JSON string, so a check compares answers with one string
comparison and only parses the shape (for a DeepDiff) where two differ.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator

from harness.core.capabilities import Needs

MAX_TREE_DEPTH = 6


class AnswerParts:
    """An answer gathered from a chat completion body or from a stream's deltas."""

    __slots__ = ("model", "system_fingerprint", "text", "tool_calls", "finish_reason")

    def __init__(self) -> None:
        self.model: str | None = None
        self.system_fingerprint: str | None = None
        self.text: str | None = None
        self.tool_calls: list[str] = []
        self.finish_reason: str | None = None

    @classmethod
    def of_body(cls, body: Any) -> AnswerParts | None:
        try:
            choice = body["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            return None
        if not isinstance(message, dict):
            return None
        parts = cls()
        parts.head(body)
        content = message.get("content")
        parts.text = content if isinstance(content, str) else None
        parts.calls(message.get("tool_calls"))
        finish = choice.get("finish_reason") if isinstance(choice, dict) else None
        parts.finish_reason = finish if isinstance(finish, str) else None
        return parts

    def head(self, chunk: dict[str, Any]) -> None:
        if self.model is None and isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        if self.system_fingerprint is None and isinstance(chunk.get("system_fingerprint"), str):
            self.system_fingerprint = chunk["system_fingerprint"]

    def calls(self, tool_calls: Any) -> None:
        for call in tool_calls if isinstance(tool_calls, list) else ():
            fn = call.get("function") if isinstance(call, dict) else None
            name = fn.get("name") if isinstance(fn, dict) else None
            if isinstance(name, str) and name:  # stream deltas after the first carry no name
                self.tool_calls.append(name)

    def delta(self, chunk: dict[str, Any]) -> None:
        """One stream chunk."""
        self.head(chunk)
        choices = chunk.get("choices")
        if not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            piece = delta.get("content")
            if isinstance(piece, str):
                self.text = (self.text or "") + piece
            self.calls(delta.get("tool_calls"))
        if isinstance(choice.get("finish_reason"), str):
            self.finish_reason = choice["finish_reason"]


def type_tree(value: Any, depth: int = 0) -> Any:
    """The JSON value's structure without its values: what a response contract promises."""
    if depth >= MAX_TREE_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {key: type_tree(item, depth + 1) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [type_tree(value[0], depth + 1)] if value else []
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return "string"


@lru_cache(maxsize=64)
def _validator(schema: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema))


def region_headers(headers: Any) -> dict[str, str]:
    """Response headers naming a region (x-ms-region, a gateway's llm_provider-x-ms-region, ...)."""
    return {name.lower(): str(value) for name, value in headers.items() if "region" in name.lower()}


def answer_record(parts: AnswerParts, headers: Any, needs: Needs | None) -> dict[str, Any]:
    """The `answer` field of a request event."""
    content_json: Any = None
    is_json = False
    text = parts.text
    if text is not None and text[:1] in ("{", "["):
        try:
            content_json, is_json = json.loads(text), True
        except ValueError:
            pass
    shape: dict[str, Any] = {"finish_reason": parts.finish_reason,
                             "content": "json" if is_json else ("text" if text else None)}
    if is_json:
        shape["json"] = type_tree(content_json)
    if parts.tool_calls:
        shape["tool_calls"] = sorted(set(parts.tool_calls))
    record: dict[str, Any] = {"model": parts.model, "system_fingerprint": parts.system_fingerprint,
                              "shape": json.dumps(shape, sort_keys=True, separators=(",", ":"))}
    regions = region_headers(headers)
    if regions:
        record["regions"] = regions
    if needs is not None and needs.schema is not None:
        record["schema_ok"] = is_json and _validator(needs.schema).is_valid(content_json)
    if needs is not None and needs.seed is not None and text is not None:
        # Seeded answers are compared across requests: the digest of what was said, not the text itself.
        record["digest"] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return record
