-- predictions becomes partitioned by run: each run loads and attaches its own partition
-- (see scorer.io.sink). Rows written before become one partition holding their run ids.
-- The view reads each model's latest run through a nested loop, so run-time partition
-- pruning scans only that run's partition (OFFSET 0 keeps the planner from flattening it
-- into a hash join over every partition); model_name comes from the run, so a filter on
-- it is pushed down.
DROP VIEW {s}.latest_predictions;
ALTER TABLE {s}.predictions RENAME TO predictions_v1;
ALTER INDEX {s}.predictions_pkey RENAME TO predictions_v1_pkey;
CREATE TABLE {s}.predictions (
    LIKE {s}.predictions_v1,
    PRIMARY KEY (run_id, entity_id)
) PARTITION BY LIST (run_id);
DO $migrate$
DECLARE
    run_ids text;
BEGIN
    SELECT string_agg(quote_literal(run_id), ', ') INTO run_ids
    FROM (SELECT DISTINCT run_id FROM {s}.predictions_v1) AS runs;
    IF run_ids IS NULL THEN
        DROP TABLE {s}.predictions_v1;
    ELSE
        EXECUTE format(
            'ALTER TABLE {s}.predictions ATTACH PARTITION {s}.predictions_v1'
            ' FOR VALUES IN (%s)', run_ids);
    END IF;
END
$migrate$;
CREATE VIEW {s}.latest_predictions AS
SELECT p.run_id, p.entity_id, p.score, p.label, latest.model_name, p.model_version,
       p.snapshot, p.scored_at
FROM (
    SELECT DISTINCT ON (model_name) run_id, model_name
    FROM {s}.scoring_runs
    WHERE status = 'succeeded'
    ORDER BY model_name, finished_at DESC, run_id DESC
) AS latest
CROSS JOIN LATERAL (
    SELECT * FROM {s}.predictions AS p WHERE p.run_id = latest.run_id OFFSET 0
) AS p;
