-- Runs of a replica that died (heartbeat silent for three intervals) are closed as 'abandoned' by any
-- live replica, so none stays 'running' forever and statistics keep telling them apart from failures.
ALTER TABLE export_runs DROP CONSTRAINT IF EXISTS export_runs_status_check;
ALTER TABLE export_runs ADD CONSTRAINT export_runs_status_check
    CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'abandoned'));
