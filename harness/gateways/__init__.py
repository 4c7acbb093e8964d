"""Adapters for real gateways (LiteLLM proxy, Portkey gateway): optional, loaded by name only
when a scenario asks for that kind, so nothing else in the harness imports them."""
