"""Provider APIs the mocks speak, the fault proxy records and the reference gateway calls: one module each.

`api_named(name)` gives the dialect for a provider's `api:` (core.model.ProviderApiName).
"""

from __future__ import annotations

import importlib
from functools import cache

from harness.topology.apis.base import ProviderApi

_MODULES = {
    "openai": "openai",
    "azure-openai": "azure_openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "bedrock": "bedrock",
}


@cache
def api_named(name: str) -> ProviderApi:
    """The dialect of one API (a shared, stateless instance). KeyError for a name no module speaks."""
    module = importlib.import_module(f"harness.topology.apis.{_MODULES[name]}")
    api: ProviderApi = module.API
    return api
