"""Names of the gRPC metadata keys (and the client's token variable) that servers and clients agree on."""

from __future__ import annotations

AUTHORIZATION_HEADER = "authorization"  # "Bearer <token>"
CORRELATION_HEADER = "x-correlation-id"
REQUEST_ID_HEADER = "x-request-id"  # accepted as a correlation id when x-correlation-id is absent
STATUS_DETAILS_KEY = "grpc-status-details-bin"  # a serialized google.rpc.Status with rich details
PUSHBACK_HEADER = "grpc-retry-pushback-ms"  # gRPC A6: the server's retry delay (negative: do not retry)
PREVIOUS_ATTEMPTS_HEADER = "grpc-previous-rpc-attempts"

# The client commands read their bearer token from this variable; servers never read it (they only
# need to know that it is not a misspelt server setting).
TOKEN_ENV = "RENTSCOUT_TOKEN"
CLIENT_ENV_VARS = frozenset({TOKEN_ENV})
