-- Least privilege (scorer.postgres.privileges). The schema's owner (the migration role) owns
-- every run table too: a run creates, keys, publishes and drops its tables only through
-- these SECURITY DEFINER functions, which check their arguments, so the runtime role needs
-- no CREATE on the schema and can DROP, TRUNCATE or ALTER nothing. A run table's INSERT is
-- granted to the session's role until it is published. A refusal is SQLSTATE 42501
-- (insufficient_privilege). EXECUTE is revoked from PUBLIC; `scorer grant` grants it.
CREATE FUNCTION {s}.run_table_check(table_name text) RETURNS regclass
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    found regclass;
BEGIN
    SELECT c.oid INTO found FROM pg_class AS c
    WHERE c.relnamespace = '{s}'::regnamespace AND c.relname = table_name
      AND c.relkind = 'r' AND NOT c.relispartition
      AND table_name ~ '^predictions_[a-z0-9_]+$';
    IF found IS NULL THEN
        RAISE EXCEPTION 'not an unpublished run table of schema %: %', {n}, table_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN found;
END
$fn$;
CREATE FUNCTION {s}.run_table_parent(entity_type text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    CASE entity_type
        WHEN 'bigint' THEN RETURN 'predictions';
        WHEN 'text' THEN RETURN 'predictions_text';
        WHEN 'uuid' THEN RETURN 'predictions_uuid';
        ELSE RAISE EXCEPTION 'unknown entity type %', entity_type
            USING ERRCODE = 'insufficient_privilege';
    END CASE;
END
$fn$;
CREATE FUNCTION {s}.run_table_bound(value text, entity_type text, open_end text)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT CASE WHEN value IS NULL THEN open_end
                ELSE format('%L::%s', value,
                            CASE entity_type WHEN 'bigint' THEN 'int8' ELSE entity_type END)
           END
$fn$;
CREATE FUNCTION {s}.run_table_unshare(target regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT DISTINCT a.grantee::regrole::text
        FROM pg_class AS c CROSS JOIN LATERAL aclexplode(c.relacl) AS a
        WHERE c.oid = target AND a.grantee <> c.relowner AND a.grantee <> 0
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', target, grantee);
    END LOOP;
END
$fn$;
CREATE FUNCTION {s}.run_table_drop(table_name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    target regclass;
    made_for text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_class WHERE relnamespace = '{s}'::regnamespace
                   AND relname = table_name) THEN
        RETURN false;
    END IF;
    target := {s}.run_table_check(table_name);
    SELECT replace(substring(pg_get_expr(d.adbin, d.adrelid)
                             FROM '^''((?:[^'']|'''')*)''::text$'), '''''', '''')
    INTO made_for
    FROM pg_attrdef AS d JOIN pg_attribute AS a
        ON a.attrelid = d.adrelid AND a.attnum = d.adnum AND a.attname = 'run_id'
    WHERE d.adrelid = target;
    IF made_for IS NULL OR EXISTS (SELECT FROM {s}.scoring_runs AS r
                                   WHERE r.run_id = made_for AND r.status = 'succeeded') THEN
        RAISE EXCEPTION 'table %.% is not an unpublished run table', {n}, table_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE format('DROP TABLE %s', target);
    RETURN true;
END
$fn$;
CREATE FUNCTION {s}.run_table_create(
    table_name text, entity_type text, run_id text, model_name text,
    model_version integer, snapshot text, scored_at timestamptz,
    shard boolean DEFAULT false, range_lower text DEFAULT NULL,
    range_upper text DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    parent text := {s}.run_table_parent(entity_type);
    checks text;
BEGIN
    IF table_name !~ '^predictions_[a-z0-9_]+$' OR octet_length(table_name) > 63 THEN
        RAISE EXCEPTION 'not a run table name: %', table_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF shard THEN
        PERFORM {s}.run_table_drop(table_name);
        checks := format('CONSTRAINT scorer_run_id CHECK (run_id = %L)', run_id);
        IF range_lower IS NOT NULL OR range_upper IS NOT NULL THEN
            checks := checks || ', CONSTRAINT scorer_shard_range CHECK ('
                || concat_ws(' AND ',
                    'entity_id >= ' || {s}.run_table_bound(range_lower, entity_type, NULL),
                    'entity_id < ' || {s}.run_table_bound(range_upper, entity_type, NULL))
                || ')';
        END IF;
    ELSE
        checks := format('CHECK (run_id = %L)', run_id);
    END IF;
    EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I, %s)',
                   {n}, table_name, {n}, parent, checks);
    EXECUTE format(
        'ALTER TABLE %I.%I ALTER COLUMN run_id SET DEFAULT %L,'
        ' ALTER COLUMN model_name SET DEFAULT %L, ALTER COLUMN model_version SET DEFAULT %L,'
        ' ALTER COLUMN snapshot SET DEFAULT %L, ALTER COLUMN scored_at SET DEFAULT %L',
        {n}, table_name, run_id, model_name, model_version, snapshot, scored_at);
    IF session_user <> current_user THEN
        EXECUTE format('GRANT INSERT ON %I.%I TO %I', {n}, table_name, session_user);
    END IF;
END
$fn$;
CREATE FUNCTION {s}.run_table_add_key(table_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    EXECUTE format('ALTER TABLE %s ADD PRIMARY KEY (run_id, entity_id)',
                   {s}.run_table_check(table_name));
END
$fn$;
CREATE FUNCTION {s}.run_table_publish(table_name text, entity_type text, run_id text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    target regclass := {s}.run_table_check(table_name);
BEGIN
    EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %s FOR VALUES IN (%L)',
                   {n}, {s}.run_table_parent(entity_type), target, run_id);
    PERFORM {s}.run_table_unshare(target);
END
$fn$;
CREATE FUNCTION {s}.run_table_publish_shards(
    table_name text, entity_type text, run_id text,
    shard_tables text[], lowers text[], uppers text[]
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    parent text := {s}.run_table_parent(entity_type);
    part regclass;
BEGIN
    IF table_name !~ '^predictions_[a-z0-9_]+$' OR octet_length(table_name) > 63 THEN
        RAISE EXCEPTION 'not a run table name: %', table_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE format(
        'CREATE TABLE %I.%I (LIKE %I.%I, CONSTRAINT scorer_run_id CHECK (run_id = %L),'
        ' PRIMARY KEY (run_id, entity_id)) PARTITION BY RANGE (entity_id)',
        {n}, table_name, {n}, parent, run_id);
    FOR i IN 1 .. coalesce(cardinality(shard_tables), 0) LOOP
        part := {s}.run_table_check(shard_tables[i]);
        EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %s FOR VALUES FROM (%s) TO (%s)',
            {n}, table_name, part,
            {s}.run_table_bound(lowers[i], entity_type, 'MINVALUE'),
            {s}.run_table_bound(uppers[i], entity_type, 'MAXVALUE'));
        PERFORM {s}.run_table_unshare(part);
    END LOOP;
    EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES IN (%L)',
                   {n}, parent, {n}, table_name, run_id);
END
$fn$;
CREATE FUNCTION {s}.run_partition_drop(table_name text) RETURNS void
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
    -- Whatever the statuses say, a model's newest run (as latest_predictions ranks them)
    -- keeps its partition: only a newer published run lets it go.
    SELECT r.run_id INTO newest
    FROM regexp_matches(bound, '''((?:[^'']|'''')*)''', 'g') AS m
    JOIN {s}.scoring_runs AS r ON r.run_id = replace(m[1], '''''', '''')
    WHERE r.run_id = (SELECT l.run_id FROM {s}.scoring_runs AS l
                      WHERE l.model_name = r.model_name
                        AND l.status IN ('succeeded', 'pruned')
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
REVOKE ALL ON FUNCTION {s}.run_table_check(text), {s}.run_table_parent(text),
    {s}.run_table_bound(text, text, text), {s}.run_table_unshare(regclass),
    {s}.run_table_create(text, text, text, text, integer, text, timestamptz, boolean, text,
                         text),
    {s}.run_table_add_key(text), {s}.run_table_publish(text, text, text),
    {s}.run_table_publish_shards(text, text, text, text[], text[], text[]),
    {s}.run_table_drop(text), {s}.run_partition_drop(text)
FROM PUBLIC;
