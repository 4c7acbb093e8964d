"""The embedded topology: mock providers, the audit collector and the reference gateway.

Everything here is handed an `EventSink`; nothing imports the ledger, so the layer contract holds.
"""

from harness.topology.collector import audit_record, build_collector_app, tail_audit_file
from harness.topology.mock_provider import ProviderSpec, build_provider_app
from harness.topology.serving import start_app

__all__ = [
    "ProviderSpec",
    "audit_record",
    "build_collector_app",
    "build_provider_app",
    "start_app",
    "tail_audit_file",
]
