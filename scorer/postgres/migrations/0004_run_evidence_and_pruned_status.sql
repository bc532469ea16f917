-- A year of nightly runs. Each run's evidence (score histogram, per-feature NULL and
-- empty shares) and its quality checks against the previous published run; an override's
-- reason; retention marks a run 'pruned' (its partition dropped, the row kept as history).
ALTER TABLE {s}.scoring_runs
    DROP CONSTRAINT scoring_runs_status_check,
    ADD CONSTRAINT scoring_runs_status_check
        CHECK (status IN ('running', 'succeeded', 'failed', 'pruned')),
    ADD COLUMN score_histogram jsonb,
    ADD COLUMN feature_stats jsonb,
    ADD COLUMN quality jsonb,
    ADD COLUMN quality_override text,
    ADD COLUMN pruned_at timestamptz;
