-- Runs, predictions and the consumer view.
CREATE TABLE {s}.scoring_runs (
    run_id                text PRIMARY KEY,
    status                text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    model_name            text NOT NULL,
    model_selector        text NOT NULL,
    model_version         integer,
    mlflow_run_id         text,
    model_source          text,
    model_id              text,
    model_flavor          text,
    model_signature       jsonb,
    threshold             double precision NOT NULL,
    snapshot              text NOT NULL,
    features_relation     text NOT NULL,
    trigger               text NOT NULL,
    attempts              integer NOT NULL DEFAULT 1,
    started_at            timestamptz NOT NULL,
    finished_at           timestamptz,
    timings               jsonb,
    rows_read             bigint,
    rows_scored           bigint,
    rows_rejected         bigint,
    score_mean            double precision,
    score_p50             double precision,
    score_p90             double precision,
    share_above_threshold double precision,
    scorer_version        text NOT NULL,
    k8s_namespace         text,
    k8s_pod               text,
    k8s_node              text,
    k8s_job               text,
    k8s_cronjob           text,
    image                 text,
    error                 text
);
CREATE INDEX scoring_runs_latest_idx ON {s}.scoring_runs (model_name, finished_at)
    WHERE status = 'succeeded';
CREATE TABLE {s}.predictions (
    run_id        text NOT NULL,
    entity_id     bigint NOT NULL,
    score         double precision NOT NULL,
    label         smallint NOT NULL,
    model_name    text NOT NULL,
    model_version integer NOT NULL,
    snapshot      text NOT NULL,
    scored_at     timestamptz NOT NULL,
    PRIMARY KEY (run_id, entity_id)
);
CREATE VIEW {s}.latest_predictions AS
SELECT p.*
FROM {s}.predictions AS p
JOIN (
    SELECT DISTINCT ON (model_name) run_id
    FROM {s}.scoring_runs
    WHERE status = 'succeeded'
    ORDER BY model_name, finished_at DESC, run_id DESC
) AS latest USING (run_id);
