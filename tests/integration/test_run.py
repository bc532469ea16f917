"""The scorer against a real PostgreSQL and a real MLflow tracking server."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import mlflow.xgboost
import numpy as np
import pytest
import xgboost
from mlflow import MlflowClient

from scorer.io.sink import partition_name
from scorer.postgres import schema
from scorer.postgres.identifiers import quote_identifier
from tests.support import services
from tests.support.fixtures import NUMERIC_FEATURES as FEATURES
from tests.support.fixtures import load_features, loaded_customers, synthetic_customers
from tests.support.stack import CUSTOMERS, FEATURES_TABLE, ChurnModel

pytestmark = pytest.mark.integration

BIG_TABLE = "features.customers_big"
BIG_ROWS = 600_000
DIRTY_VIEW = "features.customers_dirty"
DIRTY_REJECTED = CUSTOMERS // 100 + CUSTOMERS // 250
"""Rows of ``DIRTY_VIEW`` a run rejects (an infinite total or a non-numeric support count)."""


def new_run_id(prefix: str = "it") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run_row(url: str, target: str, run_id: str) -> dict[str, object] | None:
    with closing(services.psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT * FROM {quote_identifier(target)}.scoring_runs WHERE run_id = %s", (run_id,)
        )
        row = cur.fetchone()
        return (
            None if row is None else dict(zip([c.name for c in cur.description], row, strict=True))
        )


def prediction_count(url: str, target: str, run_id: str) -> int:
    return int(
        services.query(
            url,
            f"SELECT count(*) FROM {quote_identifier(target)}.predictions WHERE run_id = %s",
            (run_id,),
        )[0][0]
    )


def partition_bound(url: str, target: str, run_id: str) -> str | None:
    """The run's partition bound if its table exists (attached or not), else None."""
    rows = services.query(
        url,
        "SELECT coalesce(pg_get_expr(c.relpartbound, c.oid), 'detached') FROM pg_class c"
        " WHERE c.oid = to_regclass(%s)",
        (f"{quote_identifier(target)}.{partition_name(run_id)}",),
    )
    return str(rows[0][0]) if rows else None


def latest_runs(url: str, target: str) -> set[str]:
    return {
        row[0]
        for row in services.query(
            url,
            f"SELECT DISTINCT run_id FROM {quote_identifier(target)}.latest_predictions"
            " WHERE model_name = %s",
            ("churn-test",),
        )
    }


def latest_contents(url: str, target: str, model: str) -> list[tuple[str, int, int, int]]:
    """What ``latest_predictions`` holds for ``model``: (run id, version, rows, entities) each."""
    return [
        (str(run_id), int(version), int(rows), int(entities))
        for run_id, version, rows, entities in services.query(
            url,
            "SELECT run_id, model_version, count(*), count(DISTINCT entity_id)"
            f" FROM {quote_identifier(target)}.latest_predictions WHERE model_name = %s"
            " GROUP BY 1, 2 ORDER BY 1, 2",
            (model,),
        )
    ]


@pytest.fixture(scope="module")
def dirty_features(postgres_url: str) -> Iterator[str]:
    """``DIRTY_VIEW``: ``features.customers`` with ``DIRTY_REJECTED`` rows a run rejects."""
    services.execute(
        postgres_url,
        f"CREATE VIEW {DIRTY_VIEW} AS "
        "SELECT customer_id, tenure_months, monthly_charges,"
        " CASE WHEN customer_id % 100 = 0 THEN 'Infinity'::float8 ELSE total_charges END"
        " AS total_charges,"
        " CASE WHEN customer_id % 250 = 1 THEN 'n/a' ELSE support_calls::text END AS support_calls,"
        " contract_months, late_payments,"
        " CASE WHEN customer_id % 7 = 0 THEN NULL ELSE data_usage_gb END AS data_usage_gb,"
        " num_products FROM features.customers",
    )
    yield DIRTY_VIEW
    services.execute(postgres_url, f"DROP VIEW {DIRTY_VIEW}")


def assert_no_secret(result: subprocess.CompletedProcess[str], url: str) -> None:
    password = services.urlsplit(url).password
    assert password
    assert password not in result.stdout
    assert password not in result.stderr


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({"SCORER_MODEL_ALIAS": "champion"}, "champion"),
        ({"SCORER_MODEL_STAGE": "Production"}, "production"),
        ({"SCORER_MODEL_VERSION": "1"}, "version1"),
    ],
    ids=["alias", "stage", "version"],
)
def test_each_selector_scores_with_its_version(
    scorer_env: dict[str, str],
    churn_model: ChurnModel,
    postgres_url: str,
    target_schema: str,
    selector: dict[str, str],
    expected: str,
) -> None:
    version = {
        "champion": churn_model.champion,
        "production": churn_model.production,
        "version1": churn_model.versions[0],
    }[expected]
    env = {k: v for k, v in scorer_env.items() if k != "SCORER_MODEL_ALIAS"}
    run_id = new_run_id("sel")
    result = services.run_scorer({**env, **selector, "SCORER_RUN_ID": run_id}, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    row = run_row(postgres_url, target_schema, run_id)
    assert row is not None
    assert row["status"] == "succeeded"
    assert row["model_version"] == version
    assert row["model_selector"] == next(
        f"{k.removeprefix('SCORER_MODEL_').lower()}:{v}" for k, v in selector.items()
    )
    versions = services.query(
        postgres_url,
        f"SELECT model_version, count(*) FROM {quote_identifier(target_schema)}.predictions"
        " WHERE run_id = %s GROUP BY 1",
        (run_id,),
    )
    assert versions == [(version, CUSTOMERS)]
    assert_no_secret(result, postgres_url)


def test_lineage_and_statistics_are_exact(
    scorer_env: dict[str, str],
    churn_model: ChurnModel,
    postgres_url: str,
    target_schema: str,
    mlflow_uri: str,
) -> None:
    run_id = new_run_id("lineage")
    env = {
        **scorer_env,
        "SCORER_RUN_ID": run_id,
        "SCORER_SNAPSHOT": "2026-01-31",
        "SCORER_PREDICT_THREADS": "1",  # the default (every CPU) is what the image test runs
    }
    result = services.run_scorer(env, "run")
    assert result.returncode == 0, result.stdout + result.stderr

    row = run_row(postgres_url, target_schema, run_id)
    assert row is not None
    version = MlflowClient(mlflow_uri).get_model_version(
        churn_model.name, str(churn_model.champion)
    )
    assert row["mlflow_run_id"] == version.run_id
    assert row["model_source"] == version.source
    assert row["model_flavor"] == "xgboost"
    assert [column["name"] for column in row["model_signature"]] == list(FEATURES)
    assert {column["type"] for column in row["model_signature"]} == {"double"}
    assert row["snapshot"] == "2026-01-31"
    assert row["features_relation"] == FEATURES_TABLE
    assert row["trigger"] == "local"
    assert (row["rows_read"], row["rows_scored"], row["rows_rejected"]) == (CUSTOMERS, CUSTOMERS, 0)
    assert row["started_at"] <= row["finished_at"]
    assert row["scorer_version"] == "0.1.0"

    rows = services.query(
        postgres_url,
        "SELECT p.entity_id, p.score, p.label, p.model_name, p.model_version, p.snapshot,"
        " p.scored_at, "
        + ", ".join(f"f.{name}" for name in FEATURES)
        + f" FROM {quote_identifier(target_schema)}.predictions p"
        " JOIN features.customers f ON f.customer_id = p.entity_id"
        " WHERE p.run_id = %s ORDER BY p.entity_id",
        (run_id,),
    )
    assert len(rows) == CUSTOMERS
    assert {(r[3], r[4], r[5]) for r in rows} == {
        ("churn-test", churn_model.champion, "2026-01-31")
    }
    assert {r[6] for r in rows} == {row["started_at"]}

    booster = mlflow.xgboost.load_model(f"models:/{churn_model.name}/{churn_model.champion}")
    matrix = np.array([r[7:] for r in rows], dtype=np.float32)
    expected = booster.predict(xgboost.DMatrix(matrix, feature_names=list(FEATURES))).astype(
        np.float64
    )
    scores = np.array([r[1] for r in rows])
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    np.testing.assert_array_equal([r[2] for r in rows], (expected >= 0.5).astype(int))
    assert row["score_mean"] == pytest.approx(float(expected.mean()), rel=1e-9)
    assert row["score_p50"] == pytest.approx(
        float(np.quantile(expected, 0.5, method="inverted_cdf")), abs=1e-5
    )
    assert row["score_p90"] == pytest.approx(
        float(np.quantile(expected, 0.9, method="inverted_cdf")), abs=1e-5
    )
    assert row["share_above_threshold"] == pytest.approx(float((expected >= 0.5).mean()))

    lines = services.json_lines(result.stdout)
    names = [line["event"] for line in lines]
    for step in ("model.resolved", "features.checked", "batch.scored", "run.published"):
        assert step in names
    assert lines[names.index("model.loaded")]["predict_threads"] == 1
    assert names[-1] == "run.succeeded"
    assert all(line["run_id"] == run_id for line in lines)
    assert all(line["model_name"] == churn_model.name for line in lines)
    after_resolve = lines[names.index("model.resolved") :]
    assert all(line["model_version"] == churn_model.champion for line in after_resolve)
    assert lines[-1]["rows_scored"] == CUSTOMERS


def test_promotion_gate_refuses_and_writes_nothing(
    scorer_env: dict[str, str], churn_model: ChurnModel, postgres_url: str, target_schema: str
) -> None:
    env = {k: v for k, v in scorer_env.items() if k != "SCORER_MODEL_ALIAS"}
    run_id = new_run_id("gate")
    result = services.run_scorer(
        {
            **env,
            "SCORER_MODEL_VERSION": str(churn_model.production),
            "SCORER_REQUIRE_ALIAS": "champion",
            "SCORER_RUN_ID": run_id,
        },
        "run",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    last = services.json_lines(result.stdout)[-1]
    assert last["event"] == "run.failed"
    assert last["kind"] == "promotion_gate"
    assert "champion" in last["error"]
    assert run_row(postgres_url, target_schema, run_id) is None
    assert prediction_count(postgres_url, target_schema, run_id) == 0


def test_gate_passes_when_the_pinned_version_carries_the_alias(
    scorer_env: dict[str, str], churn_model: ChurnModel, postgres_url: str, target_schema: str
) -> None:
    env = {k: v for k, v in scorer_env.items() if k != "SCORER_MODEL_ALIAS"}
    run_id = new_run_id("gate-ok")
    result = services.run_scorer(
        {
            **env,
            "SCORER_MODEL_VERSION": str(churn_model.champion),
            "SCORER_REQUIRE_ALIAS": "champion",
            "SCORER_RUN_ID": run_id,
        },
        "run",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert prediction_count(postgres_url, target_schema, run_id) == CUSTOMERS


@pytest.mark.parametrize(
    ("override", "kind"),
    [
        ({"SCORER_MODEL_NAME": "no-such-model"}, "model_not_found"),
        ({"SCORER_MODEL_ALIAS": "no-such-alias"}, "model_not_found"),
        ({"SCORER_MODEL_ALIAS": "", "SCORER_MODEL_VERSION": "99"}, "model_not_found"),
        ({"SCORER_MODEL_VERSION": "1"}, "config"),
        ({"SCORER_FEATURES_TABLE": "features.nope"}, "schema_mismatch"),
        ({"SCORER_TARGET_SCHEMA": "not_migrated"}, "not_migrated"),
    ],
    ids=["name", "alias", "version", "two-selectors", "relation", "schema"],
)
def test_permanent_failures_exit_2_and_write_nothing(
    scorer_env: dict[str, str],
    postgres_url: str,
    target_schema: str,
    override: dict[str, str],
    kind: str,
) -> None:
    env = {**scorer_env, **override}
    env = {k: v for k, v in env.items() if v != ""}
    run_id = new_run_id("perm")
    result = services.run_scorer({**env, "SCORER_RUN_ID": run_id}, "run")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = services.json_lines(result.stdout)
    assert lines[-1]["event"] == "run.failed"
    assert lines[-1]["kind"] == kind
    assert [line["event"] for line in lines].count("run.failed") == 1
    assert run_row(postgres_url, target_schema, run_id) is None
    assert_no_secret(result, postgres_url)


def test_missing_signature_column_fails_before_any_write(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    services.execute(
        postgres_url,
        "CREATE OR REPLACE VIEW features.customers_no_calls AS "
        "SELECT customer_id, tenure_months, monthly_charges, total_charges, contract_months,"
        " late_payments, data_usage_gb, num_products FROM features.customers",
    )
    run_id = new_run_id("nocol")
    result = services.run_scorer(
        {
            **scorer_env,
            "SCORER_FEATURES_TABLE": "features.customers_no_calls",
            "SCORER_RUN_ID": run_id,
        },
        "run",
    )
    assert result.returncode == 2
    last = services.json_lines(result.stdout)[-1]
    assert last["kind"] == "schema_mismatch"
    assert "support_calls" in last["error"]
    assert "model.resolved" in services.events(result.stdout)
    assert run_row(postgres_url, target_schema, run_id) is None


def test_unusable_column_type_is_a_schema_mismatch(
    scorer_env: dict[str, str], postgres_url: str
) -> None:
    services.execute(
        postgres_url,
        "CREATE OR REPLACE VIEW features.customers_bad_type AS "
        "SELECT customer_id, tenure_months, monthly_charges, total_charges,"
        " now() AS support_calls, contract_months, late_payments, data_usage_gb, num_products"
        " FROM features.customers",
    )
    result = services.run_scorer(
        {**scorer_env, "SCORER_FEATURES_TABLE": "features.customers_bad_type"}, "check"
    )
    assert result.returncode == 2
    error = services.json_lines(result.stdout)[-1]["error"]
    assert "'support_calls' is timestamp with time zone" in error
    assert "double the model's signature declares" in error


def test_check_verifies_and_writes_nothing(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    run_id = new_run_id("check")
    result = services.run_scorer({**scorer_env, "SCORER_RUN_ID": run_id}, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert services.events(result.stdout)[-1] == "check.passed"
    assert run_row(postgres_url, target_schema, run_id) is None


def test_registry_down_is_retryable(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    run_id = new_run_id("down")
    result = services.run_scorer(
        {
            **scorer_env,
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{services.free_port()}",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "SCORER_RUN_ID": run_id,
        },
        "run",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    last = services.json_lines(result.stdout)[-1]
    assert last["event"] == "run.failed"
    assert last["exit_code"] == 1
    assert run_row(postgres_url, target_schema, run_id) is None


def test_database_down_is_retryable_and_password_never_logged(scorer_env: dict[str, str]) -> None:
    port = services.free_port()
    url = f"postgresql://scorer:Sup3r-s3cret-pw@127.0.0.1:{port}/scorer"
    for command in ("migrate", "run"):
        result = services.run_scorer(
            {**scorer_env, "SCORER_DATABASE_URL": url}, command, timeout=120
        )
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Sup3r-s3cret-pw" not in result.stdout + result.stderr
        assert "unreachable" in services.json_lines(result.stdout)[-1]["error"]


def test_rejected_rows_are_counted_and_the_ratio_enforced(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str, dirty_features: str
) -> None:
    rejected = DIRTY_REJECTED
    env = {**scorer_env, "SCORER_FEATURES_TABLE": dirty_features}

    strict_id = new_run_id("dirty-strict")
    strict = services.run_scorer({**env, "SCORER_RUN_ID": strict_id}, "run")
    assert strict.returncode == 2
    assert services.json_lines(strict.stdout)[-1]["kind"] == "rejected_rows"
    row = run_row(postgres_url, target_schema, strict_id)
    assert row is not None
    assert row["status"] == "failed"
    assert row["rows_rejected"] == rejected
    assert prediction_count(postgres_url, target_schema, strict_id) == 0
    assert partition_bound(postgres_url, target_schema, strict_id) is None

    lenient_id = new_run_id("dirty-ok")
    lenient = services.run_scorer(
        {**env, "SCORER_RUN_ID": lenient_id, "SCORER_MAX_REJECTED_RATIO": "0.05"}, "run"
    )
    assert lenient.returncode == 0, lenient.stdout
    row = run_row(postgres_url, target_schema, lenient_id)
    assert row is not None
    assert (row["rows_read"], row["rows_rejected"]) == (CUSTOMERS, rejected)
    assert prediction_count(postgres_url, target_schema, lenient_id) == CUSTOMERS - rejected


def test_duplicate_entity_ids_fail_permanently_and_leave_no_table(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    services.execute(
        postgres_url,
        "CREATE OR REPLACE VIEW features.customers_doubled AS SELECT * FROM features.customers"
        " UNION ALL SELECT * FROM features.customers WHERE customer_id <= 10",
    )
    run_id = new_run_id("doubled")
    env = {**scorer_env, "SCORER_FEATURES_TABLE": "features.customers_doubled"}
    result = services.run_scorer({**env, "SCORER_RUN_ID": run_id}, "run")
    assert result.returncode == 2, result.stdout
    last = services.json_lines(result.stdout)[-1]
    assert (last["event"], last["exit_code"]) == ("run.failed", 2)
    assert "duplicate entity ids" in last["error"]
    row = run_row(postgres_url, target_schema, run_id)
    assert row is not None
    assert row["status"] == "failed"
    assert prediction_count(postgres_url, target_schema, run_id) == 0
    assert partition_bound(postgres_url, target_schema, run_id) is None


def test_a_role_with_the_tables_but_not_the_publishing_functions_fails_before_writing(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    role = f"scorer_writer_{uuid.uuid4().hex[:8]}"
    dbname = services.urlsplit(postgres_url).path.lstrip("/")
    services.execute(postgres_url, f"CREATE ROLE {role} LOGIN PASSWORD 'writer-pw'")
    try:
        services.execute(
            postgres_url,
            f"GRANT CONNECT, TEMPORARY ON DATABASE {dbname} TO {role};"
            f" GRANT USAGE ON SCHEMA features TO {role};"
            f" GRANT SELECT ON ALL TABLES IN SCHEMA features TO {role};"
            f" GRANT USAGE, CREATE ON SCHEMA {quote_identifier(target_schema)} TO {role};"
            f" GRANT ALL ON ALL TABLES IN SCHEMA {quote_identifier(target_schema)} TO {role}",
        )
        parts = services.urlsplit(postgres_url)
        url = parts._replace(netloc=f"{role}:writer-pw@{parts.hostname}:{parts.port}").geturl()
        run_id = new_run_id("not-owner")
        result = services.run_scorer(
            {**scorer_env, "SCORER_DATABASE_URL": url, "SCORER_RUN_ID": run_id}, "run"
        )
        assert result.returncode == 2, result.stdout
        last = services.json_lines(result.stdout)[-1]
        assert last["kind"] == "database_privilege"
        # Every table privilege does not make a publisher: the schema's functions do (see
        # tests/integration/test_roles.py for the three roles).
        assert f"EXECUTE on function {target_schema}.run_table_publish" in last["error"]
        assert run_row(postgres_url, target_schema, run_id) is None  # nothing written
        assert partition_bound(postgres_url, target_schema, run_id) is None
    finally:
        services.execute(postgres_url, f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_concurrent_run_for_the_same_model_and_snapshot_is_refused(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str, churn_model: ChurnModel
) -> None:
    key = f"scorer:{target_schema}:{churn_model.name}:2026-02-01"
    with closing(services.psycopg2.connect(postgres_url)) as holder:
        holder.autocommit = True
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
        run_id = new_run_id("locked")
        result = services.run_scorer(
            {**scorer_env, "SCORER_RUN_ID": run_id, "SCORER_SNAPSHOT": "2026-02-01"}, "run"
        )
    assert result.returncode == 1
    last = services.json_lines(result.stdout)[-1]
    assert last["kind"] == "lock_busy"
    assert run_row(postgres_url, target_schema, run_id) is None


def test_migrate_is_idempotent(postgres_url: str, target_schema: str) -> None:
    env = {"SCORER_DATABASE_URL": postgres_url, "SCORER_TARGET_SCHEMA": target_schema}
    result = services.run_scorer(env, "migrate")
    assert result.returncode == 0, result.stdout
    assert services.json_lines(result.stdout)[-1]["applied"] == []
    with services.fresh_database("scorer_migrate") as url:
        first = services.run_scorer({"SCORER_DATABASE_URL": url}, "migrate")
        second = services.run_scorer({"SCORER_DATABASE_URL": url}, "migrate")
        assert services.json_lines(first.stdout)[-1]["applied"] == list(
            range(1, schema.SCHEMA_VERSION + 1)
        )
        assert services.json_lines(second.stdout)[-1]["applied"] == []
        tables = services.query(
            url,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'scoring'"
            " ORDER BY 1",
        )
        assert [t[0] for t in tables] == [
            "latest_predictions",
            "latest_predictions_text",
            "latest_predictions_uuid",
            "predictions",
            "predictions_text",
            "predictions_uuid",
            "published_predictions",
            "published_predictions_text",
            "published_predictions_uuid",
            "schema_migrations",
            "scoring_run_evaluations",
            "scoring_run_models",
            "scoring_run_shards",
            "scoring_runs",
        ]


@pytest.fixture(scope="module")
def big_table(postgres_url: str) -> Iterator[str]:
    with loaded_customers(postgres_url, BIG_TABLE, BIG_ROWS, seed=5) as table:
        yield table


def start_and_signal(env: dict[str, str], signum: int) -> tuple[int, str]:
    """Start a run, wait until it is streaming, send ``signum``; return exit code and stdout."""
    process = services.start_scorer(env, "run")
    assert process.stdout is not None
    seen: list[str] = []
    for line in process.stdout:
        seen.append(line)
        if '"batch.scored"' in line:
            process.send_signal(signum)
            break
    out, _ = process.communicate(timeout=120)
    return process.returncode, "".join(seen) + out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_killed_run_leaves_nothing_visible_and_its_retry_is_exact(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str, big_table: str, signum: int
) -> None:
    env = {
        **scorer_env,
        "SCORER_FEATURES_TABLE": big_table,
        "SCORER_CHUNK_ROWS": "1000",
        "SCORER_SNAPSHOT": f"kill-{signum}",
    }
    published_id = new_run_id("before-kill")
    first = services.run_scorer({**env, "SCORER_RUN_ID": published_id}, "run")
    assert first.returncode == 0, first.stdout

    run_id = new_run_id("killed")
    code, out = start_and_signal({**env, "SCORER_RUN_ID": run_id}, signum)
    row = run_row(postgres_url, target_schema, run_id)
    assert row is not None
    assert prediction_count(postgres_url, target_schema, run_id) == 0
    assert partition_bound(postgres_url, target_schema, run_id) is None  # not even unattached
    assert run_id not in latest_runs(postgres_url, target_schema)
    if signum == signal.SIGTERM:
        assert code == 1
        assert row["status"] == "failed"
        assert "SIGTERM" in str(row["error"])
        assert services.json_lines(out)[-1]["event"] == "run.failed"
    else:
        assert code == -signal.SIGKILL
        assert row["status"] == "running"

    retry = services.run_scorer({**env, "SCORER_RUN_ID": run_id}, "run")
    assert retry.returncode == 0, retry.stdout + retry.stderr
    row = run_row(postgres_url, target_schema, run_id)
    assert row is not None
    assert (row["status"], row["attempts"], row["rows_scored"]) == ("succeeded", 2, BIG_ROWS)
    assert prediction_count(postgres_url, target_schema, run_id) == BIG_ROWS
    distinct = services.query(
        postgres_url,
        f"SELECT count(DISTINCT entity_id) FROM {quote_identifier(target_schema)}.predictions"
        " WHERE run_id = %s",
        (run_id,),
    )
    assert distinct == [(BIG_ROWS,)]
    assert partition_bound(postgres_url, target_schema, run_id) == f"FOR VALUES IN ('{run_id}')"

    again = services.run_scorer({**env, "SCORER_RUN_ID": run_id}, "run")
    assert again.returncode == 0
    assert "run.already_succeeded" in services.events(again.stdout)
    assert prediction_count(postgres_url, target_schema, run_id) == BIG_ROWS


def test_latest_predictions_switches_only_when_a_run_succeeds(
    scorer_env: dict[str, str],
    postgres_url: str,
    target_schema: str,
    churn_model: ChurnModel,
    dirty_features: str,
) -> None:
    assert churn_model.champion != churn_model.production  # so the version tells the runs apart
    env = {**scorer_env, "SCORER_SNAPSHOT": "latest-switch"}
    assert latest_contents(postgres_url, target_schema, churn_model.name) == []

    first_id = new_run_id("latest-a")
    first = services.run_scorer({**env, "SCORER_RUN_ID": first_id}, "run")
    assert first.returncode == 0, first.stdout + first.stderr
    assert latest_runs(postgres_url, target_schema) == {first_id}
    first_only = [(first_id, churn_model.champion, CUSTOMERS, CUSTOMERS)]
    assert latest_contents(postgres_url, target_schema, churn_model.name) == first_only

    failing_id = new_run_id("latest-fail")
    failing = services.run_scorer(
        {**env, "SCORER_RUN_ID": failing_id, "SCORER_FEATURES_TABLE": dirty_features}, "run"
    )
    assert failing.returncode == 2, failing.stdout + failing.stderr
    assert services.json_lines(failing.stdout)[-1]["kind"] == "rejected_rows"
    failed = run_row(postgres_url, target_schema, failing_id)
    assert failed is not None
    assert failed["status"] == "failed"  # it got as far as a run row, and did not publish
    assert latest_runs(postgres_url, target_schema) == {first_id}
    assert latest_contents(postgres_url, target_schema, churn_model.name) == first_only

    second_id = new_run_id("latest-b")
    pinned = {k: v for k, v in env.items() if k != "SCORER_MODEL_ALIAS"}
    # Pinning another version is a deliberate model change: its scores shift past the quality
    # gate's PSI limit, so the run says why it may publish anyway, as a user would.
    second = services.run_scorer(
        {
            **pinned,
            "SCORER_MODEL_VERSION": str(churn_model.production),
            "SCORER_RUN_ID": second_id,
            "SCORER_QUALITY_OVERRIDE": "pinned the Production version on purpose",
        },
        "run",
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert latest_runs(postgres_url, target_schema) == {second_id}
    versions = services.query(
        postgres_url,
        f"SELECT DISTINCT model_version FROM {quote_identifier(target_schema)}.latest_predictions"
        " WHERE model_name = %s",
        (churn_model.name,),
    )
    assert versions == [(churn_model.production,)]
    assert latest_contents(postgres_url, target_schema, churn_model.name) == [
        (second_id, churn_model.production, CUSTOMERS, CUSTOMERS)
    ]
    assert prediction_count(postgres_url, target_schema, first_id) == CUSTOMERS


def partitions_read(plan: dict[str, Any]) -> set[str]:
    """Partitions of ``predictions`` an EXPLAIN ANALYZE plan actually scanned."""
    read: set[str] = set()
    if plan.get("Relation Name", "").startswith("predictions_") and plan.get("Actual Loops"):
        read.add(plan["Relation Name"])
    for child in plan.get("Plans", []):
        read |= partitions_read(child)
    return read


def test_latest_predictions_reads_only_the_latest_partition(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str, churn_model: ChurnModel
) -> None:
    target = quote_identifier(target_schema)
    env = {**scorer_env, "SCORER_SNAPSHOT": "pruning"}
    run_ids = [new_run_id("pruning"), new_run_id("pruning")]
    for run_id in run_ids:
        assert services.run_scorer({**env, "SCORER_RUN_ID": run_id}, "run").returncode == 0
    partitions = services.query(
        postgres_url,
        "SELECT 1 FROM pg_inherits WHERE inhparent = to_regclass(%s)",
        (f"{target}.predictions",),
    )
    assert len(partitions) >= len(run_ids)
    ((explained,),) = services.query(
        postgres_url,
        f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM {target}.latest_predictions"
        " WHERE model_name = %s",
        (churn_model.name,),
    )
    assert partitions_read(explained[0]["Plan"]) == {partition_name(run_ids[-1])}
    ((count,),) = services.query(
        postgres_url,
        f"SELECT count(*) FROM {target}.latest_predictions WHERE model_name = %s",
        (churn_model.name,),
    )
    assert count == CUSTOMERS


def test_upgrade_to_partitions_keeps_earlier_rows(scorer_env: dict[str, str]) -> None:
    """A database of its own, with the default target schema ``scoring``."""
    with services.fresh_database("scorer_upgrade") as url:
        with closing(services.psycopg2.connect(url)) as conn:
            assert schema.migrate(conn, "scoring", up_to=1) == [1]
        for run_id, age in (("v1-a", "2 hours"), ("v1-b", "1 hour")):
            services.execute(
                url,
                "INSERT INTO scoring.scoring_runs (run_id, status, model_name, model_selector,"
                " threshold, snapshot, features_relation, trigger, started_at, finished_at,"
                " scorer_version) VALUES (%s, 'succeeded', 'churn-test', 'version:1', 0.5,"
                " '2026-11-01',"
                " 'f', 'local', now() - %s::interval, now() - %s::interval, '0.1.0')",
                (run_id, age, age),
            )
            services.execute(
                url,
                "INSERT INTO scoring.predictions SELECT %s, g, 0.25, 0, 'churn-test', 1,"
                " '2026-11-01',"
                " now() FROM generate_series(1, 100) AS g",
                (run_id,),
            )

        upgraded = services.run_scorer({"SCORER_DATABASE_URL": url}, "migrate")
        assert services.json_lines(upgraded.stdout)[-1]["applied"] == list(
            range(2, schema.SCHEMA_VERSION + 1)
        )
        bounds = services.query(
            url,
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class"
            " WHERE oid = 'scoring.predictions_v1'::regclass",
        )
        assert bounds in (
            [("FOR VALUES IN ('v1-a', 'v1-b')",)],
            [("FOR VALUES IN ('v1-b', 'v1-a')",)],  # migration 2 lists run ids unordered
        )
        assert services.query(url, "SELECT count(*) FROM scoring.predictions") == [(200,)]
        assert latest_runs(url, "scoring") == {"v1-b"}

        load_features(url, FEATURES_TABLE, synthetic_customers(300, seed=3))
        run_id = new_run_id("after-upgrade")
        env = {
            **scorer_env,
            "SCORER_DATABASE_URL": url,
            "SCORER_TARGET_SCHEMA": "scoring",
            "SCORER_RUN_ID": run_id,
        }
        result = services.run_scorer(env, "run")
        assert result.returncode == 0, result.stdout
        assert latest_runs(url, "scoring") == {run_id}
        assert prediction_count(url, "scoring", run_id) == 300
        assert prediction_count(url, "scoring", "v1-a") == 100
