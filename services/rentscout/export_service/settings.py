"""Settings of the export service (`RENTSCOUT_EXPORT_*`)."""

from dataclasses import dataclass

from rentscout.runtime.config import int_range, setting


@dataclass(frozen=True)
class ExportSettings:
    max_concurrent: int = setting(
        "EXPORT_MAX_CONCURRENT", 8, "Exports streaming at once per replica; more get RESOURCE_EXHAUSTED.",
        int_range(1, 1000))
    max_limit: int = setting("EXPORT_MAX_LIMIT", 50_000_000, "Largest `limit` an export may ask for.", int_range(1, 10**12))
    statement_timeout_ms: int = setting(
        "EXPORT_STATEMENT_TIMEOUT_MS", 0, "statement_timeout of export queries (0: none; the deadline still applies).",
        int_range(0, 86_400_000))
