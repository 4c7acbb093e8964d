"""What a request needs of the model that answers it, and what a model can serve.

One vocabulary for every part of a run, so they cannot disagree: the traffic driver builds requests
from a mix entry's requirements, the mock provider decides from the same estimate whether a prompt
fits its context window, the reference gateway filters its fallback targets with `unmet`, and the
checks judge every call with it.

Token counts are estimated deterministically from the characters (about four per token, plus a few
per message, as OpenAI's own rule of thumb): no tokenizer download, the same count everywhere.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness.core.model import Capabilities, JsonSchemaFormat, MixEntry

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4      # role and separators, per message
IMAGE_TOKENS = 85         # a low-detail image part
SHORT_PROMPT = 32         # an upper bound on the driver's own prompt when no input_tokens is asked
TOOL_CHOICES = ("auto", "required", "none")
FILLER = "lorem "


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_tokens(messages: Any) -> int:
    """Estimated prompt tokens of a chat `messages` list (anything else counts 0)."""
    if not isinstance(messages, list):
        return 0
    total = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += MESSAGE_OVERHEAD
        content = message.get("content")
        if isinstance(content, str):
            total += text_tokens(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                if isinstance(part.get("text"), str):
                    total += text_tokens(part["text"])
                elif part.get("type") in ("image_url", "input_image", "image"):
                    total += IMAGE_TOKENS
    return total


def pad_to_tokens(text: str, tokens: int) -> str:
    """`text` followed by filler so that one user message with it estimates to exactly `tokens`
    (or just `text`, when it is already that long)."""
    want = (tokens - MESSAGE_OVERHEAD) * CHARS_PER_TOKEN
    missing = want - len(text) - 1
    if missing <= 0:
        return text
    filler = (FILLER * (missing // len(FILLER) + 1))[:missing]
    return f"{text} {filler}"


def tool_choice_payload(choice: str | None) -> Any:
    """The OpenAI `tool_choice` value for a mix entry's tool_choice."""
    if choice is None or choice in TOOL_CHOICES:
        return choice
    return {"type": "function", "function": {"name": choice}}


def tool_choice_of(value: Any) -> str | None:
    """A request body's `tool_choice` in the mix's words: auto / required / none / a tool name."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        fn = value.get("function")
        name = fn.get("name") if isinstance(fn, dict) else value.get("name")
        if isinstance(name, str):
            return name
    return None


@dataclass(frozen=True)
class Needs:
    """What one request asks of a model: from a mix entry (client side) or a body (provider side)."""

    prompt_tokens: int = 0
    max_tokens: int | None = None
    response_format: str | None = None        # json_schema | json_object | None (text)
    schema: str | None = None                  # the JSON schema, as canonical JSON
    tools: tuple[str, ...] = ()
    tool_choice: str | None = None             # auto | required | none | a tool name | None
    seed: int | None = None
    images: bool = False

    @property
    def wants_tool_call(self) -> bool:
        """The answer must be a tool call: tools offered and a choice that forces one."""
        return bool(self.tools) and self.tool_choice not in (None, "auto", "none")

    @property
    def uses_tools(self) -> bool:
        """The answer may be a tool call (a model without tool calling cannot serve it as asked)."""
        return bool(self.tools) and self.tool_choice not in (None, "none")

    def schema_dict(self) -> dict[str, Any] | None:
        return json.loads(self.schema) if self.schema else None


def needs_of_entry(entry: MixEntry) -> Needs:
    fmt = entry.response_format
    schema = _canonical(fmt.schema_) if isinstance(fmt, JsonSchemaFormat) else None
    return Needs(
        prompt_tokens=entry.input_tokens or SHORT_PROMPT, max_tokens=entry.max_tokens,
        response_format=fmt.type if fmt is not None else None, schema=schema, tools=tuple(entry.tools),
        tool_choice=entry.tool_choice, seed=entry.seed, images="image" in entry.modalities,
    )


def needs_of_body(body: dict[str, Any]) -> Needs:
    """What a chat-completions body asks for, as a provider or a gateway reads it."""
    messages = body.get("messages")
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    schema = None
    if kind == "json_schema":
        spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
        raw = spec.get("schema") if isinstance(spec, dict) else None
        schema = _canonical(raw) if isinstance(raw, dict) else None
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    seed = body.get("seed")
    tools = []
    for tool in body.get("tools") or []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str):
            tools.append(name)
    return Needs(
        prompt_tokens=estimate_tokens(messages),
        max_tokens=max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None,
        response_format=kind if kind in ("json_schema", "json_object") else None, schema=schema,
        tools=tuple(tools), tool_choice=tool_choice_of(body.get("tool_choice")),
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        images=_has_images(messages),
    )


def _has_images(messages: Any) -> bool:
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(
                isinstance(p, dict) and p.get("type") in ("image_url", "input_image", "image") for p in content):
            return True
    return False


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def context_needed(needs: Needs) -> int:
    """Tokens of context a request takes: its prompt plus the output budget it asks for (as OpenAI counts)."""
    return needs.prompt_tokens + (needs.max_tokens or 0)


def unmet(needs: Needs, caps: Capabilities) -> tuple[str, ...]:
    """What of the request a model with `caps` cannot serve, as degradation names (harness.core.model)."""
    out: list[str] = []
    if caps.context_tokens is not None and context_needed(needs) > caps.context_tokens:
        out.append("context")
    budget = caps.max_output_tokens
    if budget is not None and needs.max_tokens is not None and needs.max_tokens > budget:
        out.append("output_budget")
    if needs.response_format is not None and not caps.structured_output:
        out.append("structured_output")
    if needs.uses_tools and not caps.tools:
        out.append("tools")
    if needs.images and not caps.vision:
        out.append("vision")
    if needs.seed is not None and not caps.deterministic_seed:
        out.append("determinism")
    return tuple(out)


def lost(primary: Capabilities, other: Capabilities) -> list[str]:
    """What `other` cannot do that `primary` can, in words for a transition table
    (`context 128k -> 8k`, `structured_output lost`)."""
    out: list[str] = []
    for name, label in (("context_tokens", "context"), ("max_output_tokens", "max output")):
        a, b = getattr(primary, name), getattr(other, name)
        if b is not None and (a is None or b < a):
            out.append(f"{label} {short_count(a)} -> {short_count(b)}")
    for name in ("structured_output", "tools", "vision", "deterministic_seed"):
        if getattr(primary, name) and not getattr(other, name):
            out.append(f"{name} lost")
    return out


def degradations(primary: Capabilities, other: Capabilities) -> set[str]:
    """The degradation names (`degrades`) that `other` has against `primary`."""
    out: set[str] = set()
    if other.context_tokens is not None and (primary.context_tokens is None
                                             or other.context_tokens < primary.context_tokens):
        out.add("context")
    if other.max_output_tokens is not None and (primary.max_output_tokens is None
                                                or other.max_output_tokens < primary.max_output_tokens):
        out.add("output_budget")
    for name, degradation in (("structured_output", "structured_output"), ("tools", "tools"),
                              ("vision", "vision"), ("deterministic_seed", "determinism")):
        if getattr(primary, name) and not getattr(other, name):
            out.add(degradation)
    return out


def short_count(n: int | None) -> str:
    if n is None:
        return "unlimited"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(n)


def example_of(schema: Any, depth: int = 0) -> Any:
    """A small instance valid against a (simple) JSON schema: what a model with structured output answers.
    Covers what response schemas use (object, array, string, number, integer, boolean, null, enum, const,
    anyOf/oneOf); anything else gets an empty object."""
    if not isinstance(schema, dict) or depth > 16:
        return {}
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return example_of(options[0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        return {name: example_of(sub, depth + 1) for name, sub in props.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1) or 1))
        return [example_of(schema.get("items", {}), depth + 1) for _ in range(min(count, 3))]
    if kind == "string":
        return "x" * max(1, int(schema.get("minLength", 1) or 1))
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return {}


def request_kind(entry: MixEntry) -> str | None:
    """A mix entry's requirements as one canonical string (None: it asks for nothing beyond a plain chat
    answer). The driver writes it into each request event; the checks map it back (`kinds`)."""
    parts: list[str] = []
    if entry.input_tokens is not None:
        parts.append(f"input_tokens={entry.input_tokens}")
    if entry.max_tokens is not None:
        parts.append(f"max_tokens={entry.max_tokens}")
    fmt = entry.response_format
    if isinstance(fmt, JsonSchemaFormat):
        digest = hashlib.sha256(_canonical(fmt.schema_).encode()).hexdigest()[:8]
        parts.append(f"response_format=json_schema:{fmt.name}:{digest}")
    elif fmt is not None:
        parts.append(f"response_format={fmt.type}")
    if entry.tool_choice is not None:
        parts.append(f"tool_choice={entry.tool_choice}")
    if entry.seed is not None:
        parts.append(f"seed={entry.seed}")
    if "image" in entry.modalities:
        parts.append("modalities=" + "+".join(entry.modalities))
    if not parts:
        return None
    if entry.tools:
        parts.append("tools=" + "+".join(entry.tools))
    return ";".join(parts)


def kinds(mix: Iterable[MixEntry]) -> dict[str, Needs]:
    """Request kind -> what requests of that kind need, for every kind a traffic mix can send."""
    out: dict[str, Needs] = {}
    for entry in mix:
        kind = request_kind(entry)
        if kind is not None:
            out.setdefault(kind, needs_of_entry(entry))
    return out


def has_requirements(entry: MixEntry) -> bool:
    return request_kind(entry) is not None
