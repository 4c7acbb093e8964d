"""`harness lint-config`: static conformance of a gateway configuration against the approved-fallback
registry. One parser per gateway kind turns its file into a `GatewayConfig` (harness.lint.model); the
rules (harness.lint.rules) judge that normalised view, so a new gateway kind is one parser module."""
