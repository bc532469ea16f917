"""The pipeline a user would write first: read_sql the whole table, pyfunc predict, to_sql.

``python -m benchmarks.naive URL TRACKING_URI`` (run as a measured child process).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import mlflow.pyfunc
import pandas as pd
import sqlalchemy

from benchmarks.fixtures import ALIAS, ENTITY, FEATURES, MODEL_NAME, TABLE


def main(url: str, tracking_uri: str) -> int:
    mlflow.set_tracking_uri(tracking_uri)
    engine = sqlalchemy.create_engine(url)
    frame = pd.read_sql(f"SELECT * FROM {TABLE}", engine)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{ALIAS}")
    version = mlflow.MlflowClient().get_model_version_by_alias(MODEL_NAME, ALIAS).version
    scores = model.predict(frame[list(FEATURES)])
    out = pd.DataFrame({"entity_id": frame[ENTITY], "score": scores})
    out["label"] = (out["score"] >= 0.5).astype("int16")
    out["run_id"] = f"naive-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    out["model_name"] = MODEL_NAME
    out["model_version"] = int(version)
    out["snapshot"] = datetime.now(UTC).date().isoformat()
    out["scored_at"] = datetime.now(UTC)
    out.to_sql("naive_predictions", engine, schema="bench", if_exists="replace", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
