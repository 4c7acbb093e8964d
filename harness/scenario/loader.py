"""Load a scenario file: YAML -> env references -> typed model -> semantic checks.

Every problem becomes an InputProblem with file:line:column and a key path; the loader
never lets another exception out, because a traceback is useless to someone editing YAML.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import SecretStr, ValidationError

from harness.core.errors import InputError, InputProblem
from harness.core.model import GATEWAY_MODELS, Scenario
from harness.core.registry import check_names
from harness.scenario import bounds, policy_file, semantics
from harness.scenario.envref import resolve_tree
from harness.scenario.semantics import expected_type_at, is_model
from harness.scenario.unions import foreign_key, is_tag, needs, union_member
from harness.scenario.yaml_nodes import (
    Finding,
    KeyPath,
    NodePos,
    SourceError,
    locate,
    parse,
    read_source,
    render_path,
)

REDACTED = "<redacted>"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:fallback-harness:scenario:v1"
SCHEMA_TITLE = "Fallback harness scenario (version 1)"


@dataclass(frozen=True)
class LoadedScenario:
    scenario: Scenario
    path: str
    sha256: str  # hex digest of the file's bytes, so a ledger can prove which file it ran
    source: str


def load_scenario(path: str | Path, env: Mapping[str, str] | None = None) -> LoadedScenario:
    """Read, resolve and validate a scenario file; raises InputError for any bad input."""
    shown = str(path)
    try:
        raw, text = read_source(Path(path))
        parsed = parse(text)
    except SourceError as exc:
        line, column = (exc.mark.line, exc.mark.column) if exc.mark else (None, None)
        raise InputError([InputProblem(shown, line, column, "", exc.message, exc.hint)]) from None
    if not isinstance(parsed.data, dict):
        mark = parsed.positions[()].value
        raise InputError(
            [
                InputProblem(
                    shown,
                    mark.line,
                    mark.column,
                    "",
                    f"the top level must be a mapping of keys, got {_kind(parsed.data)}",
                    "a scenario starts with `version: 1`, `name: ...`, then identities, providers, gateway, "
                    "policy, traffic",
                )
            ]
        )
    data, env_findings, expanded = resolve_tree(parsed.data, os.environ if env is None else env)
    if policy_file.references_registry(data):  # `policy: {file: ...}`: merged with the registry first
        data, merge_findings = policy_file.merged(data, shown, parsed.positions)
        if merge_findings:
            raise InputError(_problems(merge_findings, shown, parsed.positions))
    scenario = _validate(data, shown, parsed.positions, parsed.findings, env_findings, expanded)
    scenario._env_refs.update(expanded)
    return LoadedScenario(scenario, shown, hashlib.sha256(raw).hexdigest(), text)


def scenario_from_dict(data: dict[str, Any], origin: str) -> Scenario:
    """Validate already-parsed data (e.g. the scenario embedded in a ledger); no env resolution."""
    if not isinstance(data, dict):
        raise InputError([InputProblem(origin, None, None, "", f"expected a scenario mapping, got {_kind(data)}")])
    return _validate(_read_flat_gateway(data), origin, {}, [], [])


# The one flat gateway model that preceded the models per kind dumped every key of every kind into a
# ledger's `run_start.scenario`: the keys not every kind takes, at their old defaults, and the keys any
# such dump holds (by which it is told apart; a scenario file is never read this way).
_FLAT_DEFAULTS: dict[str, object] = {"config": None, "defects": [], "cooldown_s": 2, "upstream_timeout_s": 2,
                                     "command": None, "url": None, "env": {}}
_FLAT_DUMP_KEYS = frozenset({"defects", "cooldown_s", "upstream_timeout_s", "command", "url", "env", "ready_url",
                             "ready_timeout_s", "client_key", "served_target", "audit", "kill_switch"})


def _read_flat_gateway(data: dict[str, Any]) -> dict[str, Any]:
    """Saved ledgers stay readable: in an old flat gateway dump, a key the kind does not take is dropped when it
    holds its old default; with any other value it stays, and is refused as a key of another kind."""
    gateway = data.get("gateway")
    if not isinstance(gateway, dict) or not _FLAT_DUMP_KEYS <= gateway.keys():
        return data
    own = GATEWAY_MODELS.get(gateway.get("kind"))  # type: ignore[arg-type]
    if own is None:
        return data  # an unknown kind: validation says so
    kept = {key: value for key, value in gateway.items()
            if key in own.model_fields or key not in _FLAT_DEFAULTS
            # 2.0 is the old default 2; True is not 1
            or type(value) is bool or value != _FLAT_DEFAULTS[key]}
    return {**data, "gateway": kept}


def redacted_dump(scenario: Scenario) -> dict[str, Any]:
    """The scenario as JSON data with every secret replaced, fit to embed in a ledger.

    Identity keys, the client key, the gateway's environment values and the kill switch's
    headers may all hold credentials; no check needs them, so none of them is kept. Any other
    value that came from the environment (a command's argument, an upstream URL) is shown as
    written, `${VAR}`, never expanded.
    """
    data = scenario.model_dump(mode="json")
    for path, (written, value) in scenario._env_refs.items():
        _put_back(data, path, written, value)
    # A key typed as it is where a credential may go (a command's argument, a URL) is still a key; names,
    # routes and the policy are left alone (the checks read them back).
    keys = {secret.get_secret_value() for identity in scenario.identities.values()
            for secret in (identity.key, identity.secret) if secret is not None}
    keys |= {scenario.gateway.client_key} if scenario.gateway.client_key else set()
    known = sorted((k for k in keys if len(k) >= 4), key=len, reverse=True)
    data["gateway"] = _without(data["gateway"], known)
    data["containers"] = _without(data["containers"], known)
    for provider in data["providers"].values():
        provider["upstream"] = _without(provider["upstream"], known)
    for identity in data["identities"].values():
        identity["key"] = REDACTED
    gateway = data["gateway"]
    if gateway.get("client_key") is not None:
        gateway["client_key"] = REDACTED
    for field in ("env", "request_headers"):  # env: command gateways only
        if field in gateway:
            gateway[field] = {name: REDACTED for name in gateway[field] or {}}
    if gateway.get("kill_switch"):
        for field in ("headers", "request_headers"):
            gateway["kill_switch"][field] = {name: REDACTED for name in gateway["kill_switch"][field]}
    return data


def _without(data: Any, keys: list[str]) -> Any:
    """`data` with every occurrence of a key in its strings replaced by REDACTED (longest keys first)."""
    if isinstance(data, str):
        for key in keys:
            data = data.replace(key, REDACTED)
        return data
    if isinstance(data, dict):
        return {name: _without(value, keys) for name, value in data.items()}
    if isinstance(data, list):
        return [_without(value, keys) for value in data]
    return data


def _put_back(data: Any, path: KeyPath, written: str, value: str) -> None:
    """The value at `path` becomes its text as written, if it still is the value expanded from it (a copy of
    the scenario may have replaced it)."""
    node = data
    for part in path[:-1]:
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int) \
                and 0 <= part < len(node):
            node = node[part]  # type: ignore[index]
        else:
            return
    last = path[-1]
    if isinstance(node, dict) and node.get(last) == value or isinstance(node, list) and isinstance(last, int) \
            and 0 <= last < len(node) and node[last] == value:
        node[last] = written  # type: ignore[index]


def json_schema() -> dict[str, Any]:
    """JSON Schema of the scenario format, generated from the same model the loader uses."""
    schema = Scenario.model_json_schema()
    # `policy: {file: ...}` references a registry (docs/policy-registry.md); what it may narrow is checked on load.
    reference = {"type": "object", "required": ["file"], "properties": {"file": {
        "type": "string", "description": "The approved-fallback registry, relative to the scenario file."}}}
    schema["properties"]["policy"] = {"anyOf": [schema["properties"]["policy"], reference]}
    head = {"$schema": SCHEMA_DIALECT, "$id": SCHEMA_ID, "title": SCHEMA_TITLE}
    return head | {key: value for key, value in schema.items() if key not in head}


def _validate(
    data: dict[str, Any],
    file: str,
    positions: dict[KeyPath, NodePos],
    parse_findings: list[Finding],
    env_findings: list[Finding],
    expanded: dict[KeyPath, tuple[str, str]] | None = None,
) -> Scenario:
    findings = parse_findings + env_findings
    scenario: Scenario | None = None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        # A value whose env reference failed is still the raw `${...}` text; its type
        # errors would only repeat the same problem.
        unresolved = [f.path for f in env_findings]
        findings += [f for f in _translate(exc, data) if not any(f.path[: len(p)] == p for p in unresolved)]
    except RecursionError:
        findings.append(Finding((), "the scenario is nested too deeply to validate"))
    if scenario is not None:
        findings += semantics.check(scenario) + bounds.check(scenario)
    if findings:
        raise InputError(_problems([_unexpanded(f, expanded or {}) for f in findings], file, positions))
    assert scenario is not None
    return scenario


def _unexpanded(finding: Finding, expanded: dict[KeyPath, tuple[str, str]]) -> Finding:
    """`finding` with every value that came from the environment shown as `<from ${VAR}>`: an error message
    is printed, logged and pasted into tickets, so it must not carry a key."""
    message, hint = finding.message, finding.hint or ""
    for path, (written, value) in expanded.items():
        # A short value ("1", "eu") would garble unrelated words: replaced only in its own field's finding.
        if value and (len(value) >= 4 or path == finding.path):
            message, hint = message.replace(value, f"<from {written}>"), hint.replace(value, f"<from {written}>")
    if (message, hint) == (finding.message, finding.hint or ""):
        return finding
    return dataclasses.replace(finding, message=message, hint=hint or None)


def _problems(findings: list[Finding], file: str, positions: dict[KeyPath, NodePos]) -> list[InputProblem]:
    problems: list[InputProblem] = []
    for finding in findings:
        mark = locate(finding, positions)
        problem = InputProblem(
            file,
            mark.line if mark else None,
            mark.column if mark else None,
            render_path(finding.path),
            finding.message,
            finding.hint,
        )
        if problem not in problems:
            problems.append(problem)
    problems.sort(key=lambda p: (p.line is None, p.line or 0, p.column or 0))
    return problems


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    return f"a single value ({value!r})"


# --- pydantic errors -> findings a platform engineer can act on ---------------------------

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_LIMITS = {
    "greater_than": ("gt", "must be greater than"),
    "greater_than_equal": ("ge", "must be at least"),
    "less_than": ("lt", "must be less than"),
    "less_than_equal": ("le", "must be at most"),
}
_EXAMPLES = {
    "version": "version: 1",
    "name": "letters, digits, '.', '_' and '-', starting with a letter or digit, e.g. name: eu-primary-outage",
    "identities": 'e.g. identities: {svc-eu: {key: "${HARNESS_KEY_SVC_EU}"}}',
    "providers": "e.g. providers: {gpt-eu: {model: gpt-4o, region: eu, identity: svc-eu, data_classes: [internal]}}",
    "gateway": "e.g. gateway: {kind: reference}",
    "policy": "e.g. policy: {routes: {chat: {primary: gpt-eu, fallbacks: [...]}}}",
    "routes": "e.g. routes: {chat: {primary: gpt-eu, fallbacks: [...]}}",
    "traffic": "e.g. traffic: {rate_per_s: 20, duration_s: 40, mix: [...]}",
    "mix": "e.g. mix: [{route: chat, tenant: acme, region: eu, request_class: chat, data_class: internal}]",
    "rate_per_s": "requests per second, e.g. rate_per_s: 20",
    "duration_s": "seconds, e.g. duration_s: 40",
    "data_classes": "e.g. data_classes: [public, internal]",
}
_EMPTY = {
    "mix": "traffic mix is empty: the run would send no requests",
    "identities": "no identities are defined",
    "providers": "no providers are defined",
    "routes": "no routes are defined",
}
_SECRET_KEYS = {"key", "client_key"}
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


def _example(name: str) -> str | None:
    if name == "checks":  # the registered names, whatever modules registered them
        return "checks: all, or a list of check names: " + ", ".join(check_names())
    return _EXAMPLES.get(name)


def _translate(exc: ValidationError, data: Any) -> list[Finding]:
    records = [(*_clean(err["loc"], data, err["type"]), err) for err in exc.errors(include_url=False)]
    # A union reports every branch; when one branch got further into the value (checks: a
    # list with one bad name) its error is the useful one, so drop the shallower ones.
    kept = [
        r for r in records if not (r[1] and any(len(o[0]) > len(r[0]) and o[0][: len(r[0])] == r[0] for o in records))
    ]
    groups: dict[tuple[KeyPath, bool], list[dict[str, Any]]] = {}
    for path, _, on_key, err in kept:
        groups.setdefault((path, on_key), []).append(err)
    findings = [_finding(path, on_key, errs, data) for (path, on_key), errs in groups.items()]
    # `regoin: eu` yields both "unknown key 'regoin'" (did you mean 'region'?) and "missing
    # 'region'"; the second adds nothing once the first names it.
    typos = {
        (f.path[:-1], str(f.path[-1]))
        for f in findings
        if f.message.startswith("unknown key") and f.hint and f.hint.startswith("did you mean")
    }
    return [
        f
        for f in findings
        if not (
            f.message.startswith("missing required key")
            and any(parent == f.path[:-1] and semantics.suggest(typo, [str(f.path[-1])]) for parent, typo in typos)
        )
    ]


def _clean(loc: tuple[Any, ...], data: Any, kind: str) -> tuple[KeyPath, bool, bool]:
    """pydantic's loc -> the key path in the data, whether a union branch label was dropped,
    and whether the error is about a mapping key rather than its value."""
    path: list[str | int] = []
    node, from_union, on_key = data, False, False
    tagged: KeyPath | None = None
    for index, part in enumerate(loc):
        if part == "[key]":
            on_key = True
        elif isinstance(node, dict) and tagged != tuple(path) and is_tag(tuple(path), part, node, data):
            # The union member pydantic tried, named by its tag: the first `command` in ('gateway',
            # 'command', 'command') is the kind, the second the key of a command gateway.
            from_union, tagged = True, tuple(path)
        elif isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif kind == "missing" and index == len(loc) - 1:
            path.append(part)
        else:
            from_union = True  # a branch label such as 'constrained-int' or "literal['all']"
    return tuple(path), from_union, on_key


def _finding(path: KeyPath, on_key: bool, errs: list[dict[str, Any]], data: Any) -> Finding:
    specific = [e for e in errs if e["type"] not in _TYPE_NAMES and e["type"] != "literal_error"]
    if len(errs) > 1 and specific:
        errs = specific[:1]
    if len(errs) == 1:
        return _single(path, on_key, errs[0], data)
    expected = " or ".join(_expectation(e) for e in errs)
    literals = [v for e in errs if e["type"] == "literal_error" for v in _values(e["ctx"]["expected"])]
    hint = _example(str(path[-1])) if path else None
    if literals and (hint is None or semantics.suggest(errs[0]["input"], literals)):
        hint = _choices_hint(errs[0]["input"], literals)
    return Finding(path, f"expected {expected}, got {_describe(errs[0]['input'], path)}", hint)


def _single(path: KeyPath, on_key: bool, err: dict[str, Any], data: Any) -> Finding:
    kind, ctx, value = err["type"], err.get("ctx", {}), err["input"]
    name = path[-1] if path else ""
    if on_key:
        hint = _choices_hint(value, _values(ctx.get("expected", "")))
        return Finding(path, f"'{value}' is not an allowed key here", hint, at="key")
    member = union_member(path, data)  # a key of one gateway kind or effect kind: say so in its words
    if member is not None and kind in ("missing", "too_short", "string_too_short"):
        return needs(path, member, at="parent" if kind == "missing" else "value")
    if member is not None and kind == "extra_forbidden":
        foreign = foreign_key(path, member)
        if foreign is not None:
            return foreign
    if kind == "missing":
        _, info = expected_type_at(path, data)
        hint = _example(str(name))
        if hint is None and info is not None:
            hint = f"add {name}: <{_words(info.annotation)}>" + (f" ({info.description})" if info.description else "")
        return Finding(path, f"missing required key '{name}'", hint, at="parent")
    if kind == "extra_forbidden":
        model, _ = expected_type_at(path[:-1], data)
        allowed = list(model.model_fields) if is_model(model) else []
        return Finding(path, f"unknown key '{name}'", _choices_hint(str(name), allowed, "allowed keys"), at="key")
    if kind == "union_tag_invalid":
        where = path + ("kind",) if isinstance(value, dict) and "kind" in value else path
        return Finding(
            where, f"unknown {name} kind '{ctx['tag']}'", _choices_hint(ctx["tag"], _values(ctx["expected_tags"]))
        )
    if kind == "union_tag_not_found":
        tag = ctx["discriminator"].strip("'")
        hint = _tags_hint(path, data, tag)
        return Finding(path + (tag,), f"missing required key '{tag}' in {name}", hint, at="parent")
    if kind == "literal_error":
        return _literal(path, value, _values(ctx["expected"]))
    if kind == "unknown_check":
        return Finding(path, f"unknown check {value!r}", _choices_hint(value, list(ctx["expected"])))
    if kind in _TYPE_NAMES:
        hint = _type_hint(kind, value, path, data)
        return Finding(path, f"expected {_TYPE_NAMES[kind]}, got {_describe(value, path)}", hint)
    if kind == "less_than_equal" and (bounds.unit(path) or str(name) in ("max_upstream_attempts", "after_chunks")):
        return bounds.above_limit(path, value, ctx["le"])
    if kind == "string_too_long" and name == "name":
        return bounds.name_too_long(path, value, ctx["max_length"])
    if kind in _LIMITS:
        key, text = _LIMITS[kind]
        return Finding(path, f"{text} {ctx[key]:g}, got {value!r}", _example(str(name)))
    if kind == "too_short":
        message = _EMPTY.get(str(name)) or f"must have at least {ctx['min_length']} item(s)"
        return Finding(path, message, _example(str(name)))
    if kind == "string_pattern_mismatch":
        hint = _example(str(name)) or f"must match the pattern {ctx['pattern']}"
        return Finding(path, f"{value!r} is not a valid {name}", hint)
    message = str(err["msg"]).replace("Input should be", "expected")
    return Finding(path, f"{message[:1].lower()}{message[1:]}, got {_describe(value, path)}")


def _literal(path: KeyPath, value: Any, allowed: list[str]) -> Finding:
    if path == ("version",):
        return Finding(
            path,
            f"unsupported scenario version {value!r}; this harness reads version 1",
            "set version: 1",
        )
    if len(allowed) <= 4:
        message = f"expected {_or(allowed)}, got {_describe(value, path)}"
    else:
        shown = repr(value) if isinstance(value, str) else _describe(value, path)
        message = f"unknown value {shown} (not one of the {len(allowed)} allowed values)"
    return Finding(path, message, _choices_hint(value, allowed))


def _expectation(err: dict[str, Any]) -> str:
    if err["type"] == "literal_error":
        return _or(_values(err["ctx"]["expected"]))
    return _TYPE_NAMES.get(err["type"], "another value")


def _type_hint(kind: str, value: Any, path: KeyPath, data: Any) -> str | None:
    if value is None:
        info = expected_type_at(path, data)[1]
        if info is not None and not info.is_required():
            return "the value is empty: give one, or remove the key to use the default"
        return _example(str(path[-1]) if path else "") or "the value is empty: give one"
    if kind == "string_type":
        secret = bool(path) and path[-1] in _SECRET_KEYS
        return "quote the value to make it a string" + ("" if secret else f', e.g. "{value}"')
    if kind in ("int_type", "float_type", "int_from_float") and isinstance(value, str):
        return _example(str(path[-1])) or "write a plain number, without quotes or units"
    if kind == "bool_type":
        return "write true or false without quotes"
    if kind in ("model_type", "model_attributes_type"):
        model, _ = expected_type_at(path, data)
        if is_model(model):
            return _example(str(path[-1]) if path else "") or "keys: " + ", ".join(model.model_fields)
    return _example(str(path[-1])) if path else None


def _tags_hint(path: KeyPath, data: Any, tag: str) -> str | None:
    info = expected_type_at(path, data)[1]
    if info is None:
        return None
    fields = [m.model_fields[tag] for m in get_args(info.annotation) if is_model(m) and tag in m.model_fields]
    return f"add {tag}: {_or([str(v) for f in fields for v in get_args(f.annotation)])}"


def _choices_hint(value: Any, allowed: list[str], label: str = "allowed") -> str | None:
    if not allowed:
        return None
    guess = semantics.suggest(value, allowed) if isinstance(value, str) else None
    return (f"{guess} " if guess else "") + f"{label}: " + ", ".join(allowed)


def _values(expected: str) -> list[str]:
    """pydantic's "'a', 'b' or 'c'" -> ['a', 'b', 'c'] (unquoted numbers kept as text)."""
    quoted = _QUOTED.findall(expected)
    return quoted or [v for v in re.split(r",\s*|\s+or\s+", expected) if v]


def _or(values: list[str]) -> str:
    shown = [f"'{v}'" for v in values]
    return shown[0] if len(shown) == 1 else "one of " + ", ".join(shown)


def _words(tp: Any) -> str:
    """A type annotation in a platform engineer's words."""
    tp = semantics.unwrap(tp, None)
    origin = get_origin(tp)
    if origin is Literal:
        return _or([str(v) for v in get_args(tp)])
    if origin is list:
        return "a list"
    if origin is dict or is_model(tp):
        return "a mapping"
    names = {str: "a string", int: "a whole number", float: "a number", bool: "true or false", SecretStr: "a string"}
    return names.get(tp, "a value")


def _describe(value: Any, path: KeyPath = ()) -> str:
    secret = bool(path) and path[-1] in _SECRET_KEYS
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return "an integer" if secret else f"integer {value}"
    if isinstance(value, float):
        return "a number" if secret else f"number {value:g}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return "a string" if secret else f"string {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
