"""Settings of the export service (`RENTSCOUT_EXPORT_*`)."""

from dataclasses import dataclass

from rentscout.runtime.config import float_range, int_range, setting

MAX_FLIGHT_ENDPOINTS = 64  # PlanExport's partition cap

MIB = 1024 * 1024


@dataclass(frozen=True)
class ExportSettings:
    max_concurrent: int = setting(
        "EXPORT_MAX_CONCURRENT", 8, "Exports streaming at once per replica; more get RESOURCE_EXHAUSTED.", int_range(1, 1000)
    )
    max_limit: int = setting("EXPORT_MAX_LIMIT", 50_000_000, "Largest `limit` an export may ask for.", int_range(1, 10**12))
    statement_timeout_ms: int = setting(
        "EXPORT_STATEMENT_TIMEOUT_MS",
        0,
        "statement_timeout of export queries (0: none; the deadline still applies).",
        int_range(0, 86_400_000),
    )
    token_secret: str = setting(
        "EXPORT_TOKEN_SECRET",
        "",
        "Secret that signs resume tokens (HMAC); overrides the key stored in PostgreSQL. Unset (the default), "
        "tokens are signed with the stored key `rentscout db migrate` creates (`rentscout db rotate-token-key` "
        "rotates it): every replica of the database resumes every token, across restarts.",
        secret=True,
    )
    token_secret_previous: str = setting(
        "EXPORT_TOKEN_SECRET_PREVIOUS",
        "",
        "The secret before the last rotation: tokens it signed are still accepted; new ones use "
        "RENTSCOUT_EXPORT_TOKEN_SECRET. Remove it once the old tokens are no longer needed.",
        secret=True,
    )
    default_bytes_per_chunk: int = setting(
        "EXPORT_DEFAULT_BYTES_PER_CHUNK", MIB, "Bytes per data chunk when a request says 0.", int_range(4096, 2 * MIB)
    )
    max_bytes_per_chunk: int = setting(
        "EXPORT_MAX_BYTES_PER_CHUNK",
        2 * MIB,
        "Largest bytes_per_chunk a request may ask for (kept well under gRPC's 4 MiB message limit).",
        int_range(4096, 3 * MIB),
    )
    max_rows_per_chunk: int = setting(
        "EXPORT_MAX_ROWS_PER_CHUNK", 100_000, "Largest rows_per_chunk a request may ask for.", int_range(1, 10_000_000)
    )
    stall_timeout_seconds: float = setting(
        "EXPORT_STALL_TIMEOUT_SECONDS",
        60.0,
        "An export whose client takes no message for this long ends ABORTED (the SDK resumes from its last token "
        "when it reads again): its slot and database connection are freed and its run is recorded as abandoned.",
        float_range(0.1, 86_400),
    )
    heartbeat_seconds: float = setting(
        "EXPORT_HEARTBEAT_SECONDS",
        5.0,
        "How often a replica records the progress of its running exports; runs silent for 3 intervals count as "
        "abandoned (not in flight), and after 10 any replica closes them as abandoned.",
        float_range(0.05, 3600),
    )
    runs_retention_days: int = setting(
        "EXPORT_RUNS_RETENTION_DAYS", 30, "Export run records older than this are deleted (0: kept forever).", int_range(0, 36500)
    )
    advertised_address: str = setting(
        "EXPORT_ADVERTISED_ADDRESS",
        "",
        "Arrow Flight location put in every GetFlightInfo endpoint (`grpc://host:port` or `grpc+tls://host:port`: "
        "the Service's address, so any replica serves any endpoint). Empty: no location (clients redeem tickets "
        "where they asked for them).",
    )
    flight_rows_per_endpoint: int = setting(
        "EXPORT_FLIGHT_ROWS_PER_ENDPOINT",
        500_000,
        "GetFlightInfo gives one endpoint per this many (estimated) rows, at most RENTSCOUT_EXPORT_FLIGHT_MAX_ENDPOINTS.",
        int_range(1000, 10**12),
    )
    flight_max_endpoints: int = setting(
        "EXPORT_FLIGHT_MAX_ENDPOINTS",
        8,
        f"Most endpoints (id-range partitions) of one FlightInfo (at most {MAX_FLIGHT_ENDPOINTS}).",
        int_range(1, MAX_FLIGHT_ENDPOINTS),
    )
    flight_readers: int = setting(
        "EXPORT_FLIGHT_READERS",
        2,
        "PostgreSQL connections one Flight DoGet reads its id range over at once (in order, each a few batches "
        "ahead; only for ranges of 100000+ ids without a limit).",
        int_range(1, 16),
    )
