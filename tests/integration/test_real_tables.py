"""Real feature tables: id types, categorical inputs, every classifier flavor, snapshots.

Each test scores into a target schema of its own, so no test reads another's runs.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from contextlib import closing
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

from scorer.io import features
from scorer.io.features import ModelInput, Source
from scorer.postgres import schema
from scorer.postgres.identifiers import Relation
from tests.support import fixtures, services
from tests.support.stack import ChurnModel

pytestmark = pytest.mark.integration

TELCO = "features.telco"
TELCO_ROWS = 1_500
PLANTED = "ZQXPLANTED"


@pytest.fixture
def target(target_schema: str) -> str:
    """This test's own target schema (``tests/support/stack.py``)."""
    return target_schema


@pytest.fixture(scope="session")
def telco(postgres_url: str) -> pd.DataFrame:
    """``features.telco``: text ids, categories, numerics, three snapshots."""
    frame = fixtures.telco_customers(TELCO_ROWS)
    fixtures.load_telco(postgres_url, TELCO, frame)
    return frame


def newest(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame.snapshot_date == frame.snapshot_date.max()].reset_index(drop=True)


def telco_env(env: dict[str, str], model: str, target: str, **extra: str) -> dict[str, str]:
    return {
        **env,
        "SCORER_MODEL_NAME": model,
        "SCORER_MODEL_ALIAS": "champion",
        "SCORER_FEATURES_TABLE": TELCO,
        "SCORER_ENTITY_COLUMN": "customer_id",
        "SCORER_SNAPSHOT_COLUMN": "snapshot_date",
        "SCORER_TARGET_SCHEMA": target,
        "SCORER_RUN_ID": f"rt-{uuid.uuid4().hex[:10]}",
        **extra,
    }


def run_row(url: str, target: str, run_id: str) -> dict[str, Any]:
    with closing(services.psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT * FROM "{target}".scoring_runs WHERE run_id = %s', (run_id,))
        row = cur.fetchone()
        assert row is not None, f"no run row for {run_id}"
        return dict(zip([c.name for c in cur.description], row, strict=True))


def scores_of(url: str, target: str, run_id: str, table: str = "predictions_text") -> pd.Series:
    rows = services.query(
        url, f'SELECT entity_id, score FROM "{target}".{table} WHERE run_id = %s', (run_id,)
    )
    return pd.Series(dict(rows), dtype=np.float64)


def log_flavor(flavor: str, model: Any, features: pd.DataFrame, **kwargs: Any) -> Any:
    """Log ``model`` with its own flavor and a signature inferred the usual way."""
    module = getattr(mlflow, flavor)

    def log(name: str) -> Any:
        signature = infer_signature(features.head(50), kwargs.pop("output", None))
        return module.log_model(
            model, name="model", signature=signature, registered_model_name=name, **kwargs
        )

    return log


# --- trained once per session ------------------------------------------------------------


@pytest.fixture(scope="session")
def training(telco: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    return fixtures.telco_training(telco)


@pytest.fixture(scope="session")
def classifiers(mlflow_uri: str, training: tuple[pd.DataFrame, pd.Series]) -> Callable[[str], Any]:
    """``classifiers(flavor)``: trained and registered as ``rt-<flavor>`` on first use."""
    trained: dict[str, Any] = {}

    def get(flavor: str) -> Any:
        if flavor not in trained:
            features_, target = training
            model = fixtures.train_classifier(flavor, features_, target)
            fixtures.register(mlflow_uri, f"rt-{flavor}", log_flavor(flavor, model, features_))
            trained[flavor] = model
        return trained[flavor]

    return get


@pytest.fixture(scope="session")
def sklearn_model(classifiers: Callable[[str], Any]) -> Any:
    return classifiers("sklearn")


@pytest.fixture(scope="session")
def xgboost_categorical(classifiers: Callable[[str], Any]) -> Any:
    return classifiers("xgboost")


# --- flavors ------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", fixtures.CLASSIFIER_FLAVORS)
def test_each_flavor_scores_its_own_predict_proba(
    classifiers: Callable[[str], Any],
    scorer_env: dict[str, str],
    postgres_url: str,
    telco: pd.DataFrame,
    target: str,
    flavor: str,
) -> None:
    model, name = classifiers(flavor), f"rt-{flavor}"
    env = telco_env(scorer_env, name, target)
    result = services.run_scorer(env, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    frame = newest(telco)
    inputs, _ = fixtures.telco_training(frame)
    if flavor in fixtures.CATEGORY_FLAVORS:
        inputs = fixtures.as_categories(inputs)
    expected = pd.Series(model.predict_proba(inputs)[:, 1], index=frame.customer_id)
    got = scores_of(postgres_url, target, env["SCORER_RUN_ID"])
    assert len(got) == len(frame)
    sample = expected.sample(200, random_state=1).index
    np.testing.assert_allclose(got[sample], expected[sample], rtol=0, atol=1e-6)
    row = run_row(postgres_url, target, env["SCORER_RUN_ID"])
    assert row["entity_type"] == "text"
    assert row["snapshot"] == str(frame.snapshot_date.max())
    assert row["score_kind"] == "probability"
    assert row["positive_class"] == "1"
    assert "predict" in row["score_method"]
    # Consumers join back to their own table on the id, with no cast.
    joined = services.query(
        postgres_url,
        f'SELECT count(*) FROM "{target}".latest_predictions_text p JOIN {TELCO} f'
        " ON f.customer_id = p.entity_id AND f.snapshot_date::text = p.snapshot"
        " WHERE p.model_name = %s",
        (name,),
    )
    assert joined == [(len(frame),)]


@pytest.mark.parametrize(
    ("sql_type", "suffix"),
    [
        ("smallint", ""),
        ("integer", ""),
        ("bigint", ""),
        ("text", "_text"),
        ("varchar(40)", "_text"),
        ("uuid", "_uuid"),
    ],
)
def test_each_id_type_is_kept_and_joins_back_without_a_cast(
    scorer_env: dict[str, str],
    postgres_url: str,
    churn_model: ChurnModel,
    target: str,
    sql_type: str,
    suffix: str,
) -> None:
    frame = fixtures.synthetic_customers(800, seed=21)
    if suffix == "_text":
        frame["customer_id"] = [f"C-{i:05d}" for i in frame.customer_id]
    elif suffix == "_uuid":
        frame["customer_id"] = [str(uuid.UUID(int=i * 7919)) for i in frame.customer_id]
    table = f"features.ids_{sql_type.split('(', maxsplit=1)[0]}"
    types = {"customer_id": sql_type} | dict.fromkeys(fixtures.NUMERIC_FEATURES, "double precision")
    fixtures.load_table(postgres_url, table, frame, types, primary_key=("customer_id",))
    run_id = f"ids-{uuid.uuid4().hex[:8]}"
    env = {
        **scorer_env,
        "SCORER_FEATURES_TABLE": table,
        "SCORER_TARGET_SCHEMA": target,
        "SCORER_RUN_ID": run_id,
    }
    result = services.run_scorer(env, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    id_type = services.query(
        postgres_url,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attname = 'entity_id'",
        (f'"{target}".predictions{suffix}',),
    )
    assert id_type == [({"": "bigint", "_text": "text", "_uuid": "uuid"}[suffix],)]
    joined = services.query(
        postgres_url,
        f'SELECT count(*), count(DISTINCT f.customer_id) FROM "{target}".latest_predictions'
        f"{suffix} p JOIN {table} f ON f.customer_id = p.entity_id WHERE p.model_name = %s",
        (churn_model.name,),
    )
    assert joined == [(800, 800)]


# --- refused, never silently wrong ---------------------------------------------------------


def refused(result: Any, kind: str) -> dict[str, Any]:
    assert result.returncode == 2, result.stdout + result.stderr
    summary = services.json_lines(result.stdout)[-1]
    assert summary["kind"] == kind, summary
    return summary


def nothing_published(url: str, target: str, run_id: str) -> None:
    assert services.query(url, f'SELECT count(*) FROM "{target}".predictions_text') == [(0,)]
    assert services.query(url, f'SELECT count(*) FROM "{target}".predictions') == [(0,)]
    rows = services.query(
        url, f'SELECT status FROM "{target}".scoring_runs WHERE run_id = %s', (run_id,)
    )
    assert rows in ([], [("failed",)])


@pytest.fixture(scope="session")
def refused_models(mlflow_uri: str, training: tuple[pd.DataFrame, pd.Series]) -> dict[str, str]:
    """Models whose output is not a probability, registered under their names."""
    import xgboost

    features_, _ = training
    numbers = features_[list(fixtures.TELCO_NUMBERS)].astype(np.float64)
    regressor = xgboost.XGBRegressor(n_estimators=10).fit(numbers, numbers.monthly_charges * 9)
    fixtures.register(mlflow_uri, "rt-regressor", log_flavor("xgboost", regressor, numbers))
    for name, python_model in (
        ("rt-labels", fixtures.pyfunc_model(lambda x: (x["tenure"] < 12).astype(np.int64))),
        ("rt-float-labels", fixtures.pyfunc_model(lambda x: (x["tenure"] < 12) * 1.0)),
        ("rt-nan", fixtures.pyfunc_model(lambda x: np.where(x["tenure"] > 30, np.nan, 0.25))),
    ):
        fixtures.register(
            mlflow_uri,
            name,
            lambda registered, m=python_model: mlflow.pyfunc.log_model(
                name="model",
                python_model=m,
                signature=infer_signature(features_.head(20), np.zeros(20)),
                registered_model_name=registered,
            ),
        )
    return {"regressor": "rt-regressor", "labels": "rt-labels", "nan": "rt-nan"}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("rt-regressor", "does not give probabilities"),
        ("rt-labels", "labels"),
        ("rt-float-labels", "only 0 and 1"),
        ("rt-nan", "NaN"),
    ],
)
def test_output_that_is_not_a_probability_is_refused(
    scorer_env: dict[str, str],
    postgres_url: str,
    telco: pd.DataFrame,
    refused_models: dict[str, str],
    target: str,
    model: str,
    expected: str,
) -> None:
    env = telco_env(scorer_env, model, target)
    summary = refused(services.run_scorer(env, "run"), "model_output")
    assert expected in summary["error"]
    assert "predict_proba" in summary["error"] or "SCORER_SCORE_KIND" in summary["error"]
    nothing_published(postgres_url, target, env["SCORER_RUN_ID"])


def test_a_regressor_scores_raw_values_only_when_asked(
    scorer_env: dict[str, str],
    postgres_url: str,
    telco: pd.DataFrame,
    refused_models: dict[str, str],
    target: str,
) -> None:
    env = telco_env(scorer_env, "rt-regressor", target, SCORER_SCORE_KIND="raw")
    result = services.run_scorer(env, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    row = run_row(postgres_url, target, env["SCORER_RUN_ID"])
    assert (row["score_kind"], row["threshold"], row["score_p50"]) == ("raw", None, None)
    labels = services.query(
        postgres_url, f'SELECT count(label), max(score) FROM "{target}".predictions_text'
    )
    assert labels[0][0] == 0  # no threshold given: no labels
    assert labels[0][1] > 1.0


def test_an_empty_relation_never_publishes_and_keeps_the_previous_predictions(
    scorer_env: dict[str, str], postgres_url: str, churn_model: ChurnModel, target: str
) -> None:
    table = "features.sometimes_empty"
    fixtures.load_features(postgres_url, table, fixtures.synthetic_customers(100, seed=4))
    env = {**scorer_env, "SCORER_FEATURES_TABLE": table, "SCORER_TARGET_SCHEMA": target}
    first = services.run_scorer({**env, "SCORER_RUN_ID": "empty-1"}, "run")
    assert first.returncode == 0, first.stdout + first.stderr
    services.execute(postgres_url, f"TRUNCATE {table}")
    summary = refused(
        services.run_scorer({**env, "SCORER_RUN_ID": "empty-2"}, "run"), "empty_relation"
    )
    assert "no rows" in summary["error"]
    latest = services.query(
        postgres_url,
        f'SELECT run_id, count(*) FROM "{target}".latest_predictions GROUP BY run_id',
    )
    assert latest == [("empty-1", 100)]


def test_rejected_rows_are_counted_by_column_and_reason(
    scorer_env: dict[str, str],
    postgres_url: str,
    sklearn_model: Any,
    telco: pd.DataFrame,
    target: str,
) -> None:
    """``tenure`` as text with junk in it: rows are rejected by column, values never shown."""
    frame = newest(telco).copy()
    frame["tenure"] = frame["tenure"].astype(str)
    frame.loc[:9, "tenure"] = PLANTED
    types = fixtures.TELCO_TYPES | {"tenure": "text"}
    fixtures.load_table(postgres_url, "features.telco_junk", frame, types)
    env = telco_env(scorer_env, "rt-sklearn", target, SCORER_FEATURES_TABLE="features.telco_junk")
    result = services.run_scorer(env, "run")
    summary = refused(result, "rejected_rows")
    assert summary["rows_rejected_by"] == {"tenure: not a number": 10}
    assert "tenure: 10 rows not a number" in summary["error"]
    assert_never_shown(result, postgres_url, target)
    tolerant = {**env, "SCORER_MAX_REJECTED_RATIO": "0.1", "SCORER_RUN_ID": "junk-ok"}
    result = services.run_scorer(tolerant, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    row = run_row(postgres_url, target, "junk-ok")
    assert row["rows_rejected_by"] == {"tenure: not a number": 10}
    assert row["rows_scored"] == len(frame) - 10


def assert_never_shown(result: Any, url: str, target: str) -> None:
    assert PLANTED not in result.stdout
    assert PLANTED not in result.stderr
    errors = services.query(
        url, f"SELECT coalesce(string_agg(error, ''), '') FROM \"{target}\".scoring_runs"
    )
    assert PLANTED not in errors[0][0]


def test_an_unseen_category_fails_as_the_model_defines_without_showing_it(
    scorer_env: dict[str, str],
    postgres_url: str,
    xgboost_categorical: Any,
    telco: pd.DataFrame,
    target: str,
) -> None:
    """xgboost refuses a category it never saw; the message names the column, not the value."""
    frame = newest(telco).copy()
    frame.loc[3, "contract"] = PLANTED
    fixtures.load_telco(postgres_url, "features.telco_unseen", frame)
    env = telco_env(scorer_env, "rt-xgboost", target, SCORER_FEATURES_TABLE="features.telco_unseen")
    result = services.run_scorer(env, "run")
    summary = refused(result, "model_output")
    assert "contract" in summary["error"]
    assert_never_shown(result, postgres_url, target)
    nothing_published(postgres_url, target, env["SCORER_RUN_ID"])


def test_the_usual_integer_signature_scores_through_pyfunc_schema_enforcement(
    scorer_env: dict[str, str],
    postgres_url: str,
    mlflow_uri: str,
    training: tuple[pd.DataFrame, pd.Series],
    telco: pd.DataFrame,
    target: str,
) -> None:
    """``tenure: long`` (what infer_signature gives) reaches a pyfunc model as int64."""

    def probability(frame: pd.DataFrame) -> Any:
        assert frame["tenure"].dtype == np.int64
        return 1 / (1 + np.exp(-frame["tenure"].to_numpy() / 10 + 2))

    features_, _ = training
    fixtures.register(
        mlflow_uri,
        "rt-pyfunc-long",
        lambda registered: mlflow.pyfunc.log_model(
            name="model",
            python_model=fixtures.pyfunc_model(probability),
            signature=infer_signature(features_.head(20), np.zeros(20)),
            registered_model_name=registered,
        ),
    )
    env = telco_env(scorer_env, "rt-pyfunc-long", target)
    result = services.run_scorer(env, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    row = run_row(postgres_url, target, env["SCORER_RUN_ID"])
    assert row["model_flavor"] == "python_function"
    declared = {column["name"]: column["type"] for column in row["model_signature"]}
    assert declared["tenure"] == "long"


def test_a_column_whose_type_cannot_become_the_signature_type_fails_before_any_write(
    scorer_env: dict[str, str],
    postgres_url: str,
    sklearn_model: Any,
    telco: pd.DataFrame,
    target: str,
) -> None:
    frame = newest(telco).copy()
    frame["tenure"] = "2026-01-01"
    fixtures.load_table(
        postgres_url, "features.telco_date", frame, fixtures.TELCO_TYPES | {"tenure": "date"}
    )
    env = telco_env(scorer_env, "rt-sklearn", target, SCORER_FEATURES_TABLE="features.telco_date")
    for command in ("check", "run"):
        summary = refused(services.run_scorer(env, command), "schema_mismatch")
        assert "'tenure' is date" in summary["error"]
        assert "long" in summary["error"]
    assert services.query(postgres_url, f'SELECT count(*) FROM "{target}".scoring_runs') == [(0,)]


def test_snapshots_without_a_snapshot_column_name_a_duplicated_id(
    scorer_env: dict[str, str],
    postgres_url: str,
    sklearn_model: Any,
    telco: pd.DataFrame,
    target: str,
) -> None:
    env = telco_env(scorer_env, "rt-sklearn", target)
    del env["SCORER_SNAPSHOT_COLUMN"]
    summary = refused(services.run_scorer(env, "run"), "duplicate_entity")
    assert "SCORER_SNAPSHOT_COLUMN" in summary["error"]
    named = summary["error"].split("(e.g. '")[1].split("')")[0]
    assert named in set(telco.customer_id)
    nothing_published(postgres_url, target, env["SCORER_RUN_ID"])


def test_column_names_that_are_not_plain_identifiers_are_quoted_and_matched(
    scorer_env: dict[str, str], postgres_url: str, mlflow_uri: str, target: str
) -> None:
    import xgboost

    frame = fixtures.synthetic_customers(300, seed=8).rename(
        columns={"monthly_charges": "monthly charges", "support_calls": 'Support"Calls'}
    )
    names = [n for n in frame.columns if n not in ("customer_id", "churned")]
    model = xgboost.XGBClassifier(n_estimators=5).fit(frame[names], frame.churned)
    fixtures.register(mlflow_uri, "rt-odd-names", log_flavor("xgboost", model, frame[names]))
    types = {"customer_id": "bigint"} | dict.fromkeys(names, "double precision")
    fixtures.load_table(postgres_url, "features.odd_names", frame, types)
    env = {
        **scorer_env,
        "SCORER_MODEL_NAME": "rt-odd-names",
        "SCORER_FEATURES_TABLE": "features.odd_names",
        "SCORER_TARGET_SCHEMA": target,
    }
    for command in ("check", "run"):
        result = services.run_scorer(env, command)
        assert result.returncode == 0, result.stdout + result.stderr
    got = services.query(postgres_url, f'SELECT entity_id, score FROM "{target}".predictions')
    expected = model.predict_proba(frame[names])[:, 1]
    np.testing.assert_allclose([score for _, score in sorted(got)], expected, rtol=0, atol=1e-6)


# --- snapshots and backfills -----------------------------------------------------------------


def test_the_snapshot_filter_reads_through_the_index_or_partition_pruning(
    postgres_url: str,
) -> None:
    frame = fixtures.telco_customers(200, snapshots=[f"2026-{m:02d}-01" for m in range(1, 13)])
    fixtures.load_table(
        postgres_url,
        "features.telco_indexed",
        frame,
        fixtures.TELCO_TYPES,
        index=("snapshot_date",),
    )
    services.execute(
        postgres_url,
        "DROP TABLE IF EXISTS features.telco_parts;"
        " CREATE TABLE features.telco_parts (LIKE features.telco_indexed)"
        " PARTITION BY LIST (snapshot_date);"
        + "".join(
            f" CREATE TABLE features.telco_parts_{m} PARTITION OF features.telco_parts"
            f" FOR VALUES IN ('2026-{m:02d}-01');"
            for m in range(1, 13)
        )
        + " INSERT INTO features.telco_parts SELECT * FROM features.telco_indexed;"
        " ANALYZE features.telco_parts;",
    )
    inputs = tuple(ModelInput(n, "number", "double") for n in fixtures.TELCO_NUMBERS)
    with closing(services.psycopg2.connect(postgres_url)) as conn:
        for table, expected in (("telco_indexed", "Index"), ("telco_parts", "telco_parts_12")):
            source = Source(Relation("features", table), "customer_id", "snapshot_date")
            plan = features.plan(conn, source, inputs)
            assert plan.snapshot.label == "2026-12-01"  # the newest, by default
            query = plan.copy_sql.removeprefix("COPY (").removesuffix(") TO STDOUT (FORMAT binary)")
            with conn.cursor() as cur:
                cur.execute(f"EXPLAIN (FORMAT JSON) {query}")
                text = json.dumps(cur.fetchone()[0])
            assert "Seq Scan" not in text or expected.startswith("telco_parts"), text
            assert expected in text, text
            if table == "telco_parts":
                assert text.count("telco_parts_") == 1, text  # one partition of twelve


def test_latest_is_the_newest_snapshot_and_a_backfill_never_displaces_it(
    scorer_env: dict[str, str],
    postgres_url: str,
    sklearn_model: Any,
    telco: pd.DataFrame,
    target: str,
) -> None:
    env = telco_env(scorer_env, "rt-sklearn", target, SCORER_RUN_ID="nightly")
    result = services.run_scorer(env, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    oldest, middle, newest_ = fixtures.SNAPSHOTS
    result = services.run_scorer({**env, "SCORER_RUN_ID": "bf"}, "backfill", "--snapshots", oldest)
    assert result.returncode == 0, result.stdout + result.stderr
    latest = services.query(
        postgres_url,
        f'SELECT snapshot, count(*) FROM "{target}".latest_predictions_text GROUP BY snapshot',
    )
    assert latest == [(newest_, TELCO_ROWS)]
    published = services.query(
        postgres_url,
        f'SELECT run_id, count(*) FROM "{target}".published_predictions_text'
        " WHERE model_name = 'rt-sklearn' AND snapshot = %s GROUP BY run_id",
        (oldest,),
    )
    assert published == [(f"bf-{oldest}", TELCO_ROWS)]
    # A resumed backfill over the whole range skips what this version already published.
    result = services.run_scorer(
        {**env, "SCORER_RUN_ID": "bf2"}, "backfill", "--from", oldest, "--to", newest_
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = services.json_lines(result.stdout)
    skipped = [line["snapshot"] for line in lines if line["event"] == "backfill.skipped"]
    assert skipped == [oldest, newest_]
    runs = services.query(
        postgres_url,
        f'SELECT run_id, snapshot FROM "{target}".scoring_runs ORDER BY snapshot, run_id',
    )
    assert runs == [(f"bf-{oldest}", oldest), (f"bf2-{middle}", middle), ("nightly", newest_)]


def test_an_explicit_snapshot_with_no_rows_is_refused(
    scorer_env: dict[str, str],
    postgres_url: str,
    sklearn_model: Any,
    telco: pd.DataFrame,
    target: str,
) -> None:
    env = telco_env(scorer_env, "rt-sklearn", target, SCORER_SNAPSHOT="2025-01-01")
    summary = refused(services.run_scorer(env, "run"), "empty_relation")
    assert "2025-01-01" in summary["error"]
    env["SCORER_SNAPSHOT"] = "not-a-date"
    summary = refused(services.run_scorer(env, "run"), "schema_mismatch")
    assert "SCORER_SNAPSHOT" in summary["error"]


def test_the_upgrade_keeps_rows_written_by_the_previous_release(
    postgres_url: str, scorer_env: dict[str, str], churn_model: ChurnModel
) -> None:
    name = f"up_{uuid.uuid4().hex[:8]}"
    with closing(services.psycopg2.connect(postgres_url)) as conn:
        assert schema.migrate(conn, name, up_to=2) == [1, 2]
    services.execute(
        postgres_url,
        f'INSERT INTO "{name}".scoring_runs (run_id, status, model_name, model_selector,'
        " model_version, threshold, snapshot, features_relation, trigger, started_at,"
        " finished_at, scorer_version) VALUES ('old', 'succeeded', %s, 'alias:champion', 1,"
        " 0.5, '2026-11-30', 'features.customers', 'scheduled', now(), now(), '0.1.0');"
        f' CREATE TABLE "{name}".predictions_old (LIKE "{name}".predictions);'
        f" INSERT INTO \"{name}\".predictions_old SELECT 'old', g, 0.5, 1, %s, 1, '2026-11-30',"
        " now() FROM generate_series(1, 50) g;"
        f' ALTER TABLE "{name}".predictions ATTACH PARTITION "{name}".predictions_old'
        " FOR VALUES IN ('old');",
        (churn_model.name, churn_model.name),
    )
    result = services.run_scorer({**scorer_env, "SCORER_TARGET_SCHEMA": name}, "migrate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert services.json_lines(result.stdout)[-1]["applied"] == list(
        range(3, schema.SCHEMA_VERSION + 1)
    )
    latest = services.query(
        postgres_url, f'SELECT run_id, count(*) FROM "{name}".latest_predictions GROUP BY 1'
    )
    assert latest == [("old", 50)]
    result = services.run_scorer(
        {**scorer_env, "SCORER_TARGET_SCHEMA": name, "SCORER_RUN_ID": "new"}, "run"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    latest = services.query(
        postgres_url, f'SELECT run_id, count(*) FROM "{name}".latest_predictions GROUP BY 1'
    )
    assert latest == [("new", 5_000)]
    kept = services.query(
        postgres_url, f"SELECT count(*) FROM \"{name}\".predictions WHERE run_id = 'old'"
    )
    assert kept == [(50,)]
    services.execute(postgres_url, f'DROP SCHEMA "{name}" CASCADE')


@pytest.mark.parametrize(
    ("declared", "sql_type", "planted", "reason"),
    [
        # (the training dtype the signature declares, the column's SQL type, values, reason)
        (np.int64, "float8", [73914.5, 2.25, -0.5], "not an integer"),
        (np.int64, "int8", [2**60, -(2**60) - 1], "beyond 2**53, where float8 is no longer exact"),
        (np.int32, "numeric", [0.5, 12.75], "not an integer"),
        (np.int32, "int8", [2**31, -(2**31) - 1, 2**40], "beyond the range of integer"),
        (np.bool_, "numeric", [2, -1, 0.5], "not a boolean (0 or 1)"),
    ],
    ids=["long-fraction", "long-beyond-2**53", "integer-fraction", "integer-range", "boolean"],
)
def test_a_value_its_declared_type_cannot_hold_is_a_rejected_row_named_by_column(
    scorer_env: dict[str, str],
    postgres_url: str,
    mlflow_uri: str,
    training: tuple[pd.DataFrame, pd.Series],
    telco: pd.DataFrame,
    target: str,
    declared: type[np.generic],
    sql_type: str,
    planted: list[float],
    reason: str,
) -> None:
    """MLflow's schema enforcement would refuse these values; the scorer rejects their rows,
    names the column, exits 2 by default and publishes nothing."""
    column = "paperless" if declared is np.bool_ else "tenure"
    features_, _ = training
    signed = features_.astype({column: declared})
    name = f"rt-declared-{np.dtype(declared).name}"
    fixtures.register(
        mlflow_uri,
        name,
        lambda registered: mlflow.pyfunc.log_model(
            name="model",
            python_model=fixtures.pyfunc_model(lambda frame: np.full(len(frame), 0.5)),
            signature=infer_signature(signed.head(20), np.zeros(20)),
            registered_model_name=registered,
        ),
    )
    frame = newest(telco).copy()
    kind = np.int64 if sql_type.startswith("int") else np.float64  # as the column's text
    frame[column] = frame[column].astype(kind).astype(object)
    for row, value in enumerate(planted):
        frame.loc[row, column] = value
    table = f"features.telco_declared_{secrets.token_hex(3)}"
    fixtures.load_table(postgres_url, table, frame, fixtures.TELCO_TYPES | {column: sql_type})
    env = telco_env(scorer_env, name, target, SCORER_FEATURES_TABLE=table)
    result = services.run_scorer(env, "run")
    summary = refused(result, "rejected_rows")
    assert summary["rows_rejected_by"] == {f"{column}: {reason}": len(planted)}
    assert f"{column}: {len(planted)} rows {reason}" in summary["error"]
    nothing_published(postgres_url, target, env["SCORER_RUN_ID"])
    tolerant = {**env, "SCORER_MAX_REJECTED_RATIO": "0.5", "SCORER_RUN_ID": f"ok-{uuid.uuid4()}"}
    result = services.run_scorer(tolerant, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    row = run_row(postgres_url, target, tolerant["SCORER_RUN_ID"])
    assert (row["rows_scored"], row["rows_rejected"]) == (len(frame) - len(planted), len(planted))
