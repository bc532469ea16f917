-- Per-feature drift for sharded runs (scorer.run.drift). Each shard records, when its part
-- commits, the drift evidence of the rows it scored: the reference run it binned against,
-- per numeric feature its counts over that run's bins, per categorical feature its counts per
-- model category and of 'other', and its own sample's bin edges and shares. Statistics only,
-- never a sampled row. The shard that publishes the run sums them (docs/drift.md).
ALTER TABLE {s}.scoring_run_shards ADD COLUMN feature_drift jsonb;
