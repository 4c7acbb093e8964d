"""What each check evidences for a reviewer, and where that sits in the frameworks platform teams cite.

Kept as data in one place so a reviewer (or an auditor) can read and correct the mapping without
reading code. Frameworks are cited BY NAME ONLY: the named functions and characteristics of the
NIST AI RMF, the named entries of OWASP's LLM / agentic top-10 material, the named layers of CSA
MAESTRO. No control numbers or risk IDs: those change between editions and a wrong number in an
audit pack is worse than none. A check with no honest counterpart in a framework maps to nothing
there rather than to something loosely related.
"""

from __future__ import annotations

from typing import Any

from harness.core.verdict import CheckResult

NIST = "NIST AI RMF"
OWASP_AGENTIC = "OWASP Top 10 for Agentic Applications"
OWASP_LLM = "OWASP Top 10 for LLM Applications"
OWASP_THREATS = "OWASP Agentic AI - Threats and Mitigations"
MAESTRO = "CSA MAESTRO"

FRAMEWORKS: dict[str, str] = {
    NIST: "NIST AI Risk Management Framework 1.0: its functions (GOVERN, MAP, MEASURE, MANAGE) "
          "and trustworthiness characteristics",
    OWASP_AGENTIC: "OWASP GenAI Security Project, the top-10 risks of agentic applications",
    OWASP_LLM: "OWASP GenAI Security Project, the top-10 risks of LLM applications",
    OWASP_THREATS: "OWASP Agentic Security Initiative, the threat taxonomy for agentic AI",
    MAESTRO: "Cloud Security Alliance, the agentic-AI threat-modelling framework: its layers",
}

# What a pass of a check lets a reviewer claim, per evidence named by the checks' registrations.
EVIDENCES: dict[str, str] = {
    "accountability": "the platform did only what the approved policy allows, and every dependency change has "
                      "a named approver, owner and approval reference the consuming team can answer with",
    "traceability": "every fallback can be reconstructed afterwards from an audit record that matches what "
                    "really happened, and the run's evidence is real (faults fired, successes are whole)",
    "reversibility": "fallback is temporary and under control: traffic returns to the primary after it "
                     "recovers, nothing falls back while it is healthy, and the kill switch stops fallback",
    "least privilege of the non-human identity": "a fallback runs with the primary's service identity, region "
                     "and tools, never more; each credential reaches only its own provider; sensitive traffic "
                     "is not rerouted",
}

_RESILIENT = "Secure and Resilient (trustworthiness characteristic)"
_ACCOUNTABLE = "Accountable and Transparent (trustworthiness characteristic)"
_VALID = "Valid and Reliable (trustworthiness characteristic)"
_PRIVACY = "Privacy-Enhanced (trustworthiness characteristic)"
_SECURITY_LAYER = "Security and Compliance layer"
_DEPLOY_LAYER = "Deployment and Infrastructure layer"
_OBSERVE_LAYER = "Evaluation and Observability layer"

# check -> framework -> named parts. Every run of the harness is itself a test (MEASURE); the other
# functions are listed where the check's evidence feeds them.
CHECKS: dict[str, dict[str, tuple[str, ...]]] = {
    "approved_targets": {
        NIST: ("GOVERN function", "MANAGE function", _ACCOUNTABLE),
        OWASP_AGENTIC: ("Agentic Supply Chain Vulnerabilities",),
        OWASP_LLM: ("Supply Chain",),
        MAESTRO: ("Foundation Models layer", _SECURITY_LAYER),
    },
    "trust_boundary": {
        NIST: ("GOVERN function", "MANAGE function", _RESILIENT, _PRIVACY),
        OWASP_AGENTIC: ("Identity and Privilege Abuse", "Tool Misuse and Exploitation"),
        OWASP_LLM: ("Excessive Agency", "Sensitive Information Disclosure"),
        OWASP_THREATS: ("Privilege Compromise", "Identity Spoofing and Impersonation"),
        MAESTRO: (_DEPLOY_LAYER, _SECURITY_LAYER),
    },
    "fail_closed": {
        NIST: ("GOVERN function", "MANAGE function", _PRIVACY),
        OWASP_AGENTIC: ("Identity and Privilege Abuse",),
        OWASP_LLM: ("Sensitive Information Disclosure",),
        MAESTRO: (_SECURITY_LAYER,),
    },
    "trigger_conditions": {
        NIST: ("MEASURE function", "MANAGE function", _VALID),
        MAESTRO: (_DEPLOY_LAYER,),
    },
    "logged": {
        NIST: ("GOVERN function", "MANAGE function", _ACCOUNTABLE),
        OWASP_LLM: ("Sensitive Information Disclosure",),
        OWASP_THREATS: ("Repudiation and Untraceability",),
        MAESTRO: (_OBSERVE_LAYER, _SECURITY_LAYER),
    },
    "reversible": {
        NIST: ("MANAGE function", _RESILIENT),
        OWASP_AGENTIC: ("Cascading Failures",),
        MAESTRO: (_DEPLOY_LAYER,),
    },
    "steady_state": {
        NIST: ("MEASURE function", "MANAGE function", _VALID),
        MAESTRO: (_DEPLOY_LAYER,),
    },
    "attempt_budget": {
        NIST: ("MANAGE function", _RESILIENT),
        OWASP_AGENTIC: ("Cascading Failures",),
        OWASP_LLM: ("Unbounded Consumption",),
        OWASP_THREATS: ("Resource Overload",),
        MAESTRO: (_DEPLOY_LAYER,),
    },
    "response_integrity": {
        NIST: ("MEASURE function", _VALID),
        MAESTRO: (_OBSERVE_LAYER,),
    },
    "fault_effective": {
        NIST: ("MEASURE function", _VALID),
        MAESTRO: (_OBSERVE_LAYER,),
    },
}

NOTE = ("Frameworks are cited by name only (functions, characteristics, named risks, layers), never by "
        "control number or risk ID. A pass is evidence for this run and scenario, not a claim of conformance.")


def framework_mapping(results: list[CheckResult]) -> dict[str, Any]:
    """summary['frameworks']: for each check run, its verdict, what it evidences and where that maps."""
    checks = []
    for r in results:
        mapping = CHECKS.get(r.check, {})
        checks.append({
            "check": r.check,
            "verdict": r.verdict.value,
            "evidences": [{"name": e, "meaning": EVIDENCES.get(e, "")} for e in r.evidences],
            # Every framework key present (empty list = no honest counterpart), so tables line up.
            "frameworks": {name: list(mapping.get(name, ())) for name in FRAMEWORKS},
        })
    return {"note": NOTE, "frameworks": dict(FRAMEWORKS), "evidences": dict(EVIDENCES), "checks": checks}
