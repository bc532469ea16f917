-- One run over many pods (scorer.run.shard_plan). The run row records its shard count, the
-- split every shard and retry reads (ranges of entity ids), the settings its results depend
-- on, and which shard failed it; each shard's own attempt, counts, timings and score
-- statistics (merged exactly at publish) live in scoring_run_shards.
ALTER TABLE {s}.scoring_runs
    ADD COLUMN shards integer NOT NULL DEFAULT 1 CHECK (shards >= 1),
    ADD COLUMN shard_split jsonb,
    ADD COLUMN run_settings jsonb,
    ADD COLUMN failed_shard integer;
CREATE TABLE {s}.scoring_run_shards (
    run_id           text NOT NULL REFERENCES {s}.scoring_runs (run_id) ON DELETE CASCADE,
    shard            integer NOT NULL CHECK (shard >= 0),
    status           text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    attempts         integer NOT NULL DEFAULT 1,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    rows_read        bigint,
    rows_scored      bigint,
    rows_rejected    bigint,
    rows_rejected_by jsonb,
    timings          jsonb,
    stats            jsonb,
    histogram        bytea,
    staging_table    text,
    k8s_pod          text,
    error            text,
    PRIMARY KEY (run_id, shard)
);
