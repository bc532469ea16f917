-- Real tables. Entity ids of any common key type: one parent per id type (bigint,
-- text, uuid), so consumers join back to their feature table without a cast. A run
-- records its id type, snapshot column, how its snapshot sorts, and what its score is.
-- "Latest" is the newest snapshot's latest succeeded run, so a backfill of an older
-- snapshot never displaces it; published_predictions* give every snapshot's published run.
-- Labels may be NULL (raw scores without a threshold).
--
-- The consumer views, per id type's parent (latest_predictions*, published_predictions*):
-- latest: per model, the newest snapshot's latest succeeded run. published: per (model,
-- snapshot), its latest succeeded run. Each reads the chosen run's partition through a
-- nested loop (OFFSET 0 keeps it from becoming a hash join over every partition).
DROP VIEW {s}.latest_predictions;
ALTER TABLE {s}.scoring_runs
    ADD COLUMN entity_type text NOT NULL DEFAULT 'bigint'
        CHECK (entity_type IN ('bigint', 'text', 'uuid')),
    ADD COLUMN snapshot_column text,
    ADD COLUMN snapshot_order text,
    ADD COLUMN score_kind text NOT NULL DEFAULT 'probability',
    ADD COLUMN score_method text,
    ADD COLUMN positive_class text,
    ADD COLUMN rows_rejected_by jsonb,
    ALTER COLUMN threshold DROP NOT NULL;
UPDATE {s}.scoring_runs SET snapshot_order = snapshot;
ALTER TABLE {s}.scoring_runs ALTER COLUMN snapshot_order SET NOT NULL;
CREATE INDEX scoring_runs_snapshot_idx
    ON {s}.scoring_runs (model_name, snapshot_order, finished_at)
    WHERE status = 'succeeded';
ALTER TABLE {s}.predictions ALTER COLUMN label DROP NOT NULL;
CREATE TABLE {s}.predictions_text (
    LIKE {s}.predictions, PRIMARY KEY (run_id, entity_id)
) PARTITION BY LIST (run_id);
ALTER TABLE {s}.predictions_text ALTER COLUMN entity_id TYPE text;
CREATE TABLE {s}.predictions_uuid (
    LIKE {s}.predictions, PRIMARY KEY (run_id, entity_id)
) PARTITION BY LIST (run_id);
ALTER TABLE {s}.predictions_uuid ALTER COLUMN entity_id TYPE uuid USING NULL;

CREATE VIEW {s}.latest_predictions AS
SELECT p.run_id, p.entity_id, p.score, p.label, latest.model_name, p.model_version,
       p.snapshot, p.scored_at
FROM (
    SELECT DISTINCT ON (model_name) run_id, model_name, entity_type
    FROM {s}.scoring_runs
    WHERE status = 'succeeded'
    ORDER BY model_name, snapshot_order DESC, finished_at DESC, run_id DESC
) AS latest
CROSS JOIN LATERAL (
    SELECT * FROM {s}.predictions AS p WHERE p.run_id = latest.run_id OFFSET 0
) AS p
WHERE latest.entity_type = 'bigint';
CREATE VIEW {s}.published_predictions AS
SELECT p.run_id, p.entity_id, p.score, p.label, runs.model_name, p.model_version,
       runs.snapshot, p.scored_at
FROM (
    SELECT DISTINCT ON (model_name, snapshot) run_id, model_name, snapshot, entity_type
    FROM {s}.scoring_runs
    WHERE status = 'succeeded'
    ORDER BY model_name, snapshot, finished_at DESC, run_id DESC
) AS runs
CROSS JOIN LATERAL (
    SELECT * FROM {s}.predictions AS p WHERE p.run_id = runs.run_id OFFSET 0
) AS p
WHERE runs.entity_type = 'bigint';

CREATE VIEW {s}.latest_predictions_text AS
SELECT p.run_id, p.entity_id, p.score, p.label, latest.model_name, p.model_version,
       p.snapshot, p.scored_at
FROM (
    SELECT DISTINCT ON (model_name) run_id, model_name, entity_type
    FROM {s}.scoring_runs
    WHERE status = 'succeeded'
    ORDER BY model_name, snapshot_order DESC, finished_at DESC, run_id DESC
) AS latest
CROSS JOIN LATERAL (
    SELECT * FROM {s}.predictions_text AS p WHERE p.run_id = latest.run_id OFFSET 0
) AS p
WHERE latest.entity_type = 'text';
CREATE VIEW {s}.published_predictions_text AS
SELECT p.run_id, p.entity_id, p.score, p.label, runs.model_name, p.model_version,
       runs.snapshot, p.scored_at
FROM (
    SELECT DISTINCT ON (model_name, snapshot) run_id, model_name, snapshot, entity_type
    FROM {s}.scoring_runs
    WHERE status = 'succeeded'
    ORDER BY model_name, snapshot, finished_at DESC, run_id DESC
) AS runs
CROSS JOIN LATERAL (
    SELECT * FROM {s}.predictions_text AS p WHERE p.run_id = runs.run_id OFFSET 0
) AS p
WHERE runs.entity_type = 'text';

CREATE VIEW {s}.latest_predictions_uuid AS
SELECT p.run_id, p.entity_id, p.score, p.label, latest.model_name, p.model_version,
       p.snapshot, p.scored_at
FROM (
    SELECT DISTINCT ON (model_name) run_id, model_name, entity_type
    FROM {s}.scoring_runs
    WHERE status = 'succeeded'
    ORDER BY model_name, snapshot_order DESC, finished_at DESC, run_id DESC
) AS latest
CROSS JOIN LATERAL (
    SELECT * FROM {s}.predictions_uuid AS p WHERE p.run_id = latest.run_id OFFSET 0
) AS p
WHERE latest.entity_type = 'uuid';
CREATE VIEW {s}.published_predictions_uuid AS
SELECT p.run_id, p.entity_id, p.score, p.label, runs.model_name, p.model_version,
       runs.snapshot, p.scored_at
FROM (
    SELECT DISTINCT ON (model_name, snapshot) run_id, model_name, snapshot, entity_type
    FROM {s}.scoring_runs
    WHERE status = 'succeeded'
    ORDER BY model_name, snapshot, finished_at DESC, run_id DESC
) AS runs
CROSS JOIN LATERAL (
    SELECT * FROM {s}.predictions_uuid AS p WHERE p.run_id = runs.run_id OFFSET 0
) AS p
WHERE runs.entity_type = 'uuid';
