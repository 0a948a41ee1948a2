"""Settings of the analyzer service (`RENTSCOUT_ANALYZER_*`)."""

from dataclasses import dataclass

from rentscout.runtime.config import int_range, setting


@dataclass(frozen=True)
class AnalyzerSettings:
    statement_timeout_ms: int = setting(
        "ANALYZER_STATEMENT_TIMEOUT_MS", 10_000, "statement_timeout of EXPLAIN ANALYZE runs.", int_range(1, 3_600_000))
