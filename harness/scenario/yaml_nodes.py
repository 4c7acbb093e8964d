"""YAML with positions: the reader lives in `harness.policy.yaml_nodes` (the registry file needs it too, and
the policy layer sits below this one); these names stay importable from here."""

from harness.policy.yaml_nodes import (
    MAX_FILE_BYTES,
    MAX_NODES,
    Finding,
    KeyPath,
    Mark,
    NodePos,
    ParsedYaml,
    SourceError,
    locate,
    parse,
    read_source,
    render_path,
)

__all__ = ["MAX_FILE_BYTES", "MAX_NODES", "Finding", "KeyPath", "Mark", "NodePos", "ParsedYaml", "SourceError",
           "locate", "parse", "read_source", "render_path"]
