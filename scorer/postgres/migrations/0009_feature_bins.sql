-- Per-feature drift (scorer.run.drift). Each run's own bins, for the runs that follow it:
-- per numeric feature its quantile bin edges and each bin's share, per categorical feature
-- the share of each category the model knows and of 'other' (docs/drift.md).
ALTER TABLE {s}.scoring_runs ADD COLUMN feature_bins jsonb;
