"""What a run's end becomes as pushed metrics: names, labels, the outcome and verdict sets."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scorer.config import RunSettings
from scorer.errors import DatabaseUnreachableError, QualityGateError, ScorerError
from scorer.run import metrics
from scorer.run.gate import Check, Verdict
from scorer.run.record import Counts
from scorer.run.statistics import ScoreStats

ENV = {
    "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "SCORER_DATABASE_URL": "postgresql://u:p@db/d",
    "SCORER_MODEL_NAME": "churn",
    "SCORER_MODEL_ALIAS": "champion",
    "SCORER_FEATURES_TABLE": "features.customers",
    "SCORER_ENTITY_COLUMN": "customer_id",
    "SCORER_RUN_ID": "churn-scorer-29400000",
}


class Ended:
    """A run's end as ``scorer.run.progress.RunProgress`` presents it."""

    def __init__(self, settings: RunSettings, verdict: Verdict | None, read: int) -> None:
        self.settings = settings
        self.counts = Counts(read=read)
        self.stats = ScoreStats()
        self.verdict = verdict
        self.snapshot: str | None = "2026-12-01" if read else None
        self.model_version: int | None = 3 if read else None
        self.ends_run = True

    def seconds(self) -> float:
        return 12.5

    def figures(self) -> dict[str, float | None]:
        return {"score_mean": 0.21 if self.counts.read else None}


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> RunSettings:
    for key in ("SCORER_K8S_NAMESPACE", "SCORER_RELEASE", "SCORER_PUSHGATEWAY_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    return RunSettings()  # type: ignore[call-arg]


def verdict(*statuses: str, override: str | None = None, reference: str | None = "r1") -> Verdict:
    checks = tuple(Check("score_psi", 0.3, 0.25, 0.1, status) for status in statuses)  # type: ignore[arg-type]
    return Verdict(reference, checks, override)


def exposed(report: metrics.Report) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = generate_latest(metrics.collect(report)).decode()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def test_every_metric_follows_the_naming_conventions() -> None:
    for name in metrics.METRICS:
        assert re.fullmatch(r"scorer_[a-z]+(_[a-z]+)*", name), name
        assert not name.endswith("_total"), name  # gauges, not counters
        if "timestamp" in name or "duration" in name:
            assert name.endswith("_seconds"), name


@pytest.mark.parametrize(
    ("checks", "override", "reference", "failure", "expected"),
    [
        ((), None, None, None, "no_reference"),
        (("passed",), None, "r1", None, "passed"),
        (("passed", "warning"), None, "r1", None, "warning"),
        (("failed",), None, "r1", QualityGateError("x"), "refused"),
        (("failed",), "new model", "r1", None, "overridden"),
    ],
)
def test_the_gate_verdict(
    checks: tuple[str, ...],
    override: str | None,
    reference: str | None,
    failure: ScorerError | None,
    expected: str,
) -> None:
    assert metrics.verdict_of(
        verdict(*checks, override=override, reference=reference), failure
    ) == (expected)
    assert expected in metrics.VERDICTS


def test_no_verdict_means_the_gate_did_not_run() -> None:
    assert metrics.verdict_of(None, DatabaseUnreachableError("x")) == "not_run"
    assert metrics.verdict_of(None, None) == "not_run"


def test_a_success_carries_the_last_success_and_one_hot_sets(settings: RunSettings) -> None:
    report = metrics.report(Ended(settings, verdict("passed"), 100), None)
    assert report.grouping_key == {"model": "churn", "namespace": "", "release": ""}
    found = exposed(report)
    assert set(found) == set(metrics.METRICS)
    assert found["scorer_last_success_timestamp_seconds"][0][1] == report.ended_at
    outcomes = {labels["outcome"]: value for labels, value in found["scorer_last_run_outcome"]}
    assert outcomes == {"succeeded": 1, "refused": 0, "failed": 0}
    assert found["scorer_last_run_exit_code"] == [({"kind": "none"}, 0.0)]
    gate = {labels["verdict"]: value for labels, value in found["scorer_last_run_quality_gate"]}
    assert gate == {"passed": 1} | dict.fromkeys(set(metrics.VERDICTS) - {"passed"}, 0)
    assert found["scorer_last_run_info"] == [
        (
            {
                "run_id": "churn-scorer-29400000",
                "model_version": "3",
                "snapshot": "2026-12-01",
            },
            1.0,
        )
    ]
    assert found["scorer_last_run_duration_seconds"] == [({}, 12.5)]
    assert found["scorer_last_run_score_psi"] == [({}, 0.3)]


def test_a_refusal_and_a_failure_push_no_last_success(settings: RunSettings) -> None:
    refused = exposed(metrics.report(Ended(settings, verdict("failed"), 50), QualityGateError("x")))
    assert "scorer_last_success_timestamp_seconds" not in refused
    outcomes = {labels["outcome"]: value for labels, value in refused["scorer_last_run_outcome"]}
    assert outcomes["refused"] == 1
    assert refused["scorer_last_run_exit_code"] == [({"kind": "quality_gate"}, 2.0)]

    failed = exposed(metrics.report(Ended(settings, None, 0), DatabaseUnreachableError("x")))
    assert "scorer_last_success_timestamp_seconds" not in failed
    assert failed["scorer_last_run_exit_code"] == [({"kind": "database_unreachable"}, 1.0)]
    assert math.isnan(failed["scorer_last_run_score_mean"][0][1])
    assert math.isnan(failed["scorer_last_run_score_psi"][0][1])
    assert failed["scorer_last_run_info"][0][0] == {
        "run_id": "churn-scorer-29400000",
        "model_version": "",
        "snapshot": "",
    }


def test_without_a_url_nothing_is_pushed(settings: RunSettings) -> None:
    assert metrics.push(Ended(settings, None, 0)) == {"pushgateway": "off"}


def test_a_run_this_process_did_not_end_is_not_pushed(settings: RunSettings) -> None:
    pushing = settings.model_copy(update={"pushgateway_url": "http://pushgateway:9091"})
    run = Ended(pushing, None, 10)
    run.ends_run = False
    assert metrics.push(run) == {"pushgateway": "skipped"}


def test_every_metric_and_label_value_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "monitoring.md").read_text()
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in doc.splitlines()
        if line.startswith("| `scorer_")
    }
    assert set(rows) == set(metrics.METRICS)
    assert all(f"`{value}`" in rows["scorer_last_run_outcome"] for value in metrics.OUTCOMES)
    assert all(f"`{value}`" in rows["scorer_last_run_quality_gate"] for value in metrics.VERDICTS)
    assert f"`{metrics.NO_FAILURE}`" in rows["scorer_last_run_exit_code"]
    for label in ("run_id", "model_version", "snapshot"):
        assert f"`{label}`" in rows["scorer_last_run_info"]
    for key in ("job", "model", "namespace", "release"):  # the grouping key
        assert f"`{key}`" in doc
