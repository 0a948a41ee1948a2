-- One row per export stream (a resumed stream is a new run of the same export_id), so that any replica
-- can answer GetExportStatistics. A running replica refreshes heartbeat_at, rows and bytes of its open
-- runs; an open run whose heartbeat is stale was abandoned by a dead replica.
CREATE TABLE IF NOT EXISTS export_runs (
    run_id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    export_id      uuid        NOT NULL,
    format         text        NOT NULL CHECK (format IN ('csv', 'json', 'jsonl')),
    status         text        NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    resumed        boolean     NOT NULL DEFAULT false,
    replica        text        NOT NULL,
    correlation_id text,
    started_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at       timestamptz,
    rows           bigint      NOT NULL DEFAULT 0 CHECK (rows >= 0),
    bytes          bigint      NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    error_code     text,
    CHECK ((status = 'running') = (ended_at IS NULL))
);

-- Statistics since an instant, and retention.
CREATE INDEX IF NOT EXISTS export_runs_started_at_idx ON export_runs (started_at);
-- Runs still open (in flight or abandoned).
CREATE INDEX IF NOT EXISTS export_runs_open_idx ON export_runs (heartbeat_at) WHERE ended_at IS NULL;
