-- Shadow runs (scorer.run.shadow): a challenger scored on the champion's snapshot as a run
-- of its own, marked shadow, never published. The row records whose shadow it is and, on both
-- rows, the comparison of the two (scorer.run.compare). The consumer views are redefined
-- (CREATE OR REPLACE keeps the reader role's grants) to leave shadow runs out, and a model's
-- newest run, whose partition run_partition_drop never drops, is its newest run that is not a
-- shadow.
ALTER TABLE {s}.scoring_runs
    ADD COLUMN shadow boolean NOT NULL DEFAULT false,
    ADD COLUMN shadow_of text,
    ADD COLUMN comparison jsonb,
    ADD CONSTRAINT scoring_runs_shadow_of_check CHECK (shadow = (shadow_of IS NOT NULL));
CREATE OR REPLACE VIEW {s}.latest_predictions AS
SELECT p.run_id, p.entity_id, p.score, p.label, latest.model_name, p.model_version,
       p.snapshot, p.scored_at
FROM (
    SELECT DISTINCT ON (model_name) run_id, model_name, entity_type
    FROM {s}.scoring_runs
    WHERE status = 'succeeded' AND NOT shadow
    ORDER BY model_name, snapshot_order DESC, finished_at DESC, run_id DESC
) AS latest
CROSS JOIN LATERAL (
    SELECT * FROM {s}.predictions AS p WHERE p.run_id = latest.run_id OFFSET 0
) AS p
WHERE latest.entity_type = 'bigint';
CREATE OR REPLACE VIEW {s}.published_predictions AS
SELECT p.run_id, p.entity_id, p.score, p.label, runs.model_name, p.model_version,
       runs.snapshot, p.scored_at
FROM (
    SELECT DISTINCT ON (model_name, snapshot) run_id, model_name, snapshot, entity_type
    FROM {s}.scoring_runs
    WHERE status = 'succeeded' AND NOT shadow
    ORDER BY model_name, snapshot, finished_at DESC, run_id DESC
) AS runs
CROSS JOIN LATERAL (
    SELECT * FROM {s}.predictions AS p WHERE p.run_id = runs.run_id OFFSET 0
) AS p
WHERE runs.entity_type = 'bigint';
CREATE OR REPLACE VIEW {s}.latest_predictions_text AS
SELECT p.run_id, p.entity_id, p.score, p.label, latest.model_name, p.model_version,
       p.snapshot, p.scored_at
FROM (
    SELECT DISTINCT ON (model_name) run_id, model_name, entity_type
    FROM {s}.scoring_runs
    WHERE status = 'succeeded' AND NOT shadow
    ORDER BY model_name, snapshot_order DESC, finished_at DESC, run_id DESC
) AS latest
CROSS JOIN LATERAL (
    SELECT * FROM {s}.predictions_text AS p WHERE p.run_id = latest.run_id OFFSET 0
) AS p
WHERE latest.entity_type = 'text';
CREATE OR REPLACE VIEW {s}.published_predictions_text AS
SELECT p.run_id, p.entity_id, p.score, p.label, runs.model_name, p.model_version,
       runs.snapshot, p.scored_at
FROM (
    SELECT DISTINCT ON (model_name, snapshot) run_id, model_name, snapshot, entity_type
    FROM {s}.scoring_runs
    WHERE status = 'succeeded' AND NOT shadow
    ORDER BY model_name, snapshot, finished_at DESC, run_id DESC
) AS runs
CROSS JOIN LATERAL (
    SELECT * FROM {s}.predictions_text AS p WHERE p.run_id = runs.run_id OFFSET 0
) AS p
WHERE runs.entity_type = 'text';
CREATE OR REPLACE VIEW {s}.latest_predictions_uuid AS
SELECT p.run_id, p.entity_id, p.score, p.label, latest.model_name, p.model_version,
       p.snapshot, p.scored_at
FROM (
    SELECT DISTINCT ON (model_name) run_id, model_name, entity_type
    FROM {s}.scoring_runs
    WHERE status = 'succeeded' AND NOT shadow
    ORDER BY model_name, snapshot_order DESC, finished_at DESC, run_id DESC
) AS latest
CROSS JOIN LATERAL (
    SELECT * FROM {s}.predictions_uuid AS p WHERE p.run_id = latest.run_id OFFSET 0
) AS p
WHERE latest.entity_type = 'uuid';
CREATE OR REPLACE VIEW {s}.published_predictions_uuid AS
SELECT p.run_id, p.entity_id, p.score, p.label, runs.model_name, p.model_version,
       runs.snapshot, p.scored_at
FROM (
    SELECT DISTINCT ON (model_name, snapshot) run_id, model_name, snapshot, entity_type
    FROM {s}.scoring_runs
    WHERE status = 'succeeded' AND NOT shadow
    ORDER BY model_name, snapshot, finished_at DESC, run_id DESC
) AS runs
CROSS JOIN LATERAL (
    SELECT * FROM {s}.predictions_uuid AS p WHERE p.run_id = runs.run_id OFFSET 0
) AS p
WHERE runs.entity_type = 'uuid';
CREATE OR REPLACE FUNCTION {s}.run_partition_drop(table_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    target regclass;
    bound text;
    unpruned text;
    newest text;
BEGIN
    SELECT c.oid, pg_get_expr(c.relpartbound, c.oid) INTO target, bound
    FROM pg_class AS c
    JOIN pg_inherits AS i ON i.inhrelid = c.oid
    JOIN pg_class AS p ON p.oid = i.inhparent
    WHERE c.relnamespace = '{s}'::regnamespace AND c.relname = table_name
      AND p.relnamespace = '{s}'::regnamespace
      AND p.relname IN ('predictions', 'predictions_text', 'predictions_uuid');
    IF target IS NULL OR NOT starts_with(bound, 'FOR VALUES IN (') THEN
        RAISE EXCEPTION 'not a run partition of schema %: %', {n}, table_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT u.id INTO unpruned
    FROM regexp_matches(bound, '''((?:[^'']|'''')*)''', 'g') AS m
    CROSS JOIN LATERAL (SELECT replace(m[1], '''''', '''') AS id) AS u
    WHERE NOT EXISTS (SELECT FROM {s}.scoring_runs AS r
                      WHERE r.run_id = u.id AND r.status = 'pruned')
    LIMIT 1;
    IF unpruned IS NOT NULL THEN
        RAISE EXCEPTION 'partition %.% holds run %, which is not marked pruned',
            {n}, table_name, unpruned USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Whatever the statuses say, a model's newest run (as latest_predictions ranks them,
    -- shadow runs left out) keeps its partition: only a newer published run lets it go.
    SELECT r.run_id INTO newest
    FROM regexp_matches(bound, '''((?:[^'']|'''')*)''', 'g') AS m
    JOIN {s}.scoring_runs AS r ON r.run_id = replace(m[1], '''''', '''')
    WHERE r.run_id = (SELECT l.run_id FROM {s}.scoring_runs AS l
                      WHERE l.model_name = r.model_name
                        AND l.status IN ('succeeded', 'pruned')
                        AND NOT l.shadow
                      ORDER BY l.snapshot_order DESC, l.finished_at DESC, l.run_id DESC
                      LIMIT 1)
    LIMIT 1;
    IF newest IS NOT NULL THEN
        RAISE EXCEPTION 'partition %.% holds run %, the newest run of its model',
            {n}, table_name, newest USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE format('DROP TABLE %s', target);
END
$fn$;
