"""The organisation's approved-fallback registry (one policy file many drills reference) and the rules by which
a scenario narrows, extends or tightens it. Imports only harness.core: scenario, lint and drills build on it."""
