"""Errors inside a union chosen by `kind` (gateway kinds, effect kinds), in the user's words.

pydantic names the member it tried by its tag in an error's location (('gateway', 'command',
'command'): the first `command` is the kind), and reports a key of another kind as merely
"extra". These helpers find the member a key sits in and say what the kind needs or refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from harness.scenario.semantics import tagged_union_at, tags_of
from harness.scenario.yaml_nodes import Finding, KeyPath

# An example for every key a kind requires, by (tag, key).
EXAMPLES = {
    ("command", "command"): "e.g. command: [my-gateway, --port, '{port}']",
    ("url", "url"): "e.g. url: http://127.0.0.1:4000",
    ("litellm", "config"): "e.g. config: fixtures/gateways/litellm/governed.yaml",
    ("portkey", "config"): "e.g. config: fixtures/gateways/portkey/fallback.json",
    ("error", "status"): "e.g. effect: {kind: error, status: 503}",
    ("latency", "ms"): "e.g. effect: {kind: latency, ms: 800}",
}


@dataclass(frozen=True)
class UnionMember:
    """The member of a tagged union a key sits in."""

    union: str                              # the union's key: gateway, effect
    tag: str                                # its kind
    model: type[BaseModel]
    by_tag: dict[str, type[BaseModel]]      # every member, by each of its tags


def is_tag(path: KeyPath, part: Any, node: dict[str, Any], data: Any) -> bool:
    """Whether `part` of an error's location is the tag of the union member at `path`, not a key."""
    if not isinstance(part, str) or part not in node.values():
        return False
    union = tagged_union_at(path, data)
    return union is not None and node.get(union[0]) == part


def union_member(path: KeyPath, data: Any) -> UnionMember | None:
    """The union member holding the key at `path`, when its tag is one the union knows."""
    if len(path) < 2:
        return None
    parent = path[:-1]
    union = tagged_union_at(parent, data)
    node = _node_at(parent, data)
    if union is None or not isinstance(node, dict):
        return None
    discriminator, members = union
    by_tag = {tag: m for m in members for tag in tags_of(m, discriminator)}
    tag = node.get(discriminator)
    if not isinstance(tag, str) or tag not in by_tag or path[-1] == discriminator:
        return None
    name = next((p for p in reversed(parent) if isinstance(p, str)), "value")
    return UnionMember(name, tag, by_tag[tag], by_tag)


def needs(path: KeyPath, member: UnionMember, at: Literal["value", "parent"]) -> Finding:
    """A key the kind requires is missing (at the parent) or empty (at the value)."""
    name = str(path[-1])
    info = member.model.model_fields.get(name)
    what = (info.description or "").rstrip(".") if info is not None else ""
    message = f"{_a(member.tag)} {member.tag} {member.union} needs `{name}`" + (
        f": {what[:1].lower()}{what[1:]}" if what else "")
    return Finding(path, message, EXAMPLES.get((member.tag, name), f"add {name}"), at=at)


def foreign_key(path: KeyPath, member: UnionMember) -> Finding | None:
    """A key of other kinds (`defects` on a command gateway): name the kinds that take it."""
    name = str(path[-1])
    owners = list(dict.fromkeys(tag for tag, model in member.by_tag.items() if name in model.model_fields))
    if not owners:
        return None
    kinds = " or ".join(owners)
    return Finding(path, f"'{name}' is a key of {_a(owners[0])} {kinds} {member.union}, not of "
                         f"{_a(member.tag)} {member.tag} {member.union}",
                   f"remove `{name}`, or use kind: {kinds}", at="key")


def _node_at(path: KeyPath, data: Any) -> Any:
    node = data
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return None
    return node


def _a(word: str) -> str:
    return "an" if word[:1] in ("a", "e", "i", "o") else "a"
