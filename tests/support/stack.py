"""The real services as session fixtures: PostgreSQL with ``features.customers``, an MLflow
server with the churn model, and a target schema of each test's own.

A pytest plugin (the root ``conftest.py`` registers it), so the integration and image suites
share one server of each per session. It imports nothing heavy at module level: MLflow and the
model libraries load inside the fixtures, when a test asks for one, never for a unit test.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass

import pytest

from scorer.postgres import db, schema
from scorer.postgres.identifiers import quote_identifier
from tests.support import services

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
    from mlflow import MlflowClient

    from tests.support.fixtures import register_versions, synthetic_customers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        versions = register_versions(mlflow_uri, MODEL_NAME, synthetic_customers(2_000, seed=3))
        MlflowClient(mlflow_uri).transition_model_version_stage(
            MODEL_NAME, str(versions[0]), "Production"
        )
    return ChurnModel(MODEL_NAME, tuple(versions), champion=versions[-1], production=versions[0])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database with ``features.customers`` (dropped after the session).

    It has no target schema: each test scores into its own (``target_schema``).
    """
    from tests.support.fixtures import load_features, synthetic_customers

    with services.fresh_database() as url:
        load_features(url, FEATURES_TABLE, synthetic_customers(CUSTOMERS, seed=11))
        yield url


@pytest.fixture
def target_schema(postgres_url: str) -> Iterator[str]:
    """A freshly migrated target schema of this test's own, dropped after it.

    No test reads another's runs, predictions or ``latest_predictions``.
    """
    name = f"it_{secrets.token_hex(5)}"
    with closing(db.connect(postgres_url)) as conn:
        schema.migrate(conn, name)
    yield name
    services.execute(postgres_url, f"DROP SCHEMA {quote_identifier(name)} CASCADE")


@pytest.fixture
def scorer_env(
    postgres_url: str, mlflow_uri: str, churn_model: ChurnModel, target_schema: str
) -> dict[str, str]:
    """Settings for a valid run against the session's services (alias champion), scoring
    into this test's own ``target_schema``."""
    return {
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "SCORER_DATABASE_URL": postgres_url,
        "SCORER_MODEL_NAME": churn_model.name,
        "SCORER_MODEL_ALIAS": "champion",
        "SCORER_FEATURES_TABLE": FEATURES_TABLE,
        "SCORER_ENTITY_COLUMN": "customer_id",
        "SCORER_TARGET_SCHEMA": target_schema,
    }
