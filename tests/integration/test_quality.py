"""The quality gate against real runs: a normal night passes, a broken upstream load does not."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.support import fixtures, services
from tests.support.stack import ChurnModel

pytestmark = pytest.mark.integration

TABLE = "features.nightly"
ROWS = 4_000


@pytest.fixture
def target(target_schema: str) -> str:
    """This test's own target schema (``tests/support/stack.py``)."""
    return target_schema


def night(seed: int, rows: int = ROWS) -> pd.DataFrame:
    """One night's load: the same population, a fresh draw."""
    return fixtures.synthetic_customers(rows, seed=seed)


def score(env: dict[str, str], frame: pd.DataFrame, url: str, run_id: str, **extra: str) -> Any:
    fixtures.load_features(url, TABLE, frame)
    return services.run_scorer({**env, "SCORER_RUN_ID": run_id, **extra}, "run")


def quality_of(url: str, target: str, run_id: str) -> dict[str, Any]:
    rows = services.query(
        url,
        f'SELECT status, quality, quality_override, score_histogram, feature_stats FROM "{target}"'
        ".scoring_runs WHERE run_id = %s",
        (run_id,),
    )
    status, quality, override, histogram, feature_stats = rows[0]
    return {
        "status": status,
        "quality": quality,
        "override": override,
        "histogram": histogram,
        "feature_stats": feature_stats,
    }


def checks(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["check"]: check for check in record["quality"]["checks"]}


def latest(url: str, target: str) -> list[tuple[Any, ...]]:
    return services.query(
        url, f'SELECT run_id, count(*) FROM "{target}".latest_predictions GROUP BY run_id'
    )


@pytest.fixture
def env(scorer_env: dict[str, str], target: str, churn_model: ChurnModel) -> dict[str, str]:
    return {**scorer_env, "SCORER_FEATURES_TABLE": TABLE, "SCORER_TARGET_SCHEMA": target}


def test_a_first_run_publishes_and_records_that_it_had_no_reference(
    env: dict[str, str], postgres_url: str, target: str
) -> None:
    result = score(env, night(1), postgres_url, "first")
    assert result.returncode == 0, result.stdout + result.stderr
    record = quality_of(postgres_url, target, "first")
    assert record["quality"] == {
        "reference_run_id": None,
        "checks": [],
        "passed": True,
        "override": None,
        "no_reference": "the first published run of this model and relation",
    }
    assert len(record["histogram"]) == 1000
    assert sum(record["histogram"]) == ROWS
    assert set(record["feature_stats"]) == set(fixtures.NUMERIC_FEATURES)
    assert all(stats["null_share"] == 0.0 for stats in record["feature_stats"].values())
    assert "quality.no_reference" in services.events(result.stdout)


def test_a_normal_night_passes_and_a_broken_load_does_not_publish(
    env: dict[str, str], postgres_url: str, target: str
) -> None:
    assert score(env, night(1), postgres_url, "n1").returncode == 0
    # Night-to-night noise: a fresh draw of the population, 2% fewer customers.
    normal = score(env, night(2, int(ROWS * 0.98)), postgres_url, "n2")
    assert normal.returncode == 0, normal.stdout + normal.stderr
    found = checks(quality_of(postgres_url, target, "n2"))
    assert found["score_psi"]["status"] == "passed"
    assert found["score_psi"]["value"] < 0.05
    assert found["rows_ratio"]["value"] == pytest.approx(0.98)
    assert latest(postgres_url, target) == [("n2", int(ROWS * 0.98))]

    # The upstream ETL landed half the customers.
    half = score(env, night(3, ROWS // 2), postgres_url, "n3")
    assert half.returncode == 2, half.stdout + half.stderr
    summary = services.json_lines(half.stdout)[-1]
    assert summary["kind"] == "quality_gate"
    assert "rows_ratio 0.5102 < 0.8" in summary["error"]
    assert "SCORER_QUALITY_OVERRIDE" in summary["error"]
    record = quality_of(postgres_url, target, "n3")
    assert record["status"] == "failed"
    assert checks(record)["rows_ratio"]["status"] == "failed"
    assert record["quality"]["reference_run_id"] == "n2"
    assert latest(postgres_url, target) == [("n2", int(ROWS * 0.98))]  # nothing published


def test_a_feature_gone_all_null_fails(env: dict[str, str], postgres_url: str, target: str) -> None:
    assert score(env, night(1), postgres_url, "a").returncode == 0
    broken = night(2)
    broken["support_calls"] = np.nan
    result = score(env, broken, postgres_url, "b")
    assert result.returncode == 2, result.stdout + result.stderr
    summary = services.json_lines(result.stdout)[-1]
    assert summary["kind"] == "quality_gate"
    assert "null_share_increase:support_calls 1 > 0.2" in summary["error"]
    record = quality_of(postgres_url, target, "b")
    assert record["feature_stats"]["support_calls"]["null_share"] == 1.0
    assert latest(postgres_url, target) == [("a", ROWS)]


def test_a_shifted_score_distribution_fails_and_an_override_lets_it_through(
    env: dict[str, str], postgres_url: str, target: str
) -> None:
    assert score(env, night(1), postgres_url, "before").returncode == 0
    shifted = night(2)
    shifted["support_calls"] += 4  # every customer calls support more: churn scores jump
    shifted["late_payments"] += 3
    refused = score(env, shifted, postgres_url, "shifted")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    summary = services.json_lines(refused.stdout)[-1]
    assert summary["kind"] == "quality_gate"
    assert "score_psi" in summary["error"]
    psi = checks(quality_of(postgres_url, target, "shifted"))["score_psi"]
    assert psi["status"] == "failed"
    assert psi["value"] > 0.25

    reason = "new retention offer changed support behaviour (ticket CHURN-42)"
    allowed = score(env, shifted, postgres_url, "allowed", SCORER_QUALITY_OVERRIDE=reason)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    record = quality_of(postgres_url, target, "allowed")
    assert record["override"] == reason
    assert record["quality"]["override"] == reason
    assert record["quality"]["passed"] is True
    assert checks(record)["score_psi"]["status"] == "failed"  # the evidence stays honest
    assert "quality.overridden" in services.events(allowed.stdout)
    assert latest(postgres_url, target) == [("allowed", ROWS)]


def test_a_run_of_another_positive_class_has_no_reference_and_says_why(
    env: dict[str, str], postgres_url: str, target: str
) -> None:
    """Class 0's probabilities are 1 - class 1's: a PSI between them means nothing, so a run
    is only compared with a run that scored the same class (and kind) of the same relation."""
    assert score(env, night(1), postgres_url, "class-1").returncode == 0
    other = score(env, night(2), postgres_url, "class-0", SCORER_POSITIVE_CLASS="0")
    assert other.returncode == 0, other.stdout + other.stderr
    record = quality_of(postgres_url, target, "class-0")
    assert record["quality"]["reference_run_id"] is None
    assert record["quality"]["checks"] == []
    reason = record["quality"]["no_reference"]
    assert "probabilities of class '0'" in reason
    assert "run class-1, scored probabilities of class '1'" in reason
    assert "quality.no_reference" in services.events(other.stdout)

    # The next run of each class is compared with the latest run of its own class.
    again = score(env, night(3), postgres_url, "class-0-again", SCORER_POSITIVE_CLASS="0")
    assert again.returncode == 0, again.stdout + again.stderr
    assert quality_of(postgres_url, target, "class-0-again")["quality"]["reference_run_id"] == (
        "class-0"
    )
    back = score(env, night(4), postgres_url, "class-1-again")
    assert back.returncode == 0, back.stdout + back.stderr
    found = quality_of(postgres_url, target, "class-1-again")
    assert found["quality"]["reference_run_id"] == "class-1"
    assert checks(found)["score_psi"]["value"] < 0.05
