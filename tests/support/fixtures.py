"""Where the tests' data comes from: synthetic customers, the models trained on them, loaders.

The integration, image, e2e and benchmark suites share these. Tables are created with
quoted identifiers (``psycopg2.sql``), and every model is real: trained here with its own
library and logged with its own MLflow flavor.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psycopg2
from psycopg2 import sql

NUMERIC_FEATURES = (
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_calls",
    "contract_months",
    "late_payments",
    "data_usage_gb",
    "num_products",
)
CATEGORICAL = ("contract", "payment_method")
TELCO_NUMBERS = ("tenure", "monthly_charges", "total_charges", "paperless")
TELCO_FEATURES = (*CATEGORICAL, *TELCO_NUMBERS)
CONTRACTS = ("Month-to-month", "One year", "Two year")
PAYMENTS = ("Electronic check", "Mailed check", "Bank transfer", "Credit card")
SNAPSHOTS = ("2026-10-01", "2026-10-08", "2026-10-15")


def synthetic_customers(rows: int, seed: int = 7) -> pd.DataFrame:
    """Integer-id customers with numeric churn features and a ``churned`` label."""
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


def telco_customers(rows: int, snapshots: Sequence[str] = SNAPSHOTS, seed: int = 5) -> pd.DataFrame:
    """A Telco-shaped table: text ids like ``7590-VHVEG``, categories, one row per snapshot."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    ids = [
        f"{number:04d}-{''.join(rng.choice(letters, 5))}"
        for number in rng.choice(10_000, rows, replace=False)
    ]
    frames = []
    for index, snapshot in enumerate(snapshots):
        tenure = rng.integers(0, 72, rows) + index
        monthly = rng.normal(65, 25, rows).clip(18, 120).round(2)
        contract = rng.choice(CONTRACTS, rows, p=[0.55, 0.25, 0.2])
        frame = pd.DataFrame(
            {
                "customer_id": ids,
                "snapshot_date": pd.Timestamp(snapshot).date(),
                "contract": contract,
                "payment_method": rng.choice(PAYMENTS, rows),
                "paperless": rng.random(rows) < 0.6,
                "tenure": tenure,
                "monthly_charges": monthly,
                "total_charges": (tenure * monthly).round(2),
            }
        )
        logit = (
            -0.5
            - 0.05 * frame.tenure
            + 0.02 * (frame.monthly_charges - 65)
            + np.where(frame.contract == "Month-to-month", 1.5, -1.0)
            + np.where(frame.payment_method == "Electronic check", 0.6, 0.0)
        )
        frame["churned"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


TELCO_TYPES = {
    "customer_id": "text",
    "snapshot_date": "date",
    "contract": "text",
    "payment_method": "text",
    "paperless": "boolean",
    "tenure": "integer",
    "monthly_charges": "numeric(8,2)",
    "total_charges": "numeric",
}


def load_table(
    url: str,
    table: str,
    frame: pd.DataFrame,
    types: dict[str, str],
    primary_key: Sequence[str] = (),
    index: Sequence[str] = (),
) -> None:
    """(Re)create ``schema.table`` with ``types`` (column -> SQL type) and COPY ``frame`` in."""
    schema_name, table_name = table.split(".")
    qualified = sql.Identifier(schema_name, table_name)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in types.items()
    )
    buffer = io.StringIO()
    frame[list(types)].to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    with closing(psycopg2.connect(url)) as conn:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema_name))
            )
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(qualified))
            cur.execute(sql.SQL("CREATE TABLE {} ({})").format(qualified, columns))
            cur.copy_expert(
                sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(qualified).as_string(conn),
                buffer,
            )
            if primary_key:
                keys = sql.SQL(", ").join(map(sql.Identifier, primary_key))
                cur.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(qualified, keys))
            if index:
                keys = sql.SQL(", ").join(map(sql.Identifier, index))
                cur.execute(sql.SQL("CREATE INDEX ON {} ({})").format(qualified, keys))
            cur.execute(sql.SQL("ANALYZE {}").format(qualified))
        conn.commit()


@contextmanager
def loaded_customers(url: str, table: str, rows: int, seed: int) -> Iterator[str]:
    """``rows`` of ``synthetic_customers`` in ``table`` for a while; the table dropped after."""
    load_features(url, table, synthetic_customers(rows, seed=seed))
    try:
        yield table
    finally:
        with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE {table}")


def load_features(url: str, table: str, frame: pd.DataFrame) -> None:
    """The integer-id table of ``synthetic_customers``: bigint key, float8 features."""
    types = {"customer_id": "bigint"} | dict.fromkeys(NUMERIC_FEATURES, "double precision")
    load_table(url, table, frame, types, primary_key=("customer_id",))


def load_telco(url: str, table: str, frame: pd.DataFrame) -> None:
    """The Telco-shaped table, keyed by (customer_id, snapshot_date) like a snapshot ETL."""
    load_table(url, table, frame, TELCO_TYPES, primary_key=("customer_id", "snapshot_date"))


def train_booster(frame: pd.DataFrame, rounds: int = 50, depth: int = 4, seed: int = 0) -> Any:
    """A binary:logistic booster on ``NUMERIC_FEATURES`` (probabilities out of the box)."""
    import xgboost

    matrix = xgboost.DMatrix(
        frame[list(NUMERIC_FEATURES)].astype(np.float32),
        label=frame.churned,
        feature_names=list(NUMERIC_FEATURES),
    )
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.2, "seed": seed}
    return xgboost.train(params, matrix, num_boost_round=rounds)


@dataclass(frozen=True)
class Registered:
    """A model logged and registered through the server, and the object that predicts locally."""

    name: str
    version: int
    model: Any


def register(
    tracking_uri: str, name: str, log: Callable[[str], Any], alias: str | None = "champion"
) -> int:
    """Run ``log(registered_name)`` in a new MLflow run; point ``alias`` at the new version."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run(run_name=name):
            info = log(name)
    version = int(info.registered_model_version)
    if alias is not None:
        mlflow.MlflowClient(tracking_uri).set_registered_model_alias(name, alias, str(version))
    return version


def register_versions(
    tracking_uri: str, name: str, frame: pd.DataFrame, versions: int = 2, alias: str = "champion"
) -> list[int]:
    """Register ``versions`` boosters of ``name`` (more rounds each); ``alias`` on the last."""
    import mlflow
    import xgboost
    from mlflow.models import infer_signature

    sample = frame[list(NUMERIC_FEATURES)].head(200).astype(np.float64)
    registered: list[int] = []
    for index in range(versions):
        booster = train_booster(frame, rounds=20 + 30 * index, seed=index)
        scores = booster.predict(xgboost.DMatrix(sample, feature_names=list(NUMERIC_FEATURES)))

        def log(registered_name: str, booster: Any = booster, scores: Any = scores) -> Any:
            return mlflow.xgboost.log_model(
                booster,
                name="model",
                signature=infer_signature(sample, scores),
                registered_model_name=registered_name,
            )

        registered.append(register(tracking_uri, name, log, alias=None))
    mlflow.MlflowClient(tracking_uri).set_registered_model_alias(name, alias, str(registered[-1]))
    return registered


def telco_training(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series[Any]]:
    """The Telco features as a model trains on them (strings as strings) and the label."""
    features = frame[list(TELCO_FEATURES)].copy()
    features["tenure"] = features["tenure"].astype(np.int64)
    features["monthly_charges"] = features["monthly_charges"].astype(np.float64)
    features["total_charges"] = features["total_charges"].astype(np.float64)
    return features, frame["churned"]


def as_categories(features: pd.DataFrame) -> pd.DataFrame:
    """``features`` with the string columns as pandas categoricals (xgboost, lightgbm)."""
    out = features.copy()
    for name in CATEGORICAL:
        out[name] = pd.Categorical(out[name])
    return out


def sklearn_pipeline(features: pd.DataFrame, target: pd.Series[Any]) -> Any:
    """ColumnTransformer(OneHotEncoder on the strings, scaling the numbers) + LogisticRegression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer(
        [
            ("strings", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
            ("numbers", StandardScaler(), list(TELCO_NUMBERS)),
        ]
    )
    pipeline = Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=500))])
    return pipeline.fit(features, target)


def pyfunc_model(predict: Callable[[pd.DataFrame], Any]) -> Any:
    """A custom pyfunc model whose ``predict`` is ``predict(model_input)`` (cloudpickled)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow comments on untyped predict signatures
        from mlflow.pyfunc import PythonModel

        class Custom(PythonModel):  # type: ignore[misc]
            def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
                return np.asarray(predict(model_input))

        return Custom()


CLASSIFIER_FLAVORS = ("sklearn", "xgboost", "lightgbm", "catboost")
CATEGORY_FLAVORS = ("xgboost", "lightgbm")  # they take strings as pandas categoricals


def train_classifier(flavor: str, features: pd.DataFrame, target: pd.Series[Any]) -> Any:
    """A classifier of each supported flavor on the Telco features (strings as strings)."""
    if flavor == "sklearn":
        return sklearn_pipeline(features, target)
    frame = as_categories(features) if flavor in CATEGORY_FLAVORS else features
    if flavor == "xgboost":
        import xgboost

        model: Any = xgboost.XGBClassifier(n_estimators=30, max_depth=4, enable_categorical=True)
    elif flavor == "lightgbm":
        import lightgbm

        model = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=15, verbose=-1)
    else:
        import catboost

        model = catboost.CatBoostClassifier(
            iterations=30, depth=4, verbose=False, allow_writing_files=False,
            cat_features=list(CATEGORICAL),
        )  # fmt: skip
    return model.fit(frame, target)
