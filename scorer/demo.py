"""``python -m scorer demo``: the whole job in one command, no service to install.

Trains a small XGBoost churn model on synthetic customers, registers two versions in a
local MLflow registry (alias ``champion`` on the second), loads the features into an
embedded PostgreSQL (pgserver), runs the real scorer and prints what landed.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import structlog

from scorer import db, logs, pipeline, schema
from scorer.config import RunSettings, load

FEATURES = (
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_calls",
    "contract_months",
    "late_payments",
    "data_usage_gb",
    "num_products",
)
MODEL_NAME = "churn"
TABLE = "demo.customers"


def synthetic_customers(rows: int, seed: int = 7) -> pd.DataFrame:
    """Customers with churn-like features and a ``churned`` label drawn from a known rule."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows)
    monthly = rng.normal(65, 20, rows).clip(15, 150)
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(1, rows + 1, dtype=np.int64),
            "tenure_months": tenure,
            "monthly_charges": monthly.round(2),
            "total_charges": (tenure * monthly).round(2),
            "support_calls": rng.poisson(1.5, rows),
            "contract_months": rng.choice([1, 12, 24], rows, p=[0.5, 0.3, 0.2]),
            "late_payments": rng.poisson(0.5, rows),
            "data_usage_gb": rng.gamma(2.0, 10.0, rows).round(1),
            "num_products": rng.integers(1, 5, rows),
        }
    )
    logit = (
        -1.0
        - 0.04 * frame.tenure_months
        + 0.02 * (frame.monthly_charges - 65)
        + 0.35 * frame.support_calls
        - 0.05 * frame.contract_months
        + 0.5 * frame.late_payments
        - 0.2 * frame.num_products
    )
    frame["churned"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return frame


def train(frame: pd.DataFrame, rounds: int = 50, depth: int = 4, seed: int = 0) -> Any:
    """A binary:logistic booster on ``FEATURES`` (probabilities out of the box)."""
    import xgboost  # noqa: PLC0415

    matrix = xgboost.DMatrix(
        frame[list(FEATURES)].astype(np.float32), label=frame.churned, feature_names=list(FEATURES)
    )
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.2, "seed": seed}
    return xgboost.train(params, matrix, num_boost_round=rounds)


def register_versions(
    tracking_uri: str, name: str, frame: pd.DataFrame, versions: int = 2, alias: str = "champion"
) -> list[int]:
    """Train and register ``versions`` versions of ``name``; point ``alias`` at the last."""
    import mlflow  # noqa: PLC0415
    import xgboost  # noqa: PLC0415
    from mlflow.models import infer_signature  # noqa: PLC0415

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    registered: list[int] = []
    sample = frame[list(FEATURES)].head(200).astype(np.float64)
    for index in range(versions):
        booster = train(frame, rounds=20 + 30 * index, seed=index)
        scores = booster.predict(xgboost.DMatrix(sample, feature_names=list(FEATURES)))
        with mlflow.start_run(run_name=f"{name}-v{index + 1}"):
            mlflow.log_params({"rounds": 20 + 30 * index, "seed": index})
            info = mlflow.xgboost.log_model(
                booster,
                name="model",
                signature=infer_signature(sample, scores),
                registered_model_name=name,
            )
        registered.append(int(info.registered_model_version))
    client.set_registered_model_alias(name, alias, str(registered[-1]))
    return registered


def load_features(url: str, table: str, frame: pd.DataFrame) -> None:
    """(Re)create ``table`` with the entity id and ``FEATURES`` and COPY ``frame`` into it."""
    schema_name = table.split(".", maxsplit=1)[0]
    columns = ", ".join(f"{name} double precision" for name in FEATURES)
    buffer = io.StringIO()
    frame[["customer_id", *FEATURES]].to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    conn = db.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {schema_name}")
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(f"CREATE TABLE {table} (customer_id bigint PRIMARY KEY, {columns})")
            cur.copy_expert(f"COPY {table} FROM STDIN (FORMAT csv)", buffer)
            cur.execute(f"ANALYZE {table}")
        conn.commit()
    finally:
        conn.close()


def main(rows: int = 10_000) -> int:
    """Run the demo end to end and print the run summary and a few predictions."""
    import pgserver  # noqa: PLC0415 - demo-only dependency

    logs.configure("console", "INFO")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    with tempfile.TemporaryDirectory(prefix="scorer-demo-") as workdir:
        work = Path(workdir)
        server = pgserver.get_server(str(work / "pg"), cleanup_mode="stop")
        try:
            url = server.get_uri()
            tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
            frame = synthetic_customers(rows)
            print(f"registering two versions of {MODEL_NAME!r} in {tracking_uri}")
            versions = register_versions(tracking_uri, MODEL_NAME, frame)
            print(f"alias champion -> version {versions[-1]}; loading {rows} customers")
            load_features(url, TABLE, frame)
            settings = load(
                RunSettings,
                database_url=url,
                tracking_uri=tracking_uri,
                model_name=MODEL_NAME,
                model_alias="champion",
                features_table=TABLE,
                entity_column="customer_id",
                log_format="console",
            )
            conn = db.connect(url)
            schema.migrate(conn, settings.target_schema)
            conn.close()
            structlog.contextvars.bind_contextvars(run_id=settings.run_id, model_name=MODEL_NAME)
            pipeline.run(settings)
            _print_results(url)
        finally:
            server.cleanup()
    return 0


def _print_results(url: str) -> None:
    conn = db.connect(url)
    try:
        runs = _query(
            conn,
            "SELECT run_id, status, model_name, model_selector, model_version, rows_scored,"
            " round(score_mean::numeric, 4) AS score_mean,"
            " round(share_above_threshold::numeric, 4) AS share_above"
            " FROM scoring.scoring_runs",
        )
        sample = _query(
            conn,
            "SELECT entity_id, round(score::numeric, 4) AS score, label, model_version, snapshot"
            " FROM scoring.latest_predictions ORDER BY score DESC LIMIT 5",
        )
    finally:
        conn.close()
    print("\nscoring_runs:\n" + runs.to_string(index=False))
    print("\nlatest_predictions, top 5 by score:\n" + sample.to_string(index=False))


def _query(conn: Any, sql: str) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(sql)
        return pd.DataFrame(cur.fetchall(), columns=[column.name for column in cur.description])
