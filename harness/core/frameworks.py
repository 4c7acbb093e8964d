"""The vocabulary a check uses to say what its pass lets a reviewer claim, and where that claim sits
in the frameworks platform teams cite.

Frameworks are cited BY NAME ONLY: the named functions and characteristics of the NIST AI RMF, the
named entries of OWASP's LLM / agentic top-10 material, the named layers of CSA MAESTRO. No control
numbers or risk IDs: those change between editions and a wrong number in an audit pack is worse than
none. Each check module maps itself (harness.core.registry); this module only holds the shared names,
so a typo in a check's mapping is refused when the check registers.
"""

from __future__ import annotations

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

ACCOUNTABILITY = "accountability"
TRACEABILITY = "traceability"
REVERSIBILITY = "reversibility"
LEAST_PRIVILEGE = "least privilege of the non-human identity"
EQUIVALENCE = "equivalence, or knowingly degraded"

# What a pass of a check lets a reviewer claim, per evidence a check names.
EVIDENCES: dict[str, str] = {
    ACCOUNTABILITY: "the platform did only what the approved policy allows, and every dependency change has "
                    "a named approver, owner and approval reference the consuming team can answer with",
    TRACEABILITY: "every fallback can be reconstructed afterwards from an audit record that matches what "
                  "really happened, and the run's evidence is real (faults fired, successes are whole)",
    REVERSIBILITY: "fallback is temporary and under control: traffic returns to the primary after it "
                   "recovers, nothing falls back while it is healthy, and the kill switch stops fallback",
    LEAST_PRIVILEGE: "a fallback runs with the primary's service identity, region and tools, never more; each "
                     "credential reaches only its own provider; sensitive traffic is not rerouted",
    EQUIVALENCE: "a fallback target can serve what it is sent (context, output budget, structured output, "
                 "tools, modalities) and keeps the primary's response contract where it is declared equivalent; "
                 "a non-equivalent one degrades only what its approval names, for the request classes that accept "
                 "it",
}

# Named parts the checks cite more than once.
RESILIENT = "Secure and Resilient (trustworthiness characteristic)"
ACCOUNTABLE = "Accountable and Transparent (trustworthiness characteristic)"
VALID = "Valid and Reliable (trustworthiness characteristic)"
PRIVACY = "Privacy-Enhanced (trustworthiness characteristic)"
SECURITY_LAYER = "Security and Compliance layer"
DEPLOY_LAYER = "Deployment and Infrastructure layer"
OBSERVE_LAYER = "Evaluation and Observability layer"
FOUNDATION_LAYER = "Foundation Models layer"
# Output quality and tool use: what a fallback model changes without a line of application code changing.
OUTPUT_HANDLING = "Improper Output Handling"        # OWASP LLM: output passed on without validation
TOOL_MISUSE = "Tool Misuse and Exploitation"        # OWASP agentic top 10
TOOL_MISUSE_THREAT = "Tool Misuse"                  # OWASP agentic threats taxonomy
SUPPLY_CHAIN = "Supply Chain"                       # OWASP LLM: the models an application really runs on
AGENTIC_SUPPLY_CHAIN = "Agentic Supply Chain Vulnerabilities"
UNTRACEABLE = "Repudiation and Untraceability"      # OWASP agentic threats taxonomy

# Allure's severities, most severe first: a check declares one.
SEVERITIES = ("blocker", "critical", "normal", "minor", "trivial")

NOTE = ("Frameworks are cited by name only (functions, characteristics, named risks, layers), never by "
        "control number or risk ID. A pass is evidence for this run and scenario, not a claim of conformance.")
