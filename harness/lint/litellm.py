"""LiteLLM proxy YAML (config.yaml) -> GatewayConfig, with the line of every element.

What LiteLLM 1.110.2 does when the file is silent is stated too (Setting(default=True) at the route's line),
from its source (router.py, router_utils/cooldown_handlers.py) and from what the harness measured with it
(docs/gateways.md, the comments of fixtures/gateways/litellm/**):

- every deployment reached through the OpenAI SDK (openai/, azure/, text-completion-openai/) gets the SDK's
  own retries, `max_retries` 2 unless litellm_params says otherwise, inside each router attempt;
- the router retries a failing deployment `num_retries` times (2 unless router_settings or litellm_settings
  say otherwise, or a `retry_policy` allows more for some error);
- `fallback_on_unsupported_params` is true: a 400 (a refusal, a parameter or image the primary cannot
  take) goes down the generic `fallbacks` chain;
- Azure's 400 content_filter becomes a ContentPolicyViolationError, which takes the generic chain whatever
  fallback_on_unsupported_params says, unless `content_policy_fallbacks` names the group (an empty chain
  there means: no fallback);
- a context-window overflow takes the generic chain unless `context_window_fallbacks` names the group;
- a lone deployment (its group has no other) is never cooled down unless allowed_fails is set; once it
  is, the cooldown lasts the deployment's own `cooldown_time` if it has one, else whatever the upstream's
  Retry-After says (router-level `cooldown_time` only applies when no Retry-After comes): unbounded.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from harness.core.errors import InputError, InputProblem
from harness.lint.model import (
    RETRYABLE,
    Deployment,
    FallbackEdge,
    GatewayConfig,
    KeyForm,
    Route,
    Secret,
    Setting,
    Where,
)
from harness.scenario import yaml_nodes
from harness.scenario.yaml_nodes import KeyPath, NodePos, SourceError, read_source, render_path

# A harness placeholder the harness fills at run time: {providers.NAME.url}, {litellm.master_key}.
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\.([^{}]+)\}")
_PROVIDER_PLACEHOLDER = re.compile(r"\{providers\.([A-Za-z0-9_@-]+)\.[a-z_]+\}")
# An environment reference: LiteLLM's os.environ/NAME, or ${NAME} / $NAME as a deploy tool expands it.
_ENVIRONMENT = re.compile(r"^(os\.environ/[A-Za-z_]\w*|\$\{[A-Za-z_]\w*(:-[^}]*)?\}|\$[A-Za-z_]\w*)$")
# Credential fields of litellm_params (a literal value in any of them is a plaintext key).
_CREDENTIALS = ("api_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "azure_ad_token",
                "client_secret", "vertex_credentials")
_REGION_FIELDS = ("aws_region_name", "vertex_location", "region_name")
# Providers LiteLLM calls through the OpenAI SDK, which retries on its own (max_retries).
_OPENAI_SDK = ("openai/", "azure/", "text-completion-openai/", "azure_text/")
SDK_MAX_RETRIES = 2           # openai.DEFAULT_MAX_RETRIES
ROUTER_NUM_RETRIES = 2        # Router(num_retries=None) -> openai.DEFAULT_MAX_RETRIES
# What sends a request down a group's generic `fallbacks` chain whatever the flags say (any failure LiteLLM
# raises: auth, not found, timeouts, rate limits, 5xx, Anthropic's 529 overloaded).
_ANY_OUTAGE: frozenset[int | str] = frozenset({401, 403, 404, 408, 429, 500, 502, 503, 504, "overloaded", "timeout",
                                               "connection_error"})
_CHAINS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")


# model group -> its deployments, each with where its model_name is and its model_list index
_Groups = dict[str, list[tuple[Deployment, Where, int]]]


class _Doc:
    """The parsed file with its positions: where a key path sits, and errors that name it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            _, text = read_source(path)
            parsed = yaml_nodes.parse(text)
        except SourceError as exc:
            line, column = (exc.mark.line, exc.mark.column) if exc.mark else (None, None)
            raise InputError([InputProblem(str(path), line, column, "", exc.message, exc.hint)]) from None
        if parsed.findings:
            problems = []
            for finding in parsed.findings:
                mark = finding.mark or self._mark(parsed.positions, finding.path)
                problems.append(InputProblem(str(path), mark.line if mark else None, mark.column if mark else None,
                                             render_path(finding.path), finding.message, finding.hint))
            raise InputError(problems)
        self.data: Any = parsed.data
        self.positions: dict[KeyPath, NodePos] = parsed.positions

    @staticmethod
    def _mark(positions: dict[KeyPath, NodePos], path: KeyPath) -> Any:
        while path and path not in positions:
            path = path[:-1]
        pos = positions.get(path)
        return (pos.key or pos.value) if pos else None

    def where(self, path: KeyPath) -> Where:
        mark = self._mark(self.positions, path)
        return Where(self.path, mark.line, mark.column) if mark else Where(self.path, 1, 1)

    def error(self, path: KeyPath, message: str, hint: str) -> InputError:
        at = self.where(path)
        return InputError([InputProblem(str(self.path), at.line, at.column, render_path(path), message, hint)])

    def mapping(self, value: Any, path: KeyPath, hint: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(path, f"must be a mapping, got {type(value).__name__}", hint)
        return value


def parse(path: Path) -> GatewayConfig:
    """Read a LiteLLM proxy config; InputError (file:line:column, key, hint) when it cannot be read as one."""
    doc = _Doc(path)
    root = doc.data
    if not isinstance(root, dict):
        raise doc.error((), "the top level must be a mapping (model_list:, router_settings:, ...)",
                        "a LiteLLM proxy config starts with `model_list:`")
    models = root.get("model_list")
    if not isinstance(models, list) or not models:
        raise doc.error(("model_list",), "model_list must be a non-empty list of deployments",
                        "each item: {model_name: ..., litellm_params: {model: ..., api_key: ...}}")
    router = doc.mapping(root.get("router_settings"), ("router_settings",), "router_settings: {fallbacks: ...}")
    litellm_settings = doc.mapping(root.get("litellm_settings"), ("litellm_settings",),
                                   "litellm_settings: {callbacks: ...}")
    config = GatewayConfig(kind="litellm", path=path)
    groups = _deployments(doc, models, config)
    for name, members in groups.items():
        config.routes[name] = Route(name, tuple(d for d, _, _ in members), members[0][1])
    reader = _Settings(doc, router, litellm_settings)
    _edges(doc, reader, groups, config)
    _route_settings(doc, reader, groups, models, config)
    _master_key(doc, root, config)
    return config


# -- deployments ----------------------------------------------------------------------------------------------

def _deployments(doc: _Doc, models: list[Any], config: GatewayConfig) -> _Groups:
    groups: _Groups = {}
    for index, item in enumerate(models):
        at: KeyPath = ("model_list", index)
        if not isinstance(item, dict):
            raise doc.error(at, "a deployment must be a mapping", "{model_name: chat, litellm_params: {...}}")
        name = item.get("model_name")
        if not isinstance(name, str) or not name:
            raise doc.error(at + ("model_name",), "every deployment needs a model_name (the route clients call)",
                            "model_name: chat")
        params = doc.mapping(item.get("litellm_params"), at + ("litellm_params",), "litellm_params: {model: ...}")
        info = doc.mapping(item.get("model_info"), at + ("model_info",), "model_info: {id: ...}")
        key_field = next((f for f in ("api_key", "aws_access_key_id") if f in params), None)
        key_ref = str(params[key_field]) if key_field else None
        for field in _CREDENTIALS:
            value = params.get(field)
            if isinstance(value, str) and value and _key_form(value) == "plaintext":
                config.secrets.append(Secret(doc.where(at + ("litellm_params", field)),
                                             render_path(at + ("litellm_params", field))))
        ident = info.get("id")
        deployment = Deployment(
            name=str(ident) if ident is not None else name,
            provider=_provider(params, ident),
            where=doc.where(at),
            key_ref=key_ref,
            key_form=_key_form(key_ref) if key_ref else "none",
            region=_region(params),
            model=str(params["model"]) if params.get("model") is not None else None,
        )
        groups.setdefault(name, []).append((deployment, doc.where(at + ("model_name",)), index))
    return groups


def _key_form(value: str) -> KeyForm:
    if _PLACEHOLDER.fullmatch(value):
        return "placeholder"
    if _ENVIRONMENT.match(value):
        return "environment"
    return "plaintext"


def _provider(params: dict[str, Any], ident: Any) -> str | None:
    """The harness provider a deployment reaches: the NAME of its {providers.NAME.*} placeholders (its
    api_base says where it really goes), else its model_info.id."""
    for field in ("api_base", "aws_bedrock_runtime_endpoint", "api_key", "aws_access_key_id"):
        found = _PROVIDER_PLACEHOLDER.search(str(params.get(field, "")))
        if found:
            return found.group(1)
    return str(ident) if ident is not None else None


def _region(params: dict[str, Any]) -> str | None:
    for field in _REGION_FIELDS:
        value = params.get(field)
        # A placeholder is filled from the scenario's provider, which says the region itself.
        if isinstance(value, str) and value and not _PLACEHOLDER.search(value):
            return value
    return None


def _master_key(doc: _Doc, root: dict[str, Any], config: GatewayConfig) -> None:
    general = root.get("general_settings")
    if isinstance(general, dict) and isinstance(general.get("master_key"), str):
        if general["master_key"] and _key_form(general["master_key"]) == "plaintext":
            at = ("general_settings", "master_key")
            config.secrets.append(Secret(doc.where(at), render_path(at)))


# -- settings LiteLLM reads from router_settings, else litellm_settings -------------------------------------------

class _Settings:
    def __init__(self, doc: _Doc, router: dict[str, Any], litellm_settings: dict[str, Any]) -> None:
        self.doc, self.router, self.litellm = doc, router, litellm_settings

    def get(self, key: str) -> tuple[Any, KeyPath] | None:
        """The value and where it is written: router_settings wins (the Router's argument), litellm_settings
        (a module-wide litellm.<key>) is read when the Router's is unset."""
        for section, values in (("router_settings", self.router), ("litellm_settings", self.litellm)):
            if key in values and values[key] is not None:
                return values[key], (section, key)
        return None

    def chains(self, key: str) -> dict[str, tuple[list[Any], KeyPath]]:
        """A fallbacks list ([{group: [targets]}, ...]) as group -> (targets, where the group's entry is)."""
        found = self.get(key)
        if found is None:
            return {}
        value, at = found
        if not isinstance(value, list):
            raise self.doc.error(at, f"{key} must be a list of {{group: [fallback groups]}}",
                                 f"{key}: [{{chat: [chat-fallback]}}]")
        chains: dict[str, tuple[list[Any], KeyPath]] = {}
        for index, entry in enumerate(value):
            if not isinstance(entry, dict):
                raise self.doc.error(at + (index,), f"each {key} entry must be {{group: [fallback groups]}}",
                                     f"{key}: [{{chat: [chat-fallback]}}]")
            for group, targets in entry.items():
                targets = [targets] if isinstance(targets, str) else targets
                if not isinstance(targets, list):
                    raise self.doc.error(at + (index, group), "the fallback groups must be a list",
                                         f"{{{group}: [{group}-fallback]}}")
                chains[group] = (targets, at + (index, group))
        return chains


def _edges(doc: _Doc, settings: _Settings, groups: _Groups,
           config: GatewayConfig) -> None:
    found = {key: settings.chains(key) for key in _CHAINS}
    unsupported = settings.get("fallback_on_unsupported_params")
    on_400 = unsupported is None or unsupported[0] is True
    default = settings.get("default_fallbacks")
    wildcard = found["fallbacks"].get("*")
    for route in groups:
        generic = set(_ANY_OUTAGE)
        if route not in found["context_window_fallbacks"]:
            generic.add("context_length")
        if on_400:
            generic |= {400, "content_policy"}
        if route not in found["content_policy_fallbacks"] and any(
                (d.model or "").startswith("azure/") for d, _, _ in groups[route]):
            generic.add("content_policy")  # Azure's content_filter 400 is a ContentPolicyViolationError
        chain = found["fallbacks"][route] if route in found["fallbacks"] else wildcard
        if chain is not None:
            _add(doc, config, groups, route, chain, "fallbacks", frozenset(generic))
        elif default is not None:
            value, at = default
            targets = [value] if isinstance(value, str) else value
            if not isinstance(targets, list):
                raise doc.error(at, "default_fallbacks must be a list of model groups",
                                "default_fallbacks: [chat-fallback]")
            _add(doc, config, groups, route, (targets, at), "default_fallbacks", frozenset(generic))
        if route in found["context_window_fallbacks"]:
            _add(doc, config, groups, route, found["context_window_fallbacks"][route], "context_window_fallbacks",
                 frozenset({"context_length"}))
        if route in found["content_policy_fallbacks"]:
            _add(doc, config, groups, route, found["content_policy_fallbacks"][route], "content_policy_fallbacks",
                 frozenset({"content_policy"}))


def _add(doc: _Doc, config: GatewayConfig, groups: _Groups, route: str,
         chain: tuple[list[Any], KeyPath], via: str, trigger: frozenset[int | str]) -> None:
    targets, at = chain
    for index, target in enumerate(targets):
        if target == route and via == "default_fallbacks":
            continue  # the default chain of a group that is itself the default
        spot: KeyPath = at + (index,) if at + (index,) in doc.positions else at
        if not isinstance(target, str) or target not in groups:
            raise doc.error(spot, f"{via} of {route} names {target!r}, which no deployment's model_name is",
                            f"model groups here: {', '.join(sorted(groups))}")
        for deployment, _, _ in groups[target]:
            config.edges.append(FallbackEdge(route, None, deployment, via, doc.where(spot), trigger))


# -- per-route knobs: attempts, cooldown, the unsupported-params flag ------------------------------------------

def _route_settings(doc: _Doc, settings: _Settings, groups: _Groups,
                    models: list[Any], config: GatewayConfig) -> None:
    unsupported = settings.get("fallback_on_unsupported_params")
    if unsupported is not None:
        config.settings.append(Setting("fallback_on_unservable", unsupported[0] is True, doc.where(unsupported[1])))
    # model_list index of each deployment (the Deployment objects are the ones the edges hold)
    index = {id(d): i for members in groups.values() for d, _, i in members}
    for route, members in groups.items():
        route_where = members[0][1]
        edges = [e for e in config.edges if e.route == route]
        if unsupported is None and edges:
            # Only where it matters: a group without fallbacks has nowhere to reroute to.
            config.settings.append(Setting("fallback_on_unservable", True, route_where, route, default=True))
        primaries = [i for _, _, i in members]
        reachable = primaries + [index[id(e.target)] for e in edges]
        _attempts(doc, settings, route, route_where, primaries, reachable, models, config)
        _cooldown(doc, settings, route, route_where, primaries, models, config)


def _attempts(doc: _Doc, settings: _Settings, route: str, route_where: Where, primaries: list[int],
              reachable: list[int], models: list[Any], config: GatewayConfig) -> None:
    """Upstream calls one failing deployment the route reaches (a primary or a fallback) gets for one request:
    (1 + router retries) x (1 + SDK retries), the largest over those deployments."""
    router_retries, router_at = _router_retries(settings)
    best: tuple[int, Where, bool] | None = None
    for i in dict.fromkeys(reachable):
        lp = models[i].get("litellm_params") or {}
        at: KeyPath = ("model_list", i, "litellm_params")
        own = lp.get("num_retries")
        if isinstance(own, int):
            retries, retries_at = own, at + ("num_retries",)
        else:
            retries, retries_at = router_retries, router_at
        sdk, sdk_at = 0, None
        if str(lp.get("model", "")).startswith(_OPENAI_SDK):
            given = lp.get("max_retries")
            sdk, sdk_at = (given, at + ("max_retries",)) if isinstance(given, int) else (SDK_MAX_RETRIES, None)
        attempts = (1 + retries) * (1 + sdk)
        # Point at the knob that makes it more than one call; a default points at the deployment (or route).
        home = route_where if i in primaries else doc.where(("model_list", i, "model_name"))
        if sdk and sdk_at is None or retries and retries_at is None:
            where, is_default = home, True
        elif sdk:
            where, is_default = doc.where(sdk_at or ()), False
        elif retries:
            where, is_default = doc.where(retries_at or ()), False
        else:
            where, is_default = home, sdk_at is None and retries_at is None
        if best is None or attempts > best[0]:
            best = (attempts, where, is_default)
    if best is not None:
        config.settings.append(Setting("attempts_per_deployment", best[0], best[1], route, default=best[2]))
        # The router and the SDK retry rate limits, 5xx (Anthropic's 529 included), timeouts and dropped
        # connections; a 4xx answer (a refusal, a bad request) is not retried.
        config.settings.append(Setting("retry_on", RETRYABLE, best[1], route, default=True))


def _router_retries(settings: _Settings) -> tuple[int, KeyPath | None]:
    retries: int = ROUTER_NUM_RETRIES
    at: KeyPath | None = None
    found = settings.get("num_retries")
    if found is not None and isinstance(found[0], int):
        retries, at = found
    policy = settings.get("retry_policy")
    if policy is not None and isinstance(policy[0], dict):
        counts = [v for v in policy[0].values() if isinstance(v, int)]
        if counts and max(counts) > retries:  # a retry_policy allows this many for some error
            retries, at = max(counts), policy[1]
    return retries, at


def _cooldown(doc: _Doc, settings: _Settings, route: str, route_where: Where, primaries: list[int],
              models: list[Any], config: GatewayConfig) -> None:
    """How long the route's primary is skipped after failing (0: never)."""
    def part(i: int, name: str) -> dict[str, Any]:
        value = models[i].get(name)
        return value if isinstance(value, dict) else {}

    allowed = settings.get("allowed_fails") or settings.get("allowed_fails_policy")
    own_allowed = any("allowed_fails" in part(i, p) or "allowed_fails_policy" in part(i, p)
                      for i in primaries for p in ("model_info", "litellm_params"))
    if len(primaries) == 1 and allowed is None and not own_allowed:
        # The base case of _should_cooldown_deployment: a single-deployment group is not cooled on a 429
        # nor on an error rate (measured: every request of an outage tries the primary first).
        config.settings.append(Setting("cooldown_s", 0.0, route_where, route, default=True))
        return
    # Cooled down: for the deployment's own cooldown_time (model_info, then litellm_params), which wins over
    # an upstream's Retry-After; without it, for whatever Retry-After says (router cooldown_time only when none).
    own: list[tuple[float, KeyPath]] = []
    for i in primaries:
        for name in ("model_info", "litellm_params"):
            value = part(i, name).get("cooldown_time")
            if isinstance(value, int | float) and not isinstance(value, bool):
                own.append((float(value), ("model_list", i, name, "cooldown_time")))
                break
    if own and len(own) == len(primaries):
        value, at = max(own)
        config.settings.append(Setting("cooldown_s", value, doc.where(at), route))
        return
    router_time = settings.get("cooldown_time")
    where = doc.where(router_time[1]) if router_time else doc.where(allowed[1]) if allowed else route_where
    config.settings.append(Setting("cooldown_s", math.inf, where, route, default=router_time is None and
                                   allowed is None and not own_allowed))
