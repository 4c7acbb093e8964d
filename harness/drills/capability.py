"""The capability family of `harness scaffold`: requests that need what a weaker approved target lacks.

An outage drill of plain chat requests cannot tell a gateway that moves a long conversation to an 8k
model, or a JSON request to a model without structured output, from one that skips such a target. A
route variant whose fallbacks include a target that `degrades` something, or whose catalogue
capabilities fall short of the primary's, gets one more drill: during a primary outage, requests of a
class that does not accept the degradation need exactly what the weaker targets lack (a prompt over
their window, a JSON schema, a tool call, ...), plus a prompt over the primary's own window (a refusal
of its size, not an outage). The weaker targets are listed first, so a gateway must skip them by what
the request needs, not reach a fit target by the luck of order. Pure functions of the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.core.capabilities import Needs, context_needed, degradations, unmet
from harness.core.model import Capabilities, Route

# A primary without a declared context window gets gpt-4o's, so a prompt over it can be drilled
# (only when every declared target window is smaller: the drill never makes the primary the weaker one).
PRIMARY_CONTEXT = 128_000
# The request class of the needs traffic when the route's own classes all accept a degradation.
STRICT_CLASS = "no-degradation"
# Prompt tokens over the largest window a request must not fit, and the answer budget it asks for.
OVER_BY, ANSWER_TOKENS = 1000, 500
# A request with requirements every target meets: capability_fit always has a fallback call to judge.
FITS_ALL_TOKENS = 1000
TOOL = "search"
SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["answer", "confidence"], "additionalProperties": False}
# Aspects in the order the drill sends them (harness.core.model.Degradation names).
ASPECTS: tuple[str, ...] = ("context", "output_budget", "structured_output", "tools", "vision", "determinism")


def caps(provider: dict[str, Any] | None) -> Capabilities:
    return Capabilities.model_validate((provider or {}).get("capabilities") or {}, strict=False)


def gaps(route: Route, providers: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Target -> what it lacks against the primary: its `degrades` and its catalogue's shortfalls, in
    ASPECTS order (targets lacking nothing are left out)."""
    primary = caps(providers.get(route.primary))
    out: dict[str, list[str]] = {}
    for target in route.fallbacks:
        lacks = set(target.degrades) | degradations(primary, caps(providers.get(target.target)))
        if lacks and target.target != route.primary:
            out[target.target] = [a for a in ASPECTS if a in lacks]
    return out


def weak_first(route: Route, lacking: dict[str, list[str]]) -> list[str]:
    """The route's targets, the weaker ones first (each group in the registry's order)."""
    names = [t.target for t in route.fallbacks]
    return [n for n in names if n in lacking] + [n for n in names if n not in lacking]


def primary_window(route: Route, providers: dict[str, dict[str, Any]]) -> int | None:
    """The primary's context window in the drill: declared, else PRIMARY_CONTEXT when some target declares
    a smaller one (and none a larger one), else none."""
    declared = caps(providers.get(route.primary)).context_tokens
    if declared is not None:
        return declared
    windows = [caps(providers.get(t.target)).context_tokens for t in route.fallbacks]
    known = [w for w in windows if w is not None]
    return PRIMARY_CONTEXT if known and max(known) < PRIMARY_CONTEXT else None


def strict_class(route: Route, closed_classes: list[str], base_class: str) -> str:
    """A request class that accepts no degradation of this route and does not fail closed."""
    accepting = {c for t in route.fallbacks for c in t.degradation_accepted_by}
    candidates = list(route.request_classes or [base_class, STRICT_CLASS])
    usable = [c for c in candidates if c not in accepting and c not in closed_classes]
    return usable[0] if usable else candidates[0]


@dataclass(frozen=True)
class Need:
    why: str                    # a comment line for the mix entry
    fields: dict[str, Any]      # the mix entry's requirement keys
    needs: Needs


def _need(why: str, **fields: Any) -> Need:
    fmt = fields.get("response_format")
    needs = Needs(prompt_tokens=fields.get("input_tokens", 32), max_tokens=fields.get("max_tokens"),
                  response_format=fmt["type"] if fmt else None, tools=tuple(fields.get("tools", ())),
                  tool_choice=fields.get("tool_choice"), seed=fields.get("seed"),
                  images="image" in fields.get("modalities", ()))
    return Need(why, fields, needs)


def _servable(need: Need, route: Route, providers: dict[str, dict[str, Any]]) -> bool:
    """Some provider of the route can serve it (else harness validate refuses the entry, rightly)."""
    names = [route.primary, *(t.target for t in route.fallbacks)]
    return any(not unmet(need.needs, caps(providers.get(n))) for n in names)


def needs(route: Route, providers: dict[str, dict[str, Any]], lacking: dict[str, list[str]]) -> list[Need]:
    """The requirements of the drill's needs traffic, one per aspect some weaker target lacks, then the
    control that fits every target, then a prompt over the primary's own window."""
    def weak(aspect: str) -> list[str]:
        return [t for t, lacks in lacking.items() if aspect in lacks]

    windows = [w for t in weak("context") if (w := caps(providers.get(t)).context_tokens) is not None]
    budgets = [b for t in weak("output_budget") if (b := caps(providers.get(t)).max_output_tokens) is not None]
    out: list[Need] = []
    if windows:
        out.append(_need(f"A prompt over the window of {', '.join(weak('context'))}: it must skip the smaller "
                         "windows.", input_tokens=max(windows) + OVER_BY, max_tokens=ANSWER_TOKENS))
    if budgets:
        out.append(_need(f"An answer longer than {', '.join(weak('output_budget'))} may give.",
                         max_tokens=2 * max(budgets)))
    if weak("structured_output"):
        out.append(_need(f"JSON against a schema, which {', '.join(weak('structured_output'))} cannot answer; the "
                         "fallback must get it too.",
                         response_format={"type": "json_schema", "name": "answer", "schema": SCHEMA}))
    if weak("tools"):
        tool = next((t for p in providers.values() for t in p.get("tools", [])), TOOL)
        out.append(_need(f"A forced tool call, which {', '.join(weak('tools'))} cannot make.", tools=[tool],
                         tool_choice="required"))
    if weak("vision"):
        out.append(_need(f"An image, which {', '.join(weak('vision'))} cannot read.", modalities=["text", "image"]))
    if weak("determinism"):
        out.append(_need(f"A seed, which {', '.join(weak('determinism'))} does not honour.", seed=7))
    smallest = min((w for n in providers if (w := caps(providers[n]).context_tokens) is not None), default=None)
    if smallest is None or smallest > FITS_ALL_TOKENS + ANSWER_TOKENS:
        out.append(_need("A requirement every target meets: it must still fall back.",
                         input_tokens=FITS_ALL_TOKENS, max_tokens=ANSWER_TOKENS))
    window = caps(providers.get(route.primary)).context_tokens
    if window is not None:
        over = _need("A prompt over the primary's own window: refused for its size, no outage, never rerouted "
                     "to a smaller model.", input_tokens=window + OVER_BY, max_tokens=ANSWER_TOKENS)
        if context_needed(over.needs) > window:
            out.append(over)
    return [n for n in out if _servable(n, route, providers)]


def fits(need: Need, provider: dict[str, Any] | None) -> bool:
    return not unmet(need.needs, caps(provider))
