"""Session fixtures shared by the integration and image tests: real PostgreSQL, real MLflow."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass

import pytest
from mlflow import MlflowClient

from scorer import db, schema
from tests import services
from tests.fixtures import load_features, register_versions, synthetic_customers

CUSTOMERS = 5_000
MODEL_NAME = "churn-test"
FEATURES_TABLE = "features.customers"


@dataclass(frozen=True)
class ChurnModel:
    """The registered test model: version 1 in stage Production, alias champion on 2."""

    name: str
    versions: tuple[int, ...]
    champion: int
    production: int


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on loopback, for the whole session."""
    with services.mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


@pytest.fixture(scope="session")
def churn_model(mlflow_uri: str) -> ChurnModel:
    """Two versions of a real XGBoost churn classifier registered through the server."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        versions = register_versions(mlflow_uri, MODEL_NAME, synthetic_customers(2_000, seed=3))
        MlflowClient(mlflow_uri).transition_model_version_stage(
            MODEL_NAME, str(versions[0]), "Production"
        )
    return ChurnModel(MODEL_NAME, tuple(versions), champion=versions[-1], production=versions[0])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated database with ``features.customers`` (dropped after the session)."""
    with services.fresh_database() as url:
        with closing(db.connect(url)) as conn:
            schema.migrate(conn, "scoring")
        load_features(url, FEATURES_TABLE, synthetic_customers(CUSTOMERS, seed=11))
        yield url


@pytest.fixture(scope="session")
def scorer_env(postgres_url: str, mlflow_uri: str, churn_model: ChurnModel) -> dict[str, str]:
    """Settings for a valid run against the session's services (alias champion)."""
    return {
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "SCORER_DATABASE_URL": postgres_url,
        "SCORER_MODEL_NAME": churn_model.name,
        "SCORER_MODEL_ALIAS": "champion",
        "SCORER_FEATURES_TABLE": FEATURES_TABLE,
        "SCORER_ENTITY_COLUMN": "customer_id",
    }
