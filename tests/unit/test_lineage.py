"""Lineage without services: when OpenLineage counts as configured, what a malformed setting
does, and what the events and the MLflow record say (events checked against the spec's JSON
schemas). The runs themselves are in tests/integration/test_lineage.py."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openlineage.client.serde import Serde

from scorer import config, logs
from scorer.errors import ConfigError
from scorer.lineage import mlflow, openlineage
from scorer.lineage.config import openlineage_config
from scorer.lineage.recorder import scheduled_time
from scorer.lineage.types import Outcome, Start, Table
from scorer.model.registry import ResolvedModel
from tests.support.lineage_schema import validate

PASSWORD = "Sup3r-s3cret-pw"
MINUTE = 29_131_920  # 2025-05-22T12:00Z, as a CronJob names its Job
SETTINGS = config.RunSettings(
    database_url=f"postgresql://scorer:{PASSWORD}@db.example:5432/warehouse",
    tracking_uri="http://mlflow.example:5000",
    model_name="churn",
    model_alias="champion",
    features_table="features.customers",
    entity_column="customer_id",
    snapshot_column="as_of",
    run_id=f"scorer-{MINUTE}",
    k8s_job=f"scorer-{MINUTE}",
    k8s_cronjob="scorer",
    k8s_namespace="ml",
    k8s_pod=f"scorer-{MINUTE}-x7k2p",
    image="scorer:1.2.0",
)
MODEL = ResolvedModel(
    "churn", 7, "alias:champion", "0a1b2c", "models:/m-0d9e", "m-0d9e", ("champion",), None
)
FEATURES = Table(
    "db.example:5432",
    "warehouse",
    "features",
    "customers",
    (("customer_id", "bigint"), ("as_of", "date"), ("tenure", "numeric(6,1)")),
)
PREDICTIONS = Table(
    "db.example:5432",
    "warehouse",
    "scoring",
    "predictions",
    (("run_id", "text"), ("entity_id", "bigint"), ("score", "double precision")),
)
STARTED = datetime(2025, 5, 22, 16, 0, 12, tzinfo=UTC)
START = Start(
    settings=SETTINGS,
    resolved=MODEL,
    snapshot="2026-10-15",
    snapshot_column="as_of",
    entity_type="bigint",
    started_at=STARTED,
    trigger="scheduled",
    features=FEATURES,
    predictions=PREDICTIONS,
    partition="predictions_scorer_29131920_1a2b3c4d",
    scheduled_at=scheduled_time(SETTINGS, "scheduled"),
)
DONE = Outcome(
    succeeded=True,
    finished_at=STARTED + timedelta(seconds=4),
    rows_read=1000,
    rows_scored=990,
    rows_rejected=10,
    figures={"score_mean": 0.2, "score_p50": 0.1, "score_p90": 0.5, "share_above_threshold": 0.1},
    psi=0.012,
    timings={"resolve": 0.05, "score": 1.5},
    mlflow_run_id="f00d",
)
FAILED = replace(
    DONE,
    succeeded=False,
    rows_scored=0,
    figures={},
    error="feature relation features.customers has no rows",
    kind="empty_relation",
    mlflow_run_id=None,
)


@pytest.fixture(autouse=True)
def _no_openlineage_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No OpenLineage variable from the shell, no openlineage.yml in reach."""
    for key in list(os.environ):
        if key.startswith("OPENLINEAGE"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))


def event_json(kind: str, outcome: Outcome | None, namespace: str = "scorer") -> dict[str, Any]:
    event = openlineage.run_event(kind, START, outcome, namespace)
    return dict(json.loads(Serde.to_json(event)))


# --- when OpenLineage is on, and what a malformed setting does ------------------------------


def test_unconfigured_is_off() -> None:
    assert openlineage_config() is None


@pytest.mark.parametrize(
    "env",
    [
        {"OPENLINEAGE_URL": "http://marquez.lineage.svc:5000"},
        {"OPENLINEAGE__TRANSPORT__TYPE": "console"},
        {"OPENLINEAGE_URL": "https://lineage.example/api", "OPENLINEAGE_NAMESPACE": "prod"},
    ],
)
def test_configured_the_clients_way(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    found = openlineage_config()
    assert found is not None
    assert found.namespace == env.get("OPENLINEAGE_NAMESPACE", "scorer")


def test_an_openlineage_yml_in_the_working_directory_counts(tmp_path: Path) -> None:
    (tmp_path / "openlineage.yml").write_text("transport:\n  type: console\n")
    assert openlineage_config() is not None


def test_disabled_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENLINEAGE_URL", "http://marquez:5000")
    monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
    assert openlineage_config() is None


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "marquez:5000",
        "ftp://lineage.example/",
        "http://",
        "http://lineage.example:99999",
        "http://lineage.example:port",
    ],
)
def test_a_malformed_openlineage_url_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("OPENLINEAGE_URL", url)
    with pytest.raises(ConfigError) as raised:
        openlineage_config()
    assert "OPENLINEAGE_URL" in str(raised.value)
    assert url not in str(raised.value) or url == "http://"
    assert raised.value.exit_code == 2


def test_a_missing_config_file_and_a_blank_namespace_are_config_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENLINEAGE_CONFIG", str(tmp_path / "nowhere.yml"))
    with pytest.raises(ConfigError, match="OPENLINEAGE_CONFIG"):
        openlineage_config()
    monkeypatch.delenv("OPENLINEAGE_CONFIG")
    monkeypatch.setenv("OPENLINEAGE_URL", "http://marquez:5000")
    monkeypatch.setenv("OPENLINEAGE_NAMESPACE", "  ")
    with pytest.raises(ConfigError, match="OPENLINEAGE_NAMESPACE"):
        openlineage_config()


def test_the_api_key_is_masked_in_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENLINEAGE_URL", "http://marquez:5000")
    monkeypatch.setenv("OPENLINEAGE_API_KEY", "ol-key-123456")
    monkeypatch.setenv(
        "OPENLINEAGE__TRANSPORT__AUTH", json.dumps({"type": "api_key", "apiKey": "ol-key-789"})
    )
    try:
        openlineage_config()
        assert logs.redact("sent with ol-key-123456 and ol-key-789") == "sent with *** and ***"
    finally:
        logs._secrets.clear()


@pytest.mark.parametrize("name", ["scoring/\x01churn", "x" * 501, "   "])
def test_a_malformed_experiment_name_is_a_config_error(name: str) -> None:
    fields = {**SETTINGS.model_dump(), "mlflow_experiment": name}
    fields["database_url"] = SETTINGS.database_url.get_secret_value()
    with pytest.raises(ConfigError, match="SCORER_MLFLOW_EXPERIMENT"):
        config.load(config.RunSettings, **fields)


def test_the_experiment_defaults_to_scoring_slash_model() -> None:
    assert SETTINGS.experiment == "scoring/churn"
    assert SETTINGS.model_copy(update={"mlflow_experiment": "/Shared/x"}).experiment == "/Shared/x"


# --- identity and time -------------------------------------------------------------------------


def test_the_run_id_is_stable_and_names_its_target() -> None:
    again = replace(START, started_at=STARTED + timedelta(hours=1), trigger="manual")
    assert START.openlineage_run_id == again.openlineage_run_id  # a retry shares it
    assert START.openlineage_run_id.version == 5
    elsewhere = replace(START, predictions=replace(PREDICTIONS, database="staging"))
    assert elsewhere.openlineage_run_id != START.openlineage_run_id
    other = replace(START, settings=SETTINGS.model_copy(update={"run_id": "scorer-1"}))
    assert other.openlineage_run_id != START.openlineage_run_id


def test_the_nominal_time_is_the_schedule_time_of_a_scheduled_run() -> None:
    assert START.scheduled_at == datetime.fromtimestamp(MINUTE * 60, UTC)
    assert scheduled_time(SETTINGS, "manual") is None
    manual = SETTINGS.model_copy(update={"k8s_job": "scorer-manual-17"})
    assert scheduled_time(manual, "scheduled") is None


# --- the events --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "outcome"), [("START", None), ("COMPLETE", DONE), ("FAIL", FAILED)]
)
def test_each_event_is_valid_against_the_spec(kind: str, outcome: Outcome | None) -> None:
    event = event_json(kind, outcome)
    validate(event)
    assert event["eventType"] == kind
    assert event["run"]["runId"] == str(START.openlineage_run_id)
    assert event["job"] == {
        "namespace": "scorer",
        "name": "scorer.churn",
        "facets": event["job"]["facets"],
    }
    assert event["job"]["facets"]["jobType"]["processingType"] == "BATCH"
    (source,) = event["inputs"]
    assert (source["namespace"], source["name"]) == (
        "postgres://db.example:5432",
        "warehouse.features.customers",
    )
    assert [f["name"] for f in source["facets"]["schema"]["fields"]] == [
        "customer_id",
        "as_of",
        "tenure",
    ]
    assert source["inputFacets"]["subset"]["inputCondition"]["right"]["value"] == "2026-10-15"
    (target,) = event["outputs"]
    assert (target["namespace"], target["name"]) == (
        "postgres://db.example:5432",
        "warehouse.scoring.predictions",
    )
    partition = target["outputFacets"]["subset"]["outputCondition"]["partitions"][0]
    assert partition["identifier"] == "scoring.predictions_scorer_29131920_1a2b3c4d"
    facets = event["run"]["facets"]
    assert facets["nominalTime"]["nominalStartTime"] == "2025-05-22T12:00:00.000Z"
    parent = facets["parent"]["job"]
    assert (parent["namespace"], parent["name"]) == ("scorer", "ml.scorer")
    uuid.UUID(facets["parent"]["run"]["runId"])
    scorer = facets["scorer"]
    assert (scorer["modelName"], scorer["modelVersion"], scorer["modelSelector"]) == (
        "churn",
        7,
        "alias:champion",
    )
    assert scorer["mlflowRunId"] == "0a1b2c"
    assert PASSWORD not in json.dumps(event)


def test_complete_counts_the_rows_published_and_fail_says_why() -> None:
    complete = event_json("COMPLETE", DONE)
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 990
    assert complete["inputs"][0]["inputFacets"]["inputStatistics"]["rowCount"] == 1000
    assert complete["run"]["facets"]["scorer"]["mlflowRecordRunId"] == "f00d"
    assert "errorMessage" not in complete["run"]["facets"]
    fail = event_json("FAIL", FAILED)
    assert "outputStatistics" not in fail["outputs"][0]["outputFacets"]
    error = fail["run"]["facets"]["errorMessage"]
    assert error["message"] == "empty_relation: feature relation features.customers has no rows"
    assert error["programmingLanguage"] == "python"
    start = event_json("START", None)
    assert "inputStatistics" not in start["inputs"][0]["inputFacets"]


def test_a_local_run_has_no_parent_nor_nominal_time() -> None:
    local = SETTINGS.model_copy(update={"k8s_job": None, "k8s_cronjob": None, "run_id": "r-1"})
    event = openlineage.run_event(
        "START", replace(START, settings=local, trigger="local", scheduled_at=None), None, "dev"
    )
    facets = json.loads(Serde.to_json(event))["run"]["facets"]
    assert "parent" not in facets
    assert "nominalTime" not in facets
    validate(json.loads(Serde.to_json(event)))


def test_the_validator_is_not_vacuous() -> None:
    event = event_json("COMPLETE", DONE)
    event["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] = "990"
    with pytest.raises(jsonschema.ValidationError, match="outputStatistics"):
        validate(event)
    event = event_json("COMPLETE", DONE)
    event["run"]["facets"]["scorer"]["modelVersion"] = "seven"
    with pytest.raises(jsonschema.ValidationError, match="scorer"):
        validate(event)
    event = event_json("COMPLETE", DONE)
    event["run"]["runId"] = "not-a-uuid"
    with pytest.raises(jsonschema.ValidationError):
        validate(event)


# --- the MLflow record, as data ------------------------------------------------------------


def test_the_record_names_the_run_its_model_and_snapshot_and_no_credential() -> None:
    params = {p.key: p.value for p in mlflow.params(START)}
    assert params == {
        "run_id": f"scorer-{MINUTE}",
        "model_name": "churn",
        "model_selector": "alias:champion",
        "model_version": "7",
        "snapshot": "2026-10-15",
        "snapshot_column": "as_of",
        "features_relation": "features.customers",
        "threshold": "0.5",
        "score_kind": "probability",
        "shards": "1",
    }
    sharded = replace(START, settings=SETTINGS.model_copy(update={"shards": 4, "shard_index": 2}))
    assert {p.key: p.value for p in mlflow.params(sharded)}["shards"] == "4"
    metrics = {m.key: m.value for m in mlflow.metrics(START, DONE)}
    assert metrics["rows_scored"] == 990
    assert metrics["score_mean"] == 0.2
    assert metrics["score_psi"] == 0.012
    assert metrics["seconds_score"] == 1.5
    assert metrics["seconds"] == 4.0
    failed = {m.key for m in mlflow.metrics(START, FAILED)}
    assert "score_mean" not in failed
    tags = mlflow.tags(START, DONE, openlineage=True)
    assert tags["scorer.run_id"] == tags["scorer.k8s_job"] == f"scorer-{MINUTE}"
    assert tags["scorer.k8s_pod"] == f"scorer-{MINUTE}-x7k2p"
    assert tags["scorer.image"] == "scorer:1.2.0"
    assert tags["scorer.trigger"] == "scheduled"
    assert tags["scorer.openlineage_run_id"] == str(START.openlineage_run_id)
    dataset = mlflow.dataset_entity(START, DONE)
    assert dataset.name == "warehouse.features.customers"
    assert dataset.source_type == "postgresql"
    assert json.loads(dataset.source)["uri"] == "postgresql://db.example:5432/warehouse"
    assert len(dataset.digest) == 16
    assert json.loads(dataset.profile)["num_rows"] == 1000
    everything = json.dumps([params, tags, dataset.to_dictionary()])
    assert PASSWORD not in everything
    assert "scorer:" + PASSWORD not in everything


def test_the_digest_follows_the_data_read() -> None:
    # Another run over the same data (scored differently, finished later, failed) shares it.
    rerun = replace(DONE, succeeded=False, rows_scored=0, figures={}, finished_at=STARTED)
    assert mlflow.digest(START, rerun) == mlflow.digest(START, DONE)
    later = replace(START, started_at=STARTED + timedelta(days=1), trigger="manual")
    assert mlflow.digest(later, DONE) == mlflow.digest(START, DONE)
    more = replace(DONE, rows_read=1001)
    assert mlflow.digest(START, more) != mlflow.digest(START, DONE)
    other = replace(START, snapshot="2026-10-22")
    assert mlflow.digest(other, DONE) != mlflow.digest(START, DONE)
