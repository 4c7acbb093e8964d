"""Gateway adapters, one per `gateway.kind` (reference, command, url, litellm, portkey): how to read,
launch and describe each gateway. Loaded by kind only when a scenario names it (`base.load_adapter`),
so the optional LiteLLM and Portkey adapters are never imported otherwise."""
