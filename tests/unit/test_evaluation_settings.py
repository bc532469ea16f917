"""``evaluate``'s settings and the start of a run's outcome window (no database needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scorer.config import EvaluateSettings, PruneSettings, load
from scorer.errors import ConfigError
from scorer.ops.evaluate import window_start

URL = "postgresql://u:hunter2@db/x"
OUTCOMES = {
    "outcomes_table": "warehouse.churn",
    "outcome_entity_column": "customer_id",
    "outcome_column": "churned",
    "outcome_time_column": "churned_on",
    "outcome_horizon_days": "30",
}


def test_every_outcome_setting_is_named_when_missing() -> None:
    with pytest.raises(ConfigError) as raised:
        load(EvaluateSettings, database_url=URL)
    for name in OUTCOMES:
        assert f"SCORER_{name.upper()}" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "value", "variable"),
    [
        ("outcomes_table", "a.b.c", "SCORER_OUTCOMES_TABLE"),
        ("outcome_column", "churned; drop", "SCORER_OUTCOME_COLUMN"),
        ("outcome_horizon_days", "0", "SCORER_OUTCOME_HORIZON_DAYS"),
        ("compare_top_share", "0", "SCORER_COMPARE_TOP_SHARE"),
        ("compare_top_share", "1.5", "SCORER_COMPARE_TOP_SHARE"),
        ("min_realized_auc", "1.2", "SCORER_MIN_REALIZED_AUC"),
    ],
)
def test_a_bad_value_exits_2_naming_its_variable(name: str, value: str, variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load(EvaluateSettings, database_url=URL, **{**OUTCOMES, name: value})


def test_defaults() -> None:
    settings = load(EvaluateSettings, database_url=URL, **OUTCOMES)
    assert settings.compare_top_share == 0.1
    assert settings.min_realized_auc is None
    assert str(settings.outcomes) == "warehouse.churn"


def test_prune_knows_whether_evaluation_is_configured() -> None:
    assert load(PruneSettings, database_url=URL, keep_runs="3").outcomes_table is None
    configured = load(
        PruneSettings, database_url=URL, keep_runs="3", outcomes_table="warehouse.churn"
    )
    assert configured.outcomes_table == "warehouse.churn"


STARTED = datetime(2026, 11, 2, 3, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("snapshot", "start", "source"),
    [
        ("2026-10-01", datetime(2026, 10, 1, tzinfo=UTC), "snapshot"),
        ("20261001", datetime(2026, 10, 1, tzinfo=UTC), "snapshot"),
        ("2026-10-01 06:00:00", datetime(2026, 10, 1, 6, tzinfo=UTC), "snapshot"),
        ("2026-10-01 06:00:00+02", datetime(2026, 10, 1, 4, tzinfo=UTC), "snapshot"),
        ("batch-42", STARTED, "started_at"),
        ("42", STARTED, "started_at"),
    ],
)
def test_the_window_starts_at_the_snapshot_or_the_runs_start(
    snapshot: str, start: datetime, source: str
) -> None:
    assert window_start(snapshot, STARTED) == (start, source)
