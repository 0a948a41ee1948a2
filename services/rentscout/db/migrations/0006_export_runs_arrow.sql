-- Arrow IPC exports are recorded like the text formats.
ALTER TABLE export_runs DROP CONSTRAINT IF EXISTS export_runs_format_check;
ALTER TABLE export_runs ADD CONSTRAINT export_runs_format_check CHECK (format IN ('csv', 'json', 'jsonl', 'arrow'));
