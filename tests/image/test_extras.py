"""The image variant that carries a model's own libraries (``hack/image.sh --extra``): it runs
read-only as 10001 with compiled bytecode, imports them, and scores an sklearn pipeline."""

from __future__ import annotations

import secrets
import string
import warnings
from contextlib import closing
from io import StringIO
from typing import Any

import numpy as np
import pandas as pd
import psycopg2
import pytest

from tests.image.conftest import EXTRA_LIBRARIES
from tests.image.test_image import BYTECODE_PROBE, docker_run, inspect

pytestmark = pytest.mark.image

MODEL_NAME = "churn-sklearn-image"
FEATURES_TABLE = "features_sklearn.customers"
CUSTOMERS = 3_000
SAMPLED = 200
CONTRACTS = ("Month-to-month", "One year", "Two year")
FEATURES = ["contract", "tenure", "monthly_charges"]


def test_variant_imports_model_libraries_read_only(extras_image: str) -> None:
    result = docker_run(
        extras_image,
        "-c",
        "import sklearn, lightgbm, skops, scorer; print('ok')",
        docker_args=("--entrypoint", "python"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"

    config = inspect(extras_image)["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["python", "-m", "scorer"]
    extras = config["Labels"]["io.scorer.extra-packages"].split()
    assert [extra.split("==")[0] for extra in extras] == list(EXTRA_LIBRARIES)


def test_variant_bytecode_compiled_at_build_time(extras_image: str) -> None:
    result = docker_run(extras_image, "-c", BYTECODE_PROBE, docker_args=("--entrypoint", "python"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "0", result.stdout


def telco_customers(rows: int, seed: int) -> pd.DataFrame:
    """Telco-churn-like rows: text ids ('7590-VHVEG'), a text contract, numbers, a label."""
    rng = np.random.default_rng(seed)
    letters = np.array(list(string.ascii_uppercase))
    ids = [
        f"{number:04d}-{''.join(rng.choice(letters, 5))}"
        for number in rng.choice(10_000, size=rows, replace=False)
    ]
    contract = rng.choice(CONTRACTS, size=rows, p=[0.55, 0.25, 0.20])
    tenure = rng.integers(0, 73, size=rows)
    monthly = np.round(rng.uniform(18.0, 120.0, size=rows), 2)
    logit = (
        1.2 * (contract == "Month-to-month")
        - 1.0 * (contract == "Two year")
        - 0.04 * tenure
        + 0.015 * monthly
        - 0.8
    )
    churned = rng.random(rows) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "customer_id": ids,
            "contract": contract.astype(object),
            "tenure": tenure.astype(np.int64),
            "monthly_charges": monthly,
            "churned": churned.astype(np.int64),
        }
    )


def load_telco_table(url: str, frame: pd.DataFrame) -> None:
    """``features_sklearn.customers``: a text id and a text ``contract`` column."""
    buffer = StringIO()
    frame[["customer_id", *FEATURES]].to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA IF NOT EXISTS features_sklearn")
        cur.execute("DROP TABLE IF EXISTS features_sklearn.customers")
        cur.execute(
            "CREATE TABLE features_sklearn.customers (customer_id text PRIMARY KEY,"
            " contract text NOT NULL, tenure integer NOT NULL, monthly_charges double precision)"
        )
        cur.copy_expert("COPY features_sklearn.customers FROM STDIN (FORMAT csv)", buffer)
        cur.execute("ANALYZE features_sklearn.customers")
        conn.commit()


def register_pipeline(tracking_uri: str, frame: pd.DataFrame) -> tuple[Any, int]:
    """Train ColumnTransformer(OneHotEncoder(contract), scaled numbers) + LogisticRegression,
    log it with ``mlflow.sklearn.log_model`` and a signature, register it; return the fitted
    pipeline and its version."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features = frame[FEATURES]
    pipeline = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("contract", OneHotEncoder(handle_unknown="ignore"), ["contract"]),
                        ("numbers", StandardScaler(), ["tenure", "monthly_charges"]),
                    ]
                ),
            ),
            ("classifier", LogisticRegression(max_iter=1000)),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.fit(features, frame["churned"])
        signature = infer_signature(features, pipeline.predict(features))
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        with mlflow.start_run(run_name=MODEL_NAME):
            info = mlflow.sklearn.log_model(
                pipeline, name="model", signature=signature, registered_model_name=MODEL_NAME
            )
    inputs = {column.name: column.type.name for column in signature.inputs.inputs}
    assert inputs["contract"] == "string", inputs
    return pipeline, int(info.registered_model_version)


def test_variant_scores_an_sklearn_pipeline(
    extras_image: str, postgres_url: str, mlflow_uri: str
) -> None:
    """Probabilities of the pipeline's positive class, read-only as 10001, from a table with a
    text id and a text category column."""
    frame = telco_customers(CUSTOMERS, seed=7)
    load_telco_table(postgres_url, frame)
    pipeline, version = register_pipeline(mlflow_uri, frame)
    run_id = f"image-sklearn-{secrets.token_hex(4)}"
    env = {
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "SCORER_DATABASE_URL": postgres_url,
        "SCORER_MODEL_NAME": MODEL_NAME,
        "SCORER_MODEL_VERSION": str(version),
        "SCORER_FEATURES_TABLE": FEATURES_TABLE,
        "SCORER_ENTITY_COLUMN": "customer_id",
        "SCORER_RUN_ID": run_id,
    }

    result = docker_run(extras_image, "run", env=env, docker_args=("--network", "host"))

    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    with closing(psycopg2.connect(postgres_url)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT entity_id::text, score FROM scoring.predictions WHERE run_id = %s", (run_id,)
        )
        scores = dict(cur.fetchall())
    assert len(scores) == CUSTOMERS
    values = np.fromiter(scores.values(), dtype=np.float64)
    assert ((values > 0) & (values < 1)).all(), "scores must be probabilities in (0, 1)"

    sample = frame.sample(SAMPLED, random_state=1)
    expected = pipeline.predict_proba(sample[FEATURES])[:, 1]
    got = np.array([scores[customer] for customer in sample["customer_id"]])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
