"""What the scenario layer must know of each provider API, without the wire: the named errors a fault may
ask for (`effect: {kind: error, code: ...}`) and the status each comes with, and which APIs sign their
calls (bedrock: an identity there needs its secret). The dialects themselves live in harness.topology.apis.
"""

from __future__ import annotations

# Named errors per API, as the provider's own error type / status / exception name, with their HTTP status.
ERROR_CODES: dict[str, dict[str, int]] = {
    "openai": {},
    "azure-openai": {},
    "anthropic": {
        "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
        "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
        "timeout_error": 504, "overloaded_error": 529,
    },
    "gemini": {
        "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
        "RESOURCE_EXHAUSTED": 429, "INTERNAL": 500, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
    },
    "bedrock": {
        "ValidationException": 400, "AccessDeniedException": 403, "ResourceNotFoundException": 404,
        "ModelTimeoutException": 408, "ModelErrorException": 424, "ThrottlingException": 429,
        "ModelNotReadyException": 429, "ServiceQuotaExceededException": 400, "InternalServerException": 500,
        "ServiceUnavailableException": 503,
    },
}

# APIs whose calls are signed with a secret the identity holds (the key is then the access key id).
SIGNED_APIS = frozenset({"bedrock"})
