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
# `rentscout stack up` prints its admin token as this variable, for `--token="$RENTSCOUT_ADMIN_TOKEN"`.
ADMIN_TOKEN_ENV = "RENTSCOUT_ADMIN_TOKEN"
# Default --target of the client commands, by service (`rentscout stack up --port-offset` prints them).
TARGET_ENV = {"export": "RENTSCOUT_EXPORT_TARGET", "cache": "RENTSCOUT_CACHE_TARGET", "analyzer": "RENTSCOUT_ANALYZER_TARGET"}
CLIENT_ENV_VARS = frozenset({TOKEN_ENV, ADMIN_TOKEN_ENV, *TARGET_ENV.values()})
