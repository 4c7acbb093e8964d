"""The reference gateway: governed fallback done right, with switchable defects for the selftest."""

from harness.topology.reference_gateway.app import GATEWAY_KEY, ReferenceGateway, build_gateway_app
from harness.topology.reference_gateway.config import GatewayConfig, UpstreamProvider

__all__ = ["GATEWAY_KEY", "GatewayConfig", "ReferenceGateway", "UpstreamProvider", "build_gateway_app"]
