"""The analyzer's own Prometheus metrics: how long analyses take, slow queries seen, index suggestions made."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from rentscout.runtime.metrics import LATENCY_BUCKETS

ANALYSES = Counter(
    "rentscout_analyzer_analyses_total",
    "AnalyzeQuery calls, by mode (plan/analyze) and outcome (ok/rejected/error).",
    ["mode", "outcome"],
)
ANALYSIS_DURATION = Histogram(
    "rentscout_analyzer_query_analysis_duration_seconds",
    "Time to EXPLAIN a statement and derive its insights.",
    ["mode"],
    buckets=LATENCY_BUCKETS,
)
REJECTED = Counter(
    "rentscout_analyzer_rejected_statements_total", "Statements refused by the safety policy, by reason.", ["reason"]
)
INSIGHTS = Counter("rentscout_analyzer_insights_total", "Plan insights reported, by kind and severity.", ["kind", "severity"])
SLOW_QUERIES = Gauge("rentscout_analyzer_slow_queries_count", "Statements returned by the last ListSlowQueries call.")
INDEX_SUGGESTIONS = Counter(
    "rentscout_analyzer_index_suggestions_total", "Index suggestions returned, by whether HypoPG validated them.", ["validated"]
)
INDEX_ISSUES = Counter(
    "rentscout_analyzer_index_issues_total", "Duplicate, unused and invalid indexes reported, by kind.", ["kind"]
)
RUNNING = Gauge("rentscout_analyzer_running_statements", "AnalyzeQuery and SuggestIndexes calls running now (capped per server).")
REFUSED = Counter(
    "rentscout_analyzer_refused_total", "Calls refused with RESOURCE_EXHAUSTED: the cap on running analyses was reached."
)
