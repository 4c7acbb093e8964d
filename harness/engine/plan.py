"""`harness run --dry-run`: the plan of a run, its blast radius, with nothing started or injected.

Every selector is resolved by `harness.core.blast_radius`, the functions the scenario's semantic
checks and the fault backends call, so what the plan shows is what the run would touch.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from harness.core.blast_radius import affected_providers, fault_containers, fault_targets, served_providers
from harness.core.model import Fault, MixEntry, Scenario
from harness.faults.docker_backend import describe_undo, docker_host, is_local_host, require_local
from harness.gateways.base import GatewayContext, load_adapter
from harness.scenario import LoadedScenario


def dry_run_plan(loaded: LoadedScenario, allow_remote: bool) -> str:
    s = loaded.scenario
    if s.containers or any(f.backend == "docker" for f in s.faults):
        require_local(allow_remote)  # the run would refuse a remote engine: so does its plan
    lines = [f"plan for {s.name} ({loaded.path}, seed {s.seed}): dry run, nothing started or injected"]
    lines += _gateway(loaded) + _providers(s) + _containers(s) + _traffic(s) + _faults(s) + _timeline(s)
    return "\n".join(lines)


def _gateway(loaded: LoadedScenario) -> list[str]:
    s = loaded.scenario
    run = GatewayContext(s, Path(loaded.path).resolve().parent)
    return [f"gateway: {s.gateway.kind}: {load_adapter(s.gateway.kind).describe(run)}"]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _providers(s: Scenario) -> list[str]:
    lines = ["providers:"]
    for name, p in s.providers.items():
        # Only scheme, host and port: an upstream URL may carry credentials.
        where = (f"fault proxy in front of upstream {_origin(p.upstream)}" if p.upstream
                 else f"mock on 127.0.0.1:{p.port or '<free port>'}")
        lines.append(f"  {name}: {where}; model {p.model}, region {p.region}, identity {p.identity}, "
                     f"data classes {', '.join(p.data_classes)}, tools {', '.join(p.tools) or 'none'}")
    return lines


def _containers(s: Scenario) -> list[str]:
    if not s.containers:
        return []
    host = docker_host()
    lines = [f"containers (Docker engine {host}, {'local' if is_local_host(host) else 'REMOTE'}):"]
    for name, c in s.containers.items():
        labels = ", ".join(f"{k}={v}" for k, v in c.labels.items()) or "none"
        served = served_providers(s, name)
        lines.append(f"  {name}: image {c.image}, labels {labels}, network {c.network_mode}, "
                     f"ready {c.ready_url or '<not polled>'}"
                     + (f"; upstream of provider {', '.join(served)}" if served else ""))
    return lines


def _traffic(s: Scenario) -> list[str]:
    t = s.traffic
    lines = [f"traffic: {t.rate_per_s:g}/s for {t.duration_s:g} s (about {round(t.rate_per_s * t.duration_s)} "
             f"requests), client timeout {t.timeout_s:g} s; mix:"]
    total = sum(m.weight for m in t.mix)
    for m in t.mix:
        lines.append(f"  {m.weight / total:4.0%}  {_request(m)}")
    return lines


def _request(m: MixEntry) -> str:
    extra = (", stream" if m.stream else "") + (f", tools {', '.join(m.tools)}" if m.tools else "")
    return (f"route {m.route}, tenant {m.tenant}, region {m.region}, class {m.request_class}, "
            f"data {m.data_class}{extra}")


def _faults(s: Scenario) -> list[str]:
    if not s.faults:
        return ["faults: none (a run without a fault proves nothing about fallback)"]
    lines = ["faults:"]
    for f in s.faults:
        effect = ", ".join(f"{k}={v}" for k, v in f.effect.model_dump(exclude_none=True).items() if k != "kind")
        lines.append(f"  {f.name}: backend {f.backend}, {f.effect.kind}{f' ({effect})' if effect else ''}, "
                     f"{f.at_s:g} s..{f.at_s + f.duration_s:g} s, probability {f.probability:g}")
        lines.append(f"    selector {_selector(f)}")
        if f.backend == "docker":
            names = fault_containers(s, f)
            lines.append(f"    blast radius: container(s) {', '.join(names) or 'NONE'} "
                         f"({len(names)} of {len(s.containers)} declared)")
            lines.append(f"    undo: {describe_undo(f.effect.model_dump(mode='json'), names, docker_host())}")
            if f.match is not None or f.probability < 1:
                lines.append("    note: match and probability do not apply to a container effect: every request "
                             "reaching the container is hit")
        else:
            lines.append(f"    blast radius: provider(s) {', '.join(fault_targets(s, f)) or 'NONE'}")
            lines.append("    undo: healed at its end; expires by itself at its deadline even if the harness dies")
        lines += [f"    {line}" for line in _requests_hit(s, f, affected_providers(s, f))]
    return lines


def _selector(f: Fault) -> str:
    given = f.target.model_dump(exclude_none=True)
    match = f.match.model_dump(exclude_none=True) if f.match else {}
    only = "; ".join(f"{k} {v if isinstance(v, str) else ' or '.join(v)}" for k, v in match.items())
    return ", ".join(f"{k} {v}" for k, v in given.items()) + (f"; only requests with {only}" if only else "")


def _requests_hit(s: Scenario, f: Fault, providers: list[str]) -> list[str]:
    """The traffic mix entries the fault's match selects whose route calls a faulted provider."""
    if not providers:
        return ["requests hit: those reaching the container (no provider's upstream is its ready_url address)"]
    # A container outage hits every request that reaches it, whatever the fault's match says.
    selected = [m for m in s.traffic.mix if f.backend == "docker" or _matches(f, m)]
    primary = [m for m in selected if s.policy.routes[m.route].primary in providers]
    fallback = [m for m in selected if m not in primary and any(fb.target in providers
                                                                for fb in s.policy.routes[m.route].fallbacks)]
    if not primary and not fallback:
        return ["requests hit: NONE of the traffic mix (the fault would prove nothing)"]
    total = sum(m.weight for m in s.traffic.mix)
    out = []
    for entries, how in ((primary, "on their primary"), (fallback, "only when they fall back to it")):
        if entries:
            share = sum(m.weight for m in entries) / total
            out.append(f"requests hit {how}: {share:.0%} of the mix: tenants {_set(entries, 'tenant')}; "
                       f"request classes {_set(entries, 'request_class')}; regions {_set(entries, 'region')}")
    return out


def _set(entries: list[MixEntry], key: str) -> str:
    return ", ".join(sorted({getattr(m, key) for m in entries}))


def _matches(f: Fault, m: MixEntry) -> bool:
    if f.match is None:
        return True
    for key in ("tenant", "request_class", "region"):
        wanted = getattr(f.match, key)
        if wanted is not None and getattr(m, key) not in ([wanted] if isinstance(wanted, str) else wanted):
            return False
    return True


def _timeline(s: Scenario) -> list[str]:
    steps: list[tuple[float, int, str]] = [(0.0, 0, f"traffic starts ({s.traffic.rate_per_s:g}/s)"),
                                          (s.traffic.duration_s, 9, "traffic ends")]
    for f in s.faults:
        steps.append((f.at_s, 2, f"fault {f.name} starts: {f.backend} {f.effect.kind} on {_targets(s, f)}"))
        steps.append((f.at_s + f.duration_s, 1, f"fault {f.name} healed"))
    for a in s.timeline:
        steps.append((a.at_s, 3, f"kill switch {a.state} (fallback {'disabled' if a.state == 'off' else 'enabled'})"))
    lines = ["timeline:"]
    if s.containers:
        lines.append(f"  before  start container(s) {', '.join(s.containers)}; wait until ready")
    lines += [f"  {at:5g} s  {what}" for at, _, what in sorted(steps)]
    lines.append("  after   heal every fault still active" + (", remove the containers" if s.containers else ""))
    return lines


def _targets(s: Scenario, f: Fault) -> str:
    return ", ".join(fault_targets(s, f)) or "nothing"
