"""Portkey gateway config JSON (the `x-portkey-config` routing config) -> the lint model.

What Portkey 1.15.2 does with a config, read from its source (build/start-server.js,
`tryTargetsRecursively`), and what this parser therefore states:

- Routes. Portkey has no route table: the client's `model` is the route (the harness sends the
  scenario's route name there). A top-level `conditional` strategy on `params.model` splits the
  config into one route per model name; every other name takes `default`, which is route "*"
  ("any other model"), as is the whole config when it is not conditional on the model.
- `fallback`: the targets are tried in order; the next one is taken when the response status is
  in `strategy.on_status_codes`, or, when that is absent, on ANY non-2xx status (a 400
  content-policy refusal, a context overflow, an unsupported parameter included). A request
  reaches target i only after its primary (target 0) failed, so every leaf of targets 1.. is an
  edge from the primaries of target 0 (the registry approves route: primary -> target).
- `loadbalance`: one target picked by weight, never another on failure: no edge.
- `conditional`: `conditions[].query` on `params.model` or `metadata.*` picks a named target;
  `metadata.request_class` conditions make the branch's edges class-specific.
- `retry: {attempts: N}` adds N calls to the same target, on `retry.on_status_codes`
  (default 429, 500, 502, 503, 504); no `retry` means one call. A target without its own
  `retry` inherits its parent's, as `override_params` and `custom_host` are inherited.
- The most upstream calls one request can make is stated as `max_attempts_per_request`: the sum
  of the calls each target of the longest chain gets (retries are per target).
- Open-source Portkey has no circuit breaker or cooldown (those need Portkey's hosted `id`):
  the failed primary is tried first on every request, so cooldown is 0.

The harness's own placeholders name the provider a target reaches: `{providers.NAME.url}` in
`custom_host`, `{providers.NAME.key}` in a credential. JSON carries no positions in `json.loads`,
so a small scanner records the line and column of every key and value (YAML loaders refuse
tab-indented JSON, so PyYAML's marks are not used).
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import InputError, InputProblem
from harness.lint.model import (
    ANY_FAILURE,
    Deployment,
    FallbackEdge,
    GatewayConfig,
    KeyForm,
    Route,
    Secret,
    Setting,
    Trigger,
    Where,
)

KIND = "portkey"
ANY_ROUTE = "*"   # the route every model name not named by a top-level condition takes
MODES = ("single", "fallback", "loadbalance", "conditional")
# Portkey's default retry statuses (constant S in 1.15.2), used when retry.on_status_codes is absent.
DEFAULT_RETRY_STATUSES = (429, 500, 502, 503, 504)
# Fields that carry a credential; a literal in any of them is a plaintext key.
CREDENTIALS = ("api_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
               "vertex_service_account_json", "virtual_key")
# Statuses a request the primary cannot serve comes back with (OpenAI: 400 context overflow /
# unsupported parameter; 413 too large; 422 unprocessable).
UNSERVABLE = frozenset({400, 413, 422})

_HARNESS_PROVIDER = re.compile(r"\{providers\.([A-Za-z0-9_.\-]+?)\.(?:url|key|secret|region)\}")
_PLACEHOLDER = re.compile(r"\{[A-Za-z0-9_.\-]+\}")
_ENVIRONMENT = re.compile(r"^(?:\$\{[A-Za-z_]\w*(?::-[^}]*)?\}|\$[A-Za-z_]\w*|os\.environ/\w+|env:\w+)$")

Path_ = tuple[str | int, ...]


# -- positions ------------------------------------------------------------------------------------------------------

class _Scanner:
    """Walks JSON text that json.loads accepted, recording where each value and each key starts."""

    _NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")

    def __init__(self, text: str) -> None:
        self.text = text
        self.values: dict[Path_, int] = {}
        self.keys: dict[Path_, int] = {}

    def _skip(self, i: int) -> int:
        while i < len(self.text) and self.text[i] in " \t\r\n":
            i += 1
        return i

    def value(self, i: int, path: Path_) -> int:
        i = self._skip(i)
        self.values[path] = i
        char = self.text[i]
        if char == "{":
            i = self._skip(i + 1)
            while self.text[i] != "}":
                key, end = json.decoder.scanstring(self.text, i + 1)
                self.keys[(*path, key)] = i
                i = self._skip(end)          # at ':'
                i = self._skip(self.value(i + 1, (*path, key)))
                if self.text[i] == ",":
                    i = self._skip(i + 1)
            return i + 1
        if char == "[":
            i, index = self._skip(i + 1), 0
            while self.text[i] != "]":
                i = self._skip(self.value(i, (*path, index)))
                index += 1
                if self.text[i] == ",":
                    i = self._skip(i + 1)
            return i + 1
        if char == '"':
            return json.decoder.scanstring(self.text, i + 1)[1]
        for word in ("true", "false", "null", "NaN", "Infinity", "-Infinity"):
            if self.text.startswith(word, i):
                return i + len(word)
        match = self._NUMBER.match(self.text, i)
        return match.end() if match else i + 1


@dataclass(frozen=True)
class _Doc:
    path: Path
    data: Any
    values: dict[Path_, int]
    keys: dict[Path_, int]
    line_starts: list[int]

    def where(self, path: Path_, *, key: bool = False) -> Where:
        """The key's place (key=True, when it has one) or the value's; the nearest enclosing one if absent."""
        while path not in self.values and path:
            path = path[:-1]
        offset = self.keys[path] if key and path in self.keys else self.values.get(path, 0)
        line = bisect_right(self.line_starts, offset)
        return Where(self.path, line, offset - self.line_starts[line - 1] + 1)

    def problem(self, path: Path_, message: str, hint: str | None = None) -> InputError:
        where = self.where(path, key=True)
        return InputError([InputProblem(str(self.path), where.line, where.column, _dotted(path), message, hint)])


def _dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _load(path: Path) -> _Doc:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([InputProblem(str(path), None, None, "", f"cannot read the Portkey config: {exc}")]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError([InputProblem(str(path), exc.lineno, exc.colno, "", f"not valid JSON: {exc.msg}",
                                       "a Portkey config is one JSON object (no comments, no trailing commas)")]
                         ) from None
    scanner = _Scanner(text)
    scanner.value(0, ())
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    doc = _Doc(path, data, scanner.values, scanner.keys, starts)
    if not isinstance(data, dict):
        raise doc.problem((), "a Portkey config is a JSON object",
                          '{"strategy": {"mode": "fallback"}, "targets": [...]}')
    return doc


# -- the walk -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Inherited:
    """What a target takes from its parents (Portkey merges these down the tree)."""

    retry: Path_ | None = None        # path of the retry object in force
    custom_host: str | None = None
    model: str | None = None          # override_params.model
    classes: frozenset[str] | None = None  # request classes a metadata.request_class condition lets through


Leaf = tuple[Deployment, frozenset[str] | None]   # a deployment, and the request classes that can reach it


@dataclass
class _Group:
    primaries: list[Deployment]
    leaves: list[Leaf]
    bound: int          # the most upstream calls one request can make in this subtree


class _Parser:
    def __init__(self, doc: _Doc) -> None:
        self.doc = doc
        self.config = GatewayConfig(kind=KIND, path=doc.path)
        self.deployments: dict[Path_, Deployment] = {}
        # Of the route being read: deployment name -> (calls per request, the retry in force), and its
        # fallback strategies as (path, trigger, whether on_status_codes is written).
        self.retries: dict[str, tuple[int, Path_ | None]] = {}
        self.strategies: list[tuple[Path_, Trigger, bool]] = []

    # one node of the tree
    def node(self, path: Path_, index: str, inherited: _Inherited, route: str, emit: bool) -> _Group:
        node = self.doc.data if not path else _get(self.doc.data, path)
        if not isinstance(node, dict):
            raise self.doc.problem(path, "a target is a JSON object")
        inherited = self._inherit(node, path, inherited)
        targets = node.get("targets")
        if targets is None or targets == []:
            deployment = self.leaf(node, path, index, inherited)
            return _Group([deployment], [(deployment, inherited.classes)], self.retries[index][0])
        if not isinstance(targets, list):
            raise self.doc.problem((*path, "targets"), "targets is a list of targets")
        mode = self._mode(node, path)
        children = [(*path, "targets", i) for i in range(len(targets))]
        if mode == "single":
            return self.node(children[0], f"{index}.targets[0]", inherited, route, emit)
        if mode == "conditional":
            return self.conditional(node, path, index, inherited, route, emit)
        groups = [self.node(child, f"{index}.targets[{i}]", inherited, route, emit and (mode != "fallback" or i == 0))
                  for i, child in enumerate(children)]
        leaves = [leaf for group in groups for leaf in group.leaves]
        if mode == "loadbalance":
            return _Group([p for group in groups for p in group.primaries], leaves, max(g.bound for g in groups))
        trigger = self._trigger(node, path)
        self.strategies.append(((*path, "strategy"), trigger, "on_status_codes" in node["strategy"]))
        if emit:
            for group, child in zip(groups[1:], children[1:], strict=True):
                for source in groups[0].primaries:
                    for target, classes in group.leaves:
                        self.config.edges.append(FallbackEdge(
                            route=route, source=source, target=target, via="portkey fallback",
                            where=self.doc.where(child), trigger=trigger, request_classes=classes))
        return _Group(groups[0].primaries, leaves, sum(g.bound for g in groups))

    def conditional(self, node: dict[str, Any], path: Path_, index: str, inherited: _Inherited, route: str,
                    emit: bool) -> _Group:
        primaries: list[Deployment] = []
        leaves: list[Leaf] = []
        bound = 0
        for branch_path, classes, _ in self.branches(node, path):
            position = branch_path[-1]
            assert isinstance(position, int)
            narrowed = _Inherited(inherited.retry, inherited.custom_host, inherited.model,
                                  _narrow(inherited.classes, classes))
            group = self.node(branch_path, f"{index}.targets[{position}]", narrowed, route, emit)
            primaries += [p for p in group.primaries if p not in primaries]
            leaves += [leaf for leaf in group.leaves if leaf not in leaves]
            bound = max(bound, group.bound)
        return _Group(primaries, leaves, bound)

    def branches(self, node: dict[str, Any], path: Path_
                 ) -> list[tuple[Path_, frozenset[str] | None, tuple[frozenset[str] | None, Path_]]]:
        """Each (target path, request classes, (model names, where)) a conditional strategy can pick."""
        strategy = node["strategy"]
        names = {t.get("name"): i for i, t in enumerate(node["targets"]) if isinstance(t, dict) and t.get("name")}
        conditions = strategy.get("conditions", [])
        if not isinstance(conditions, list):
            raise self.doc.problem((*path, "strategy", "conditions"), "conditions is a list of {query, then}")
        picked = []
        for i, condition in enumerate(conditions):
            where = (*path, "strategy", "conditions", i)
            if not isinstance(condition, dict) or not isinstance(condition.get("then"), str):
                raise self.doc.problem(where, "a condition is {\"query\": {...}, \"then\": \"<target name>\"}")
            models = _matches(condition.get("query"), "params.model")
            classes = _matches(condition.get("query"), "metadata.request_class")
            picked.append((self._named(names, condition["then"], (*where, "then"), path), classes, (models, where)))
        default = strategy.get("default")
        if default is not None:
            if not isinstance(default, str):
                raise self.doc.problem((*path, "strategy", "default"), "default names a target")
            picked.append((self._named(names, default, (*path, "strategy", "default"), path), None,
                           (None, (*path, "strategy", "default"))))
        if not picked:
            raise self.doc.problem((*path, "strategy"), "a conditional strategy has no conditions and no default",
                                   'add "conditions": [{"query": {...}, "then": "<target name>"}] or "default"')
        return picked

    def _named(self, names: dict[str, int], name: str, where: Path_, path: Path_) -> Path_:
        if name not in names:
            raise self.doc.problem(where, f"no target is named {name!r}",
                                   f"one of {', '.join(sorted(names)) or '(no target has a name)'}")
        return (*path, "targets", names[name])

    def leaf(self, node: dict[str, Any], path: Path_, index: str, inherited: _Inherited) -> Deployment:
        attempts = 1 + (_get(self.doc.data, inherited.retry)["attempts"] if inherited.retry else 0)
        self.retries[index] = (attempts, inherited.retry)
        if path in self.deployments:   # reached again from another route
            return self.deployments[path]
        provider = _provider(node, inherited) or node.get("name")
        key_field = next((f for f in CREDENTIALS if f in node), None)
        key_ref = node.get(key_field) if key_field else None
        form: KeyForm = "none" if key_field is None else _key_form(key_field, key_ref)
        for field_name in CREDENTIALS:
            if field_name in node and _key_form(field_name, node[field_name]) == "plaintext":
                self.config.secrets.append(Secret(self.doc.where((*path, field_name)), _dotted((*path, field_name))))
        region = next((node[f] for f in ("aws_region", "vertex_region") if isinstance(node.get(f), str)
                       and not _PLACEHOLDER.search(node[f])), None)
        model = inherited.model or node.get("deployment_id")
        deployment = Deployment(name=index, provider=provider if isinstance(provider, str) else None,
                                where=self.doc.where(path), key_ref=key_ref if isinstance(key_ref, str) else None,
                                key_form=form, region=region, model=model if isinstance(model, str) else None)
        self.deployments[path] = deployment
        return deployment

    def _inherit(self, node: dict[str, Any], path: Path_, inherited: _Inherited) -> _Inherited:
        retry = inherited.retry
        if "retry" in node:
            value = node["retry"]
            attempts = value.get("attempts") if isinstance(value, dict) else None
            if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
                raise self.doc.problem((*path, "retry"), "retry needs attempts, a whole number >= 0",
                                       '"retry": {"attempts": 2, "on_status_codes": [429, 503]}')
            retry = (*path, "retry")
        host = node.get("custom_host") if isinstance(node.get("custom_host"), str) else inherited.custom_host
        params = node.get("override_params")
        model = params.get("model") if isinstance(params, dict) and isinstance(params.get("model"), str) else None
        return _Inherited(retry, host, model or inherited.model, inherited.classes)

    def _mode(self, node: dict[str, Any], path: Path_) -> str:
        strategy = node.get("strategy")
        mode = strategy.get("mode") if isinstance(strategy, dict) else None
        if mode not in MODES:
            raise self.doc.problem((*path, "strategy"), f"strategy.mode must be one of {', '.join(MODES)}",
                                   'a node with targets needs "strategy": {"mode": "fallback"} (or single, '
                                   "loadbalance, conditional)")
        return str(mode)

    def _trigger(self, node: dict[str, Any], path: Path_) -> Trigger:
        codes = node["strategy"].get("on_status_codes")
        if codes is None:
            return ANY_FAILURE
        if not isinstance(codes, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in codes):
            raise self.doc.problem((*path, "strategy", "on_status_codes"), "on_status_codes is a list of HTTP statuses",
                                   '"on_status_codes": [429, 500, 502, 503, 504]')
        return frozenset(codes)

    # one route
    def route(self, name: str, choices: list[tuple[Path_, frozenset[str] | None]], where: Where,
              inherited: _Inherited) -> None:
        """One route: the branches its name can take (one per request class a condition names, or one)."""
        self.strategies, self.retries = [], {}
        primaries: list[Deployment] = []
        bound = 0
        for path, classes in choices:
            start = _Inherited(inherited.retry, inherited.custom_host, inherited.model, classes)
            group = self.node(path, _index(path), start, name, emit=True)
            primaries += [p for p in group.primaries if p not in primaries]
            bound = max(bound, group.bound)
        reach = [classes for _, classes in choices]
        classes = None if None in reach else frozenset().union(*reach)
        self.config.routes[name] = Route(name, tuple(primaries), where, classes)
        self.settings(name, where, bound)

    def settings(self, route: str, where: Where, bound: int) -> None:
        attempts, retry = max(self.retries.values(), key=lambda item: item[0])
        add = self.config.settings.append
        add(Setting("attempts_per_deployment", attempts, self.doc.where(retry, key=True) if retry else where, route,
                    default=retry is None))
        # Portkey retries only the statuses retry.on_status_codes lists (its default set when absent): an
        # Anthropic 529 is not among them, so it goes straight to the next target.
        codes = _get(self.doc.data, retry).get("on_status_codes") if retry else None
        retry_on = frozenset(c for c in codes if isinstance(c, int)) if isinstance(codes, list) else \
            frozenset(DEFAULT_RETRY_STATUSES)
        add(Setting("retry_on", retry_on, self.doc.where(retry, key=True) if retry else where, route,
                    default=not isinstance(codes, list)))
        # Retries are per target, so the chain's real bound is the sum along it (a retrying primary and a
        # fallback without retry: 3 + 1, not 3 x 2). Portkey enforces nothing else per request.
        add(Setting("max_attempts_per_request", bound, where, route, default=True))
        # No circuit breaker in open-source Portkey: the primary is called first on every request.
        add(Setting("cooldown_s", 0.0, where, route, default=True))
        if not self.strategies:
            return
        for name, reroutes in (("fallback_on_content_policy", lambda t: "any" in t or 400 in t),
                               ("fallback_on_unservable", lambda t: "any" in t or bool(UNSERVABLE & t))):
            offending = [(p, stated) for p, trigger, stated in self.strategies if reroutes(trigger)]
            chosen, stated = offending[0] if offending else (self.strategies[0][0], True)
            add(Setting(name, bool(offending), self.doc.where(chosen, key=True), route, default=not stated))


def _narrow(outer: frozenset[str] | None, inner: frozenset[str] | None) -> frozenset[str] | None:
    return inner if outer is None else outer if inner is None else outer & inner


def _get(data: Any, path: Path_) -> Any:
    for part in path:
        data = data[part]
    return data


def _index(path: Path_) -> str:
    """Portkey's option index of a node ("config.targets[1].targets[0]"), as its served header names it."""
    return "config" + "".join(f".targets[{p}]" for p in path if isinstance(p, int))


def _matches(query: Any, field: str) -> frozenset[str] | None:
    """The values a condition's query requires of `field` ($eq / $in, possibly under $and), else None."""
    if not isinstance(query, dict):
        return None
    if isinstance(query.get("$and"), list):
        for part in query["$and"]:
            found = _matches(part, field)
            if found is not None:
                return found
        return None
    test = query.get(field)
    if isinstance(test, str):
        return frozenset({test})
    if isinstance(test, dict):
        if isinstance(test.get("$eq"), str):
            return frozenset({test["$eq"]})
        if isinstance(test.get("$in"), list) and all(isinstance(v, str) for v in test["$in"]):
            return frozenset(test["$in"])
    return None


def _provider(node: dict[str, Any], inherited: _Inherited) -> str | None:
    for value in (inherited.custom_host, *(node.get(f) for f in CREDENTIALS)):
        found = _HARNESS_PROVIDER.search(value) if isinstance(value, str) else None
        if found:
            return found.group(1)
    return None


def _key_form(field_name: str, value: Any) -> KeyForm:
    if field_name == "virtual_key" and isinstance(value, str):
        return "environment"   # a reference into Portkey's key vault, never the key itself
    if isinstance(value, str) and _PLACEHOLDER.search(value) and _HARNESS_PROVIDER.search(value):
        return "placeholder"
    if isinstance(value, str) and _ENVIRONMENT.match(value.strip()):
        return "environment"
    if value in (None, ""):
        return "none"
    return "plaintext"


# -- entry point ----------------------------------------------------------------------------------------------------

def parse(path: Path) -> GatewayConfig:
    """Read a Portkey config; InputError (file:line:column, exit 2) when it is not a valid one."""
    doc = _load(path)
    parser = _Parser(doc)
    data = doc.data
    strategy = data.get("strategy") if isinstance(data.get("strategy"), dict) else {}
    if strategy.get("mode") == "conditional" and isinstance(data.get("targets"), list):
        # The top-level conditional on the model name is the route table.
        parser._mode(data, ())
        routes: dict[str, list[tuple[Path_, frozenset[str] | None]]] = {}
        where: dict[str, Where] = {}
        for target, classes, (models, where_path) in parser.branches(data, ()):
            for name in sorted(models) if models is not None else [ANY_ROUTE]:
                taken = [c for _, c in routes.get(name, [])]
                # Portkey takes the first matching condition: a later one for the same name is reached
                # only by the request classes no earlier one took.
                if None in taken or classes in taken:
                    continue
                routes.setdefault(name, []).append((target, classes))
                where.setdefault(name, doc.where(where_path, key=True))
        # The root's retry, override_params and custom_host reach every branch.
        inherited = parser._inherit(data, (), _Inherited())
        for name, choices in routes.items():
            parser.route(name, choices, where[name], inherited)
        return parser.config
    parser.route(ANY_ROUTE, [((), None)], doc.where(("strategy",) if "strategy" in data else (), key=True),
                 _Inherited())
    return parser.config
