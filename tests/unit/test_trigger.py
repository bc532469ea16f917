"""How a run was started, derived from what the chart passes in."""

from __future__ import annotations

from datetime import UTC, datetime

from scorer.config import RunSettings, load
from scorer.run.record import trigger_of

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
BASE = {
    "tracking_uri": "http://mlflow:5000",
    "database_url": "postgresql://u:p@h/d",
    "model_name": "churn",
    "model_alias": "champion",
    "features_table": "features.customers",
    "entity_column": "customer_id",
}


def trigger(**k8s: str) -> str:
    return trigger_of(load(RunSettings, **BASE, **k8s), NOW)


def test_local_without_kubernetes() -> None:
    assert trigger() == "local"


def test_scheduled_job_names_carry_the_schedule_minute() -> None:
    minute = int(NOW.timestamp()) // 60
    assert trigger(k8s_job=f"scorer-{minute}", k8s_cronjob="scorer") == "scheduled"


def test_other_job_names_are_manual() -> None:
    assert trigger(k8s_job="scorer-manual-1764244800", k8s_cronjob="scorer") == "manual"
    assert trigger(k8s_job="scorer-12345", k8s_cronjob="scorer") == "manual"  # not a recent minute
    assert trigger(k8s_job="adhoc", k8s_cronjob="scorer") == "manual"


def test_explicit_trigger_wins() -> None:
    assert trigger(k8s_job="x", trigger="scheduled") == "scheduled"
