"""The target tables and view, created and upgraded by ``scorer migrate``.

Migrations are an ordered list of SQL scripts applied under an advisory lock and
recorded in ``schema_migrations``; re-running ``migrate`` applies only what is missing.
"""

from __future__ import annotations

import structlog

from scorer.errors import NotMigratedError
from scorer.postgres import db, locks
from scorer.postgres.identifiers import quote_identifier

log = structlog.get_logger("scorer.schema")


def _views(kind: str, parent: str) -> str:
    """Migration 3's consumer views over one id type's parent (``latest_…``, ``published_…``).

    ``latest``: per model, the newest snapshot's latest succeeded run. ``published``: per
    (model, snapshot), its latest succeeded run. Each reads the chosen run's partition through
    a nested loop (``OFFSET 0`` keeps it from becoming a hash join over every partition).
    """
    suffix = parent.removeprefix("predictions")
    return f"""
    CREATE VIEW {{s}}.latest_predictions{suffix} AS
    SELECT p.run_id, p.entity_id, p.score, p.label, latest.model_name, p.model_version,
           p.snapshot, p.scored_at
    FROM (
        SELECT DISTINCT ON (model_name) run_id, model_name, entity_type
        FROM {{s}}.scoring_runs
        WHERE status = 'succeeded'
        ORDER BY model_name, snapshot_order DESC, finished_at DESC, run_id DESC
    ) AS latest
    CROSS JOIN LATERAL (
        SELECT * FROM {{s}}.{parent} AS p WHERE p.run_id = latest.run_id OFFSET 0
    ) AS p
    WHERE latest.entity_type = '{kind}';
    CREATE VIEW {{s}}.published_predictions{suffix} AS
    SELECT p.run_id, p.entity_id, p.score, p.label, runs.model_name, p.model_version,
           runs.snapshot, p.scored_at
    FROM (
        SELECT DISTINCT ON (model_name, snapshot) run_id, model_name, snapshot, entity_type
        FROM {{s}}.scoring_runs
        WHERE status = 'succeeded'
        ORDER BY model_name, snapshot, finished_at DESC, run_id DESC
    ) AS runs
    CROSS JOIN LATERAL (
        SELECT * FROM {{s}}.{parent} AS p WHERE p.run_id = runs.run_id OFFSET 0
    ) AS p
    WHERE runs.entity_type = '{kind}';
"""


_MIGRATIONS: tuple[str, ...] = (
    # 1: runs, predictions and the consumer view.
    """
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
    """,
    # 2: predictions becomes partitioned by run: each run loads and attaches its own partition
    # (see ``scorer.io.sink``). Rows written before become one partition holding their run ids.
    # The view reads each model's latest run through a nested loop, so run-time partition
    # pruning scans only that run's partition (OFFSET 0 keeps the planner from flattening it
    # into a hash join over every partition); model_name comes from the run, so a filter on
    # it is pushed down.
    """
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
    """,
    # 3: real tables. Entity ids of any common key type: one parent per id type (bigint,
    # text, uuid), so consumers join back to their feature table without a cast. A run
    # records its id type, snapshot column, how its snapshot sorts, and what its score is.
    # "Latest" is the newest snapshot's latest succeeded run, so a backfill of an older
    # snapshot never displaces it; published_predictions* give every snapshot's published run.
    # Labels may be NULL (raw scores without a threshold).
    """
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
    """
    + "".join(
        _views(kind, parent)
        for kind, parent in (
            ("bigint", "predictions"),
            ("text", "predictions_text"),
            ("uuid", "predictions_uuid"),
        )
    ),
    # 4: a year of nightly runs. Each run's evidence (score histogram, per-feature NULL and
    # empty shares) and its quality checks against the previous published run; an override's
    # reason; retention marks a run 'pruned' (its partition dropped, the row kept as history).
    """
    ALTER TABLE {s}.scoring_runs
        DROP CONSTRAINT scoring_runs_status_check,
        ADD CONSTRAINT scoring_runs_status_check
            CHECK (status IN ('running', 'succeeded', 'failed', 'pruned')),
        ADD COLUMN score_histogram jsonb,
        ADD COLUMN feature_stats jsonb,
        ADD COLUMN quality jsonb,
        ADD COLUMN quality_override text,
        ADD COLUMN pruned_at timestamptz;
    """,
    # 5: lineage (scorer.lineage.recorder). The MLflow run that records the scoring run, whether the
    # record is there (it is best effort after publish: 'missing' says MLflow failed, with the
    # error), and the OpenLineage run id of the run's events.
    """
    ALTER TABLE {s}.scoring_runs
        ADD COLUMN mlflow_record_run_id text,
        ADD COLUMN mlflow_record_status text
            CHECK (mlflow_record_status IN ('recorded', 'missing', 'disabled')),
        ADD COLUMN mlflow_record_error text,
        ADD COLUMN openlineage_run_id uuid;
    """,
    # 6: one run over many pods (scorer.run.shard_plan). The run row records its shard count, the
    # split every shard and retry reads (ranges of entity ids), the settings its results depend
    # on, and which shard failed it; each shard's own attempt, counts, timings and score
    # statistics (merged exactly at publish) live in scoring_run_shards.
    """
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
    """,
    # 7: a sharded run's copy of its model's files (scorer.model.run_copy), stored by the shard
    # that opens the run and loaded by the others; deleted when the run publishes or fails.
    """
    CREATE TABLE {s}.scoring_run_models (
        run_id    text PRIMARY KEY REFERENCES {s}.scoring_runs (run_id) ON DELETE CASCADE,
        files     bytea NOT NULL,
        sha256    text NOT NULL,
        stored_at timestamptz NOT NULL DEFAULT now()
    );
    """,
    # 8: least privilege (scorer.postgres.privileges). The schema's owner (the migration role) owns
    # every run table too: a run creates, keys, publishes and drops its tables only through
    # these SECURITY DEFINER functions, which check their arguments, so the runtime role needs
    # no CREATE on the schema and can DROP, TRUNCATE or ALTER nothing. A run table's INSERT is
    # granted to the session's role until it is published. A refusal is SQLSTATE 42501
    # (insufficient_privilege). EXECUTE is revoked from PUBLIC; `scorer grant` grants it.
    """
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
    """,
)

SCHEMA_VERSION = len(_MIGRATIONS)


def migrate(conn: db.Connection, schema: str, up_to: int = SCHEMA_VERSION) -> list[int]:
    """Create or upgrade the tables in ``schema`` up to ``up_to``, in one transaction.

    Returns the versions applied.
    """
    s = quote_identifier(schema)
    applied: list[int] = []
    with db.transaction(conn), conn.cursor() as cur:
        locks.acquire_for_transaction(cur, locks.migrate(schema))
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.schema_migrations ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute(f"SELECT coalesce(max(version), 0) FROM {s}.schema_migrations")
        current = db.one_value(cur)
        for version, script in enumerate(_MIGRATIONS, start=1):
            if current < version <= up_to:
                cur.execute(script.format(s=s, n=f"'{schema}'"))
                cur.execute(f"INSERT INTO {s}.schema_migrations (version) VALUES (%s)", (version,))
                applied.append(version)
    return applied


def require_migrated(conn: db.Connection, schema: str) -> None:
    """Raise ``NotMigratedError`` unless ``schema`` is at the current version."""
    table = f"{quote_identifier(schema)}.schema_migrations"
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (table,))
        version = 0
        if db.one_value(cur) is not None:
            cur.execute(f"SELECT coalesce(max(version), 0) FROM {table}")
            version = db.one_value(cur)
    if version < SCHEMA_VERSION:
        raise NotMigratedError(
            f"schema {schema!r} is at version {version}, scorer needs {SCHEMA_VERSION}: "
            "run `python -m scorer migrate`"
        )
