"""``python -m scorer demo``: the whole job in one command, no service to install.

Trains a small XGBoost churn model (categorical contract and payment columns) on synthetic
customers with text ids and three weekly snapshots, registers two versions in a local MLflow
registry (alias ``champion`` on the second), loads the table into an embedded PostgreSQL
(pgserver), scores the newest snapshot with the real scorer and prints what landed.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2.extensions
import structlog
from psycopg2 import sql

from scorer import logs
from scorer.config import RunSettings, load
from scorer.postgres import db, schema
from scorer.run import runner

MODEL_NAME = "churn"
SCHEMA, TABLE = "demo", "customers"
SNAPSHOTS = ("2026-11-15", "2026-11-22", "2026-11-29")
CATEGORIES = {
    "contract": ("Month-to-month", "One year", "Two year"),
    "payment_method": ("Electronic check", "Mailed check", "Bank transfer", "Credit card"),
}
NUMBERS = ("tenure", "monthly_charges", "support_calls")
COLUMNS = {
    "customer_id": "text",
    "snapshot_date": "date",
    "contract": "text",
    "payment_method": "text",
    "tenure": "integer",
    "monthly_charges": "numeric(8,2)",
    "support_calls": "integer",
}


def customers(rows: int, seed: int = 7) -> pd.DataFrame:
    """``rows`` customers (ids like ``4821-KXQPT``) in each of three snapshots, with ``churned``."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    ids = [f"{i:04d}-{''.join(rng.choice(letters, 5))}" for i in rng.permutation(rows)]
    frames = []
    for week, snapshot in enumerate(SNAPSHOTS):
        frame = pd.DataFrame(
            {
                "customer_id": ids,
                "snapshot_date": snapshot,
                "contract": rng.choice(CATEGORIES["contract"], rows, p=[0.55, 0.25, 0.2]),
                "payment_method": rng.choice(CATEGORIES["payment_method"], rows),
                "tenure": rng.integers(0, 72, rows) + week,
                "monthly_charges": rng.normal(65, 25, rows).clip(18, 120).round(2),
                "support_calls": rng.poisson(1.5, rows),
            }
        )
        logit = (
            -1.0
            - 0.05 * frame.tenure
            + 0.02 * (frame.monthly_charges - 65)
            + 0.4 * frame.support_calls
            + np.where(frame.contract == "Month-to-month", 1.5, -1.0)
            + np.where(frame.payment_method == "Electronic check", 0.6, 0.0)
        )
        frame["churned"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns: categories as pandas categoricals, numbers as floats."""
    inputs = pd.DataFrame(
        {name: pd.Categorical(frame[name], categories=CATEGORIES[name]) for name in CATEGORIES}
    )
    for name in NUMBERS:
        inputs[name] = frame[name].astype(np.float64)
    return inputs


def register_versions(tracking_uri: str, artifacts: Path, frame: pd.DataFrame) -> list[int]:
    """Train and register two categorical boosters; alias ``champion`` on the second.

    Their artifacts go to ``artifacts`` (a sqlite store's default experiment would put them in
    ``./mlruns`` of the working directory).
    """
    import mlflow  # noqa: PLC0415
    import xgboost  # noqa: PLC0415
    from mlflow.models import infer_signature  # noqa: PLC0415

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    experiment = mlflow.MlflowClient(tracking_uri).create_experiment(
        "demo", artifact_location=artifacts.as_uri()
    )
    inputs = model_inputs(frame)
    matrix = xgboost.DMatrix(inputs, label=frame.churned, enable_categorical=True)
    signature_sample = frame[list(CATEGORIES) + list(NUMBERS)].head(100)
    versions = []
    for index, rounds in enumerate((20, 60)):
        params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.2, "seed": index}
        booster = xgboost.train(params, matrix, num_boost_round=rounds)
        with mlflow.start_run(run_name=f"{MODEL_NAME}-v{index + 1}", experiment_id=experiment):
            info = mlflow.xgboost.log_model(
                booster,
                name="model",
                signature=infer_signature(signature_sample, np.zeros(len(signature_sample))),
                registered_model_name=MODEL_NAME,
            )
        versions.append(int(info.registered_model_version))
    mlflow.MlflowClient(tracking_uri).set_registered_model_alias(
        MODEL_NAME, "champion", str(versions[-1])
    )
    return versions


def load_table(conn: psycopg2.extensions.connection, frame: pd.DataFrame) -> None:
    """(Re)create ``demo.customers`` keyed by (customer_id, snapshot_date) and COPY it in."""
    table = sql.Identifier(SCHEMA, TABLE)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
        for name, kind in COLUMNS.items()
    )
    buffer = io.StringIO()
    frame[list(COLUMNS)].to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    with db.transaction(conn), conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        cur.execute(
            sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY (customer_id, snapshot_date))").format(
                table, columns
            )
        )
        cur.copy_expert(
            sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(table).as_string(conn), buffer
        )
        cur.execute(sql.SQL("CREATE INDEX ON {} (snapshot_date)").format(table))
        cur.execute(sql.SQL("ANALYZE {}").format(table))


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
            frame = customers(rows)
            print(f"registering two versions of {MODEL_NAME!r} in {tracking_uri}")
            versions = register_versions(tracking_uri, work / "artifacts", frame)
            print(
                f"alias champion -> version {versions[-1]}; loading {rows} customers x "
                f"{len(SNAPSHOTS)} snapshots"
            )
            conn = db.connect(url)
            load_table(conn, frame)
            conn.close()
            settings = load(
                RunSettings,
                database_url=url,
                tracking_uri=tracking_uri,
                model_name=MODEL_NAME,
                model_alias="champion",
                features_table=f"{SCHEMA}.{TABLE}",
                entity_column="customer_id",
                snapshot_column="snapshot_date",
                log_format="console",
            )
            conn = db.connect(url)
            schema.migrate(conn, settings.target_schema)
            conn.close()
            structlog.contextvars.bind_contextvars(run_id=settings.run_id, model_name=MODEL_NAME)
            code = runner.run(settings)
            if code:
                return code
            _print_results(url)
        finally:
            server.cleanup()
    return 0


def _print_results(url: str) -> None:
    """The run row, and the newest snapshot's top predictions."""
    conn = db.connect(url)
    try:
        runs = _query(
            conn,
            "SELECT run_id, status, model_name, model_selector, model_version, snapshot,"
            " rows_scored, round(score_mean::numeric, 4) AS score_mean,"
            " round(share_above_threshold::numeric, 4) AS share_above"
            " FROM scoring.scoring_runs",
        )
        sample = _query(
            conn,
            "SELECT entity_id, round(score::numeric, 4) AS score, label, model_version, snapshot"
            " FROM scoring.latest_predictions_text ORDER BY score DESC LIMIT 5",
        )
    finally:
        conn.close()
    print("\nscoring_runs:\n" + runs.to_string(index=False))
    print("\nlatest_predictions, top 5 by score:\n" + sample.to_string(index=False))


def _query(conn: psycopg2.extensions.connection, sql: str) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(sql)
        columns = [column.name for column in cur.description or ()]
        return pd.DataFrame(cur.fetchall(), columns=columns)
