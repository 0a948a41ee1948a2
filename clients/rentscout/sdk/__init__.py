"""RentScout client SDK: typed gRPC clients with retries, circuit breakers and resumable exports.

    from rentscout.sdk import CacheQueryClient, ExportClient, export_request

    async with CacheQueryClient("dns:///cache-query:50052", token=token, timeout=2.0) as cache:
        stats = await cache.price_stats("Moscow")

Each client call runs: overall deadline -> retry (status-aware, budgeted, pushback-aware) ->
circuit breaker (one per target) -> one attempt with its own timeout, and raises the typed
exceptions of `rentscout.sdk.errors`. `Sync*Client` are blocking twins for scripts.
The resilience pieces (`RetryPolicy`, `retry_advanced`, `CircuitBreaker`, `handle_errors`) are
plain Python and usable on any function, sync or async.
"""

from rentscout.resilience.retry import Jitter, RetryBudget, RetryEvent, RetryPolicy, RetryStrategy, retry_advanced
from rentscout.sdk.analyzer import AnalyzerClient, SyncAnalyzerClient
from rentscout.sdk.arrow import ArrowStream, ParquetSink
from rentscout.sdk.breaker import BreakerConfig, BreakerRegistry, CircuitBreaker, CircuitState, Outcome, StateChange
from rentscout.sdk.cache import CacheQueryClient, SyncCacheQueryClient
from rentscout.sdk.channel import ChannelConfig, TlsConfig
from rentscout.sdk.errors import (
    CircuitOpenError,
    DeadlineExceededError,
    ExportIntegrityError,
    InvalidArgumentError,
    PermissionDeniedError,
    RentScoutError,
    UnauthenticatedError,
    UnavailableError,
)
from rentscout.sdk.export import DownloadProgress, DownloadResult, ExportClient, SyncExportClient, export_request
from rentscout.sdk.export_stream import ExportStream
from rentscout.sdk.handle import handle_errors
from rentscout.sdk.invoker import ClientConfig

__all__ = [
    "AnalyzerClient",
    "ArrowStream",
    "BreakerConfig",
    "BreakerRegistry",
    "CacheQueryClient",
    "ChannelConfig",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "ClientConfig",
    "DeadlineExceededError",
    "DownloadProgress",
    "DownloadResult",
    "ExportClient",
    "ExportIntegrityError",
    "ExportStream",
    "InvalidArgumentError",
    "Jitter",
    "Outcome",
    "ParquetSink",
    "PermissionDeniedError",
    "RentScoutError",
    "RetryBudget",
    "RetryEvent",
    "RetryPolicy",
    "RetryStrategy",
    "StateChange",
    "SyncAnalyzerClient",
    "SyncCacheQueryClient",
    "SyncExportClient",
    "TlsConfig",
    "UnauthenticatedError",
    "UnavailableError",
    "export_request",
    "handle_errors",
    "retry_advanced",
]
