"""The command line as a real process against the session's PostgreSQL and MLflow server."""

from __future__ import annotations

import pytest

from tests.support import services

pytestmark = pytest.mark.integration


def test_the_tracking_uri_flag_is_honoured_over_the_variable(
    scorer_env: dict[str, str], mlflow_uri: str
) -> None:
    dead = f"http://127.0.0.1:{services.free_port()}"
    env = {**scorer_env, "MLFLOW_TRACKING_URI": dead, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    result = services.run_scorer(env, "check", "--tracking-uri", mlflow_uri)
    assert result.returncode == 0, result.stdout + result.stderr
    assert services.events(result.stdout)[-1] == "check.passed"


def test_the_tracking_uri_flag_alone_is_enough(scorer_env: dict[str, str], mlflow_uri: str) -> None:
    env = {k: v for k, v in scorer_env.items() if k != "MLFLOW_TRACKING_URI"}
    result = services.run_scorer(env, "check", "--tracking-uri", mlflow_uri)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_registry_configured_exits_2_and_creates_no_local_store(
    scorer_env: dict[str, str],
) -> None:
    env = {k: v for k, v in scorer_env.items() if k != "MLFLOW_TRACKING_URI"}
    result = services.run_scorer(env, "run")
    assert result.returncode == 2, result.stdout + result.stderr
    last = services.json_lines(result.stdout)[-1]
    assert last["kind"] == "config"
    assert "no model registry configured" in last["error"]
    assert not (services.REPO / "mlflow.db").exists()
    assert not (services.REPO / "mlruns").exists()


@pytest.mark.parametrize("command", ["migrate", "check", "run"])
def test_a_wrong_database_password_is_permanent_and_named(
    scorer_env: dict[str, str], postgres_url: str, command: str
) -> None:
    parts = services.urlsplit(postgres_url)
    url = parts._replace(netloc=f"{parts.username}:Wr0ng-pw@{parts.hostname}:{parts.port}").geturl()
    result = services.run_scorer({**scorer_env, "SCORER_DATABASE_URL": url}, command)
    assert result.returncode == 2, result.stdout + result.stderr
    last = services.json_lines(result.stdout)[-1]
    assert (last["kind"], last["exit_code"]) == ("database_auth", 2)
    assert "password or role" in last["error"]
    assert "Wr0ng-pw" not in result.stdout + result.stderr


def test_a_missing_database_is_permanent_and_named(
    scorer_env: dict[str, str], postgres_url: str
) -> None:
    url = services.with_database(postgres_url, "scorer_no_such_db")
    result = services.run_scorer({**scorer_env, "SCORER_DATABASE_URL": url}, "migrate")
    assert result.returncode == 2, result.stdout + result.stderr
    assert services.json_lines(result.stdout)[-1]["kind"] == "database_missing"


def test_log_level_trace_exits_2_naming_the_variable(postgres_url: str) -> None:
    env = {"SCORER_DATABASE_URL": postgres_url, "SCORER_LOG_LEVEL": "trace"}
    result = services.run_scorer(env, "migrate")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == ""  # no traceback
    assert "SCORER_LOG_LEVEL" in services.json_lines(result.stdout)[-1]["error"]
