"""The pipeline a user would write first: read_sql, predict, to_sql, all in memory.

``python -m benchmarks.naive URL TRACKING_URI CASE`` (run as a measured child process).
The numeric case predicts through pyfunc (an XGBoost booster's pyfunc returns its
probabilities). On the telco table pyfunc does not give probabilities: the categorical
booster's pyfunc refuses string columns, and a scikit-learn classifier's pyfunc returns
labels, so the naive pipeline there loads the model in its own flavor, as its user would.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import mlflow.pyfunc
import mlflow.sklearn
import mlflow.xgboost
import numpy as np
import pandas as pd
import sqlalchemy

from benchmarks.fixtures import ALIAS, CASES, CATEGORIES, FEATURES, TELCO_FEATURES, Case


def read(engine: sqlalchemy.Engine, case: Case) -> pd.DataFrame:
    """The whole relation, or its newest snapshot, in one DataFrame."""
    where = ""
    if case.snapshot_column is not None:
        column = case.snapshot_column
        where = f" WHERE {column} = (SELECT max({column}) FROM {case.table})"
    return pd.read_sql(f"SELECT * FROM {case.table}{where}", engine)


def predict(frame: pd.DataFrame, case: Case) -> np.ndarray:
    """Probabilities of the positive class for every row."""
    uri = f"models:/{case.model_name}@{ALIAS}"
    if case.shape == "numeric":
        return np.asarray(mlflow.pyfunc.load_model(uri).predict(frame[list(FEATURES)]))
    inputs = frame[list(TELCO_FEATURES)]
    if case.name == "telco-xgboost":
        import xgboost  # noqa: PLC0415

        booster = mlflow.xgboost.load_model(uri)
        categorical = inputs.astype(dict.fromkeys(CATEGORIES, "category"))
        return np.asarray(booster.predict(xgboost.DMatrix(categorical, enable_categorical=True)))
    return np.asarray(mlflow.sklearn.load_model(uri).predict_proba(inputs)[:, 1])


def main(url: str, tracking_uri: str, name: str) -> int:
    case = CASES[name]
    mlflow.set_tracking_uri(tracking_uri)
    engine = sqlalchemy.create_engine(url)
    frame = read(engine, case)
    scores = predict(frame, case)
    version = mlflow.MlflowClient().get_model_version_by_alias(case.model_name, ALIAS).version
    out = pd.DataFrame({"entity_id": frame[case.entity], "score": scores})
    out["label"] = (out["score"] >= 0.5).astype("int16")
    out["run_id"] = f"naive-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    out["model_name"] = case.model_name
    out["model_version"] = int(version)
    snapshot = datetime.now(UTC).date().isoformat()
    if case.snapshot_column is not None:
        snapshot = str(frame[case.snapshot_column].max())
    out["snapshot"] = snapshot
    out["scored_at"] = datetime.now(UTC)
    out.to_sql("naive_predictions", engine, schema="bench", if_exists="replace", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2], sys.argv[3]))
