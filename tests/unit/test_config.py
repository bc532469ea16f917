"""Settings validation: fail fast, name the variable, never echo the secret."""

from __future__ import annotations

import os
import re

import pytest

from scorer.config import DatabaseSettings, RunSettings, load
from scorer.errors import ConfigError

VALID = {
    "tracking_uri": "http://mlflow:5000",
    "database_url": "postgresql://scorer:pw@db:5432/scoring",
    "model_name": "churn",
    "model_alias": "champion",
    "features_table": "features.customers",
    "entity_column": "customer_id",
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SCORER_") or key in ("MLFLOW_TRACKING_URI", "JOB_COMPLETION_INDEX"):
            monkeypatch.delenv(key)


def settings(**changes: object) -> RunSettings:
    values = {**VALID, **changes}
    return load(RunSettings, **{k: v for k, v in values.items() if v is not None})


def test_defaults() -> None:
    s = settings()
    assert s.label_threshold == 0.5
    assert s.target_schema == "scoring"
    assert s.chunk_rows == 50_000
    assert s.selector == "alias:champion"
    assert s.run_id.startswith("run-")
    assert len(s.snapshot) == 10  # YYYY-MM-DD, today in UTC
    assert str(s.features) == "features.customers"


def test_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORER_DATABASE_URL", "postgresql://u:p@h/d")
    monkeypatch.setenv("SCORER_MODEL_NAME", "churn")
    monkeypatch.setenv("SCORER_MODEL_VERSION", "7")
    monkeypatch.setenv("SCORER_FEATURES_TABLE", "customers")
    monkeypatch.setenv("SCORER_ENTITY_COLUMN", "id")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    s = load(RunSettings)
    assert (s.model_version, s.selector, s.tracking_uri) == (7, "version:7", "http://mlflow:5000")


def test_no_selector_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"exactly one of .*given: none"):
        settings(model_alias=None)


def test_two_selectors_are_refused() -> None:
    with pytest.raises(ConfigError, match="given: SCORER_MODEL_ALIAS, SCORER_MODEL_VERSION"):
        settings(model_version=3)


def test_two_gates_are_refused() -> None:
    with pytest.raises(ConfigError, match="at most one of SCORER_REQUIRE_ALIAS"):
        settings(require_alias="champion", require_stage="Production")


@pytest.mark.parametrize("threshold", [0, 1, 1.5, -0.1, "high"])
def test_bad_threshold(threshold: object) -> None:
    with pytest.raises(ConfigError, match="SCORER_THRESHOLD"):
        settings(threshold=threshold)


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("entity_column", "id; DROP TABLE x", "SCORER_ENTITY_COLUMN"),
        ("entity_column", "1st", "SCORER_ENTITY_COLUMN"),
        ("features_table", "a.b.c", "SCORER_FEATURES_TABLE"),
        ("features_table", 'features."x"', "SCORER_FEATURES_TABLE"),
        ("target_schema", "scoring-prod", "SCORER_TARGET_SCHEMA"),
        ("model_version", 0, "SCORER_MODEL_VERSION"),
        ("model_alias", "champ ion", "SCORER_MODEL_ALIAS"),
        ("run_id", "a/b", "SCORER_RUN_ID"),
        ("chunk_rows", 0, "SCORER_CHUNK_ROWS"),
        ("max_rejected_ratio", 2, "SCORER_MAX_REJECTED_RATIO"),
        ("log_format", "xml", "SCORER_LOG_FORMAT"),
    ],
)
def test_bad_values_name_their_variable(field: str, value: object, variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        settings(**{field: value})


def test_stage_is_normalised() -> None:
    s = settings(model_alias=None, model_stage="production")
    assert s.model_stage == "Production"
    with pytest.raises(ConfigError, match="SCORER_MODEL_STAGE"):
        settings(model_alias=None, model_stage="Live")


def test_database_url_must_be_postgres_and_is_never_echoed() -> None:
    with pytest.raises(ConfigError, match="SCORER_DATABASE_URL") as raised:
        load(DatabaseSettings, database_url="mysql://root:hunter2@db/x")
    assert "hunter2" not in str(raised.value)
    s = load(DatabaseSettings, database_url="postgresql://u:hunter2@db/x")
    assert "hunter2" not in repr(s)


def test_one_shard_by_default() -> None:
    s = settings()
    assert (s.shards, s.shard_index, s.shard, s.sharded) == (1, None, 0, False)


def test_the_shard_index_defaults_to_the_indexed_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORER_SHARDS", "4")
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "3")
    s = settings()
    assert (s.shards, s.shard_index, s.sharded) == (4, 3, True)
    monkeypatch.setenv("SCORER_SHARD_INDEX", "1")  # an explicit index wins
    assert settings().shard_index == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SCORER_SHARDS": "0"}, "SCORER_SHARDS (--shards): Input should be greater than or"),
        ({"SCORER_SHARDS": "65"}, "SCORER_SHARDS (--shards): Input should be less than or equal"),
        ({"SCORER_SHARDS": "4"}, "SCORER_SHARDS=4 needs this pod's shard: set SCORER_SHARD_INDEX"),
        (
            {"SCORER_SHARDS": "4", "SCORER_SHARD_INDEX": "4"},
            "SCORER_SHARD_INDEX=4 is outside 0..3 (SCORER_SHARDS=4)",
        ),
        (
            {"SCORER_SHARDS": "4", "JOB_COMPLETION_INDEX": "7"},
            "SCORER_SHARD_INDEX=7 is outside 0..3",
        ),
        ({"JOB_COMPLETION_INDEX": "1"}, "SCORER_SHARD_INDEX=1 is outside 0..0 (SCORER_SHARDS=1)"),
        ({"SCORER_SHARD_INDEX": "-1"}, "SCORER_SHARD_INDEX (--shard-index): Input should be"),
        ({"JOB_COMPLETION_INDEX": "x"}, "SCORER_SHARD_INDEX (--shard-index): Input should be"),
        ({"SCORER_SHARD_TIMEOUT_SECONDS": "0"}, "SCORER_SHARD_TIMEOUT_SECONDS"),
    ],
    ids=[
        "zero",
        "above-max",
        "no-index",
        "index-too-big",
        "job-index-too-big",
        "one-shard",
        "negative",
        "not-a-number",
        "timeout",
    ],
)
def test_bad_shard_settings_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        settings()
    assert raised.value.exit_code == 2
