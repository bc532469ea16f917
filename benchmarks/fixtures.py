"""The benchmark's data: N rows of 20 features in PostgreSQL and a registered XGBoost model."""

from __future__ import annotations

import warnings
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2

FEATURES = tuple(f"f{index:02d}" for index in range(20))
TABLE = "bench.features"
ENTITY = "entity_id"
MODEL_NAME = "bench"
ALIAS = "champion"
TREES = 200
DEPTH = 6


def create_features(url: str, rows: int) -> None:
    """(Re)create ``bench.features``: bigint id (primary key) and 20 uniform float8 features."""
    columns = ", ".join(f"{name} double precision" for name in FEATURES)
    values = ", ".join("random()" for _ in FEATURES)
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT setseed(0.42)")
            cur.execute("CREATE SCHEMA IF NOT EXISTS bench")
            cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
            cur.execute(f"CREATE TABLE {TABLE} ({ENTITY} bigint NOT NULL, {columns})")
            cur.execute(
                f"INSERT INTO {TABLE} SELECT g, {values} FROM generate_series(1, %s) AS g", (rows,)
            )
            cur.execute(f"ALTER TABLE {TABLE} ADD PRIMARY KEY ({ENTITY})")
            cur.execute(f"VACUUM (FREEZE, ANALYZE) {TABLE}")  # hint bits set before any timing


def _labels(x: np.ndarray[Any, Any], rng: np.random.Generator) -> np.ndarray[Any, Any]:
    logit = (
        3 * (x[:, 0] - 0.5)
        + 2 * np.sin(6 * x[:, 1])
        - 2 * x[:, 2] * x[:, 3]
        + np.where(x[:, 4] > 0.7, 1.5, -0.5)
        + x[:, 5:20].sum(axis=1)
        - 7.5
    )
    return (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(np.int8)


def register_model(tracking_uri: str, workdir: Path, train_rows: int = 20_000) -> Path:
    """Train 200 trees of depth 6, register them with alias ``champion``; return the model file.

    The model file (native format) is what the predict stage loads, without MLflow.
    """
    import mlflow  # noqa: PLC0415
    import mlflow.xgboost  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415
    import xgboost  # noqa: PLC0415
    from mlflow.models import infer_signature  # noqa: PLC0415

    rng = np.random.default_rng(0)
    x = rng.random((train_rows, len(FEATURES)))
    matrix = xgboost.DMatrix(
        x.astype(np.float32), label=_labels(x, rng), feature_names=list(FEATURES)
    )
    booster = xgboost.train(
        {
            "objective": "binary:logistic",
            "max_depth": DEPTH,
            "eta": 0.1,
            "nthread": 2,
            "tree_method": "hist",
            "seed": 0,
        },
        matrix,
        num_boost_round=TREES,
    )
    path = workdir / "model.ubj"
    booster.save_model(str(path))
    sample = pd.DataFrame(x[:100], columns=list(FEATURES))
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run(run_name="benchmark"):
            info = mlflow.xgboost.log_model(
                booster,
                name="model",
                signature=infer_signature(sample, booster.inplace_predict(sample.to_numpy())),
                registered_model_name=MODEL_NAME,
            )
    mlflow.MlflowClient(tracking_uri).set_registered_model_alias(
        MODEL_NAME, ALIAS, str(info.registered_model_version)
    )
    return path
