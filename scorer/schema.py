"""The target tables and view, created and upgraded by ``scorer migrate``.

Migrations are an ordered list of SQL scripts applied under an advisory lock and
recorded in ``schema_migrations``; re-running ``migrate`` applies only what is missing.
"""

from __future__ import annotations

import structlog

from scorer import db
from scorer.errors import NotMigratedError
from scorer.identifiers import quote_identifier

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
    # (see ``scorer.sink``). Rows written before become one partition holding their run ids.
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
    # 5: lineage (scorer.lineage). The MLflow run that records the scoring run, whether the
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
    # 6: one run over many pods (scorer.shards). The run row records its shard count, the
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
    # 7: a sharded run's copy of its model's files (scorer.run_model), stored by the shard
    # that opens the run and loaded by the others; deleted when the run publishes or fails.
    """
    CREATE TABLE {s}.scoring_run_models (
        run_id    text PRIMARY KEY REFERENCES {s}.scoring_runs (run_id) ON DELETE CASCADE,
        files     bytea NOT NULL,
        sha256    text NOT NULL,
        stored_at timestamptz NOT NULL DEFAULT now()
    );
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
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"migrate:{schema}",))
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.schema_migrations ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute(f"SELECT coalesce(max(version), 0) FROM {s}.schema_migrations")
        current = db.one_value(cur)
        for version, script in enumerate(_MIGRATIONS, start=1):
            if current < version <= up_to:
                cur.execute(script.format(s=s))
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
