-- The reasons behind every score (scorer.model.reasons). Each predictions parent gains the
-- jsonb column reasons: per row the K inputs contributing most to its score, with their
-- contributions, [["contract", 0.31], ["tenure", -0.22]]; NULL for runs without reasons and
-- every run before this migration (adding a nullable column rewrites no partition). A run
-- records its K (reasons, NULL when off) and its entity column, which `scorer explain` needs
-- to read the entity's feature values. Each consumer view gains reasons as its last column:
-- its current definition, whatever the migrations before made it, with reasons appended to
-- both its select lists (CREATE OR REPLACE keeps the reader role's grants).
ALTER TABLE {s}.predictions ADD COLUMN reasons jsonb;
ALTER TABLE {s}.predictions_text ADD COLUMN reasons jsonb;
ALTER TABLE {s}.predictions_uuid ADD COLUMN reasons jsonb;
ALTER TABLE {s}.scoring_runs
    ADD COLUMN reasons integer CHECK (reasons > 0),
    ADD COLUMN entity_column text;
DO $migrate$
DECLARE
    view_name text;
    definition text;
    widened text;
BEGIN
    FOREACH view_name IN ARRAY ARRAY[
        'latest_predictions', 'published_predictions', 'latest_predictions_text',
        'published_predictions_text', 'latest_predictions_uuid', 'published_predictions_uuid'
    ] LOOP
        definition := pg_get_viewdef(format('%I.%I', {n}, view_name)::regclass);
        -- Both selects end with scored_at: the outer one, and the partition's (whose * the
        -- view froze into the parent's columns when it was made).
        widened := regexp_replace(
            definition, '(\w+)\.scored_at(\s+FROM\s)', '\1.scored_at, \1.reasons\2', 'g');
        IF array_length(regexp_split_to_array(widened, '\.reasons\M'), 1) <> 3 THEN
            RAISE EXCEPTION 'view %.% does not end both its selects with scored_at', {n},
                view_name;
        END IF;
        EXECUTE format('CREATE OR REPLACE VIEW %I.%I AS %s', {n}, view_name, widened);
    END LOOP;
END
$migrate$;
