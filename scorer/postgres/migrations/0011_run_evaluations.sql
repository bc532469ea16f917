-- Realized performance (scorer.ops.evaluate). Per run and horizon, what its predictions were
-- worth once the outcomes landed: the outcome window read, the label coverage and base rate,
-- ROC AUC, average precision, precision and lift in the top k, the Brier score and a 10-bin
-- calibration table. --reevaluate replaces a row.
CREATE TABLE {s}.scoring_run_evaluations (
    run_id            text NOT NULL REFERENCES {s}.scoring_runs (run_id) ON DELETE CASCADE,
    horizon_days      integer NOT NULL CHECK (horizon_days >= 1),
    evaluated_at      timestamptz NOT NULL,
    outcomes_relation text NOT NULL,
    window_start      timestamptz NOT NULL,
    window_end        timestamptz NOT NULL,
    rows_scored       bigint NOT NULL,
    rows_labelled     bigint NOT NULL,
    positives         bigint NOT NULL,
    label_coverage    double precision NOT NULL,
    base_rate         double precision,
    roc_auc           double precision,
    average_precision double precision,
    top_share         double precision NOT NULL,
    top_rows          bigint,
    precision_top     double precision,
    lift_top          double precision,
    brier             double precision,
    calibration       jsonb,
    PRIMARY KEY (run_id, horizon_days)
);
