-- A sharded run's copy of its model's files (scorer.model.run_copy), stored by the shard
-- that opens the run and loaded by the others; deleted when the run publishes or fails.
CREATE TABLE {s}.scoring_run_models (
    run_id    text PRIMARY KEY REFERENCES {s}.scoring_runs (run_id) ON DELETE CASCADE,
    files     bytea NOT NULL,
    sha256    text NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);
