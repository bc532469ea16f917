-- Lineage (scorer.lineage). The MLflow run that records the scoring run, whether the
-- record is there (it is best effort after publish: 'missing' says MLflow failed, with the
-- error), and the OpenLineage run id of the run's events.
ALTER TABLE {s}.scoring_runs
    ADD COLUMN mlflow_record_run_id text,
    ADD COLUMN mlflow_record_status text
        CHECK (mlflow_record_status IN ('recorded', 'missing', 'disabled')),
    ADD COLUMN mlflow_record_error text,
    ADD COLUMN openlineage_run_id uuid;
