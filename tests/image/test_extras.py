"""The image variant that carries a model's own libraries (``hack/image.sh --extra``): it runs
read-only as 10001 with compiled bytecode, imports them, and scores an sklearn pipeline."""

from __future__ import annotations

import secrets
from contextlib import closing
from typing import Any

import numpy as np
import psycopg2
import pytest

from tests.image.conftest import EXTRA_LIBRARIES
from tests.image.test_image import BYTECODE_PROBE, docker_run, inspect
from tests.support import fixtures

pytestmark = pytest.mark.image

MODEL_NAME = "churn-sklearn-image"
FEATURES_TABLE = "features_sklearn.customers"
CUSTOMERS = 3_000
SAMPLED = 200


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


def test_variant_scores_an_sklearn_pipeline(
    extras_image: str, postgres_url: str, mlflow_uri: str, target_schema: str
) -> None:
    """Probabilities of the pipeline's positive class, read-only as 10001, from a table with a
    text id and text category columns (one snapshot of the Telco-shaped table)."""
    frame = fixtures.telco_customers(CUSTOMERS, snapshots=("2026-11-29",), seed=7)
    fixtures.load_telco(postgres_url, FEATURES_TABLE, frame)
    features, target = fixtures.telco_training(frame)
    pipeline = fixtures.sklearn_pipeline(features, target)

    def log(name: str) -> Any:
        import mlflow.sklearn
        from mlflow.models import infer_signature

        signature = infer_signature(features.head(50), pipeline.predict_proba(features.head(50)))
        return mlflow.sklearn.log_model(
            pipeline, name="model", signature=signature, registered_model_name=name
        )

    version = fixtures.register(mlflow_uri, MODEL_NAME, log, alias=None)
    run_id = f"image-sklearn-{secrets.token_hex(4)}"
    env = {
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "SCORER_DATABASE_URL": postgres_url,
        "SCORER_MODEL_NAME": MODEL_NAME,
        "SCORER_MODEL_VERSION": str(version),
        "SCORER_FEATURES_TABLE": FEATURES_TABLE,
        "SCORER_ENTITY_COLUMN": "customer_id",
        "SCORER_SNAPSHOT_COLUMN": "snapshot_date",
        "SCORER_TARGET_SCHEMA": target_schema,
        "SCORER_RUN_ID": run_id,
    }

    result = docker_run(extras_image, "run", env=env, docker_args=("--network", "host"))

    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    with closing(psycopg2.connect(postgres_url)) as conn, conn.cursor() as cur:
        cur.execute(
            f'SELECT entity_id, score FROM "{target_schema}".predictions_text WHERE run_id = %s',
            (run_id,),
        )
        scores = dict(cur.fetchall())
    assert len(scores) == CUSTOMERS
    values = np.fromiter(scores.values(), dtype=np.float64)
    assert ((values > 0) & (values < 1)).all(), "scores must be probabilities in (0, 1)"

    sample = frame.sample(SAMPLED, random_state=1)
    expected = pipeline.predict_proba(fixtures.telco_training(sample)[0])[:, 1]
    got = np.array([scores[customer] for customer in sample["customer_id"]])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
