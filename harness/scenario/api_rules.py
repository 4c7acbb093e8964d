"""Load-time rules for provider APIs: what the typed model cannot say.

A bedrock provider whose identity has no secret could never verify a signature (every call would be
'unknown'); an error `code` the provider's API does not have, or with another status than the API gives
it, would inject an error no real provider sends. Each is an error with its key and a hint.
"""

from __future__ import annotations

from harness.core.blast_radius import fault_providers
from harness.core.model import ErrorEffect, Scenario
from harness.core.provider_apis import ERROR_CODES, SIGNED_APIS
from harness.scenario.yaml_nodes import Finding, KeyPath


def check(s: Scenario) -> list[Finding]:
    return _signing_secrets(s) + _error_codes(s)


def _signing_secrets(s: Scenario) -> list[Finding]:
    out: list[Finding] = []
    for name, provider in s.providers.items():
        identity = s.identities.get(provider.identity)
        if provider.api in SIGNED_APIS and identity is not None and identity.secret is None:
            out.append(Finding(("identities", provider.identity), f"identity '{provider.identity}' signs for "
                               f"{provider.api} provider '{name}' but has no secret",
                               "give it the AWS secret access key: secret: ${AWS_SECRET_ACCESS_KEY} (its key is the "
                               "access key id)", at="key"))
    return out


def _error_codes(s: Scenario) -> list[Finding]:
    out: list[Finding] = []
    for index, fault in enumerate(s.faults):
        effect = fault.effect
        if not isinstance(effect, ErrorEffect) or effect.code is None:
            continue
        path: KeyPath = ("faults", index, "effect", "code")
        for name in fault_providers(s, fault):
            api = s.providers[name].api
            codes = ERROR_CODES.get(api, {})
            if effect.code not in codes:
                known = ", ".join(codes) if codes else "none: leave code out, the status says it"
                out.append(Finding(path, f"provider '{name}' speaks {api}, which has no error '{effect.code}'",
                                   f"named errors of {api}: {known}"))
            elif codes[effect.code] != effect.status:
                out.append(Finding(path, f"{api}'s {effect.code} comes with status {codes[effect.code]}, "
                                   f"not {effect.status}", f"set status: {codes[effect.code]}"))
    return out
