"""Fixtures shared by the integration and image tests: real PostgreSQL, real MLflow.

The services live for the session; each test gets a target schema of its own.

Also the CI rule: when ``CI`` is set, a skipped test is a failure.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass

import pytest
from mlflow import MlflowClient

from scorer.postgres import db, schema
from scorer.postgres.identifiers import quote_identifier
from tests import services
from tests.fixtures import load_features, register_versions, synthetic_customers

CUSTOMERS = 5_000
MODEL_NAME = "churn-test"
FEATURES_TABLE = "features.customers"


def in_ci() -> bool:
    """Whether this is a CI run (``CI`` set to anything but empty, ``0`` or ``false``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """In CI a skip is a failure: a test that could not run proves nothing.

    Covers skips from marks, fixtures and test bodies (setup or call). An xfail keeps its
    outcome (it is reported as skipped with ``wasxfail``), and ``-m``/``-k`` deselection never
    reaches this hook. Skips at collection (a module-level skip) fail the run at its end
    (``pytest_make_collect_report`` below).
    """
    report = yield
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI is set, so a skip is a failure): {_reason(report)}"
    return report


_SKIPPED_AT_COLLECTION = pytest.StashKey[list[str]]()


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """In CI a module or class skipped at collection fails the run too (at its end)."""
    report = yield
    if in_ci() and report.skipped:
        skipped = collector.config.stash.setdefault(_SKIPPED_AT_COLLECTION, [])
        skipped.append(f"{report.nodeid}: {_reason(report)}")
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name each collection-time skip that fails a CI run."""
    for line in terminalreporter.config.stash.get(_SKIPPED_AT_COLLECTION, []):
        terminalreporter.write_line(f"FAILED (skipped in CI) {line}", red=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A CI run with a collection-time skip exits as failed, after every test has run."""
    skipped = session.config.stash.get(_SKIPPED_AT_COLLECTION, [])
    if skipped and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


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
    """A fresh database with ``features.customers`` (dropped after the session).

    It has no target schema: each test scores into its own (``target_schema``).
    """
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
