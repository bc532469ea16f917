"""``scorer evaluate`` against a real PostgreSQL and MLflow server: realized performance equals
scikit-learn's on the same rows, the outcome window, partial and late labels, the minimum AUC,
the settings it refuses, and what ``runs``, ``show``, ``prune`` and MLflow make of it.

Outcomes whose truth is known: the synthetic customers' own ``churned`` column, each landed at
a known day; rows outside a run's window carry the opposite label, so counting one of them
would move every figure.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from scorer.postgres.identifiers import quote_identifier
from tests.support import services
from tests.support import simulated as sim
from tests.support.fixtures import load_table, synthetic_customers
from tests.support.simulated import target
from tests.support.stack import CUSTOMERS

pytestmark = pytest.mark.integration
__all__ = ["target"]  # the fixture, imported

SNAPSHOT = "2026-09-01"
HORIZON = 30
EXACT = 1e-9


def outcome_env(url: str, target: str, table: str, **extra: str) -> dict[str, str]:
    return {
        "SCORER_DATABASE_URL": url,
        "SCORER_TARGET_SCHEMA": target,
        "SCORER_OUTCOMES_TABLE": table,
        "SCORER_OUTCOME_ENTITY_COLUMN": "customer_id",
        "SCORER_OUTCOME_COLUMN": "churned",
        "SCORER_OUTCOME_TIME_COLUMN": "observed_on",
        "SCORER_OUTCOME_HORIZON_DAYS": str(HORIZON),
        **extra,
    }


def evaluate(env: dict[str, str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    result = services.run_scorer(env, "evaluate", *args)
    return result.returncode, services.json_lines(result.stdout), result.stderr


def outcomes_frame(
    ids: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], start: date, seed: int
) -> pd.DataFrame:
    """One row per entity inside the window (day 1..HORIZON after ``start``), plus decoys
    outside it with the opposite label: on the snapshot day itself, and the day after the
    horizon."""
    rng = np.random.default_rng(seed)
    inside = pd.DataFrame(
        {
            "customer_id": ids,
            "churned": labels,
            "observed_on": [start + timedelta(days=int(d)) for d in rng.integers(1, 31, len(ids))],
        }
    )
    decoys = inside.sample(frac=0.3, random_state=seed).copy()
    decoys["churned"] = 1 - decoys["churned"]
    decoys["observed_on"] = [
        start if i % 2 else start + timedelta(days=HORIZON + 1) for i in range(len(decoys))
    ]
    return pd.concat([inside, decoys], ignore_index=True)


def load_outcomes(url: str, table: str, frame: pd.DataFrame, kind: str, time_kind: str) -> None:
    load_table(
        url,
        table,
        frame,
        {"customer_id": "bigint", "churned": kind, "observed_on": time_kind},
        index=("customer_id",),
    )


def predictions(url: str, target: str, run_id: str) -> pd.Series[float]:
    rows = services.query(
        url,
        f"SELECT entity_id, score FROM {quote_identifier(target)}.predictions WHERE run_id = %s",
        (run_id,),
    )
    return pd.Series({int(e): float(s) for e, s in rows})


def evaluation(url: str, target: str, run_id: str) -> dict[str, Any]:
    rows = services.query(
        url,
        "SELECT to_jsonb(e) FROM"
        f" {quote_identifier(target)}.scoring_run_evaluations AS e WHERE run_id = %s",
        (run_id,),
    )
    assert len(rows) == 1, rows
    return dict(rows[0][0])


def expected(scores: pd.Series[float], labels: pd.Series[int], share: float) -> dict[str, float]:
    """The figures as scikit-learn computes them on the labelled rows."""
    joined = pd.DataFrame({"score": scores, "y": labels}).dropna()
    y, s = joined["y"].astype(int).to_numpy(), joined["score"].to_numpy()
    return {
        "label_coverage": len(joined) / len(scores),
        "base_rate": float(y.mean()),
        "roc_auc": float(roc_auc_score(y, s)),
        "average_precision": float(average_precision_score(y, s)),
        "brier": float(brier_score_loss(y, s)),
        "precision_top": _precision_top(s, y, share),
    }


def _precision_top(scores: np.ndarray[Any, Any], y: np.ndarray[Any, Any], share: float) -> float:
    """Precision of the ceil(share x n) top scores, ties at the cut counted in proportion."""
    k = int(np.ceil(round(share * len(scores), 9)))
    cut = np.sort(scores)[::-1][k - 1]
    above = scores > cut
    tied = scores == cut
    positives = y[above].sum() + (k - above.sum()) * y[tied].mean()
    return float(positives / k)


def assert_figures(found: dict[str, Any], wanted: dict[str, float]) -> None:
    for key, value in wanted.items():
        assert found[key] == pytest.approx(value, abs=EXACT, rel=0), key
    assert found["lift_top"] == pytest.approx(
        wanted["precision_top"] / wanted["base_rate"], abs=EXACT
    )


def assert_shown(env: dict[str, str], run_id: str, found: dict[str, Any], mlflow_uri: str) -> None:
    """``runs``, ``show`` and the run's MLflow record show the evaluation."""
    listed = json.loads(services.run_scorer(env, "runs", "--json").stdout)
    assert listed[0]["realized_auc"] == pytest.approx(found["roc_auc"], abs=EXACT)
    text = services.run_scorer(env, "runs").stdout
    assert "AUC" in text
    assert f"{found['roc_auc']:.3f}" in text
    shown = services.run_scorer(env, "show", run_id).stdout
    assert f"{HORIZON} days" in shown
    assert f"AUC {found['roc_auc']:.4f}" in shown
    assert "coverage 100.0%" in shown
    runs_table = f"{quote_identifier(env['SCORER_TARGET_SCHEMA'])}.scoring_runs"
    record_id = services.query(
        env["SCORER_DATABASE_URL"],
        f"SELECT mlflow_record_run_id FROM {runs_table} WHERE run_id = %s",
        (run_id,),
    )[0][0]
    history = MlflowClient(mlflow_uri).get_metric_history(record_id, "realized_auc")
    assert [(m.step, m.value) for m in history][-1] == (HORIZON, pytest.approx(found["roc_auc"]))
    record = MlflowClient(mlflow_uri).get_run(record_id)
    assert "score_mean" in record.data.metrics


def test_a_real_run_partial_then_late_labels_equal_sklearn(
    scorer_env: dict[str, str], postgres_url: str, mlflow_uri: str
) -> None:
    run_id = f"eval-{uuid.uuid4().hex[:8]}"
    target = scorer_env["SCORER_TARGET_SCHEMA"]
    scored = services.run_scorer(
        {**scorer_env, "SCORER_RUN_ID": run_id, "SCORER_SNAPSHOT": SNAPSHOT}, "run"
    )
    assert scored.returncode == 0, scored.stdout + scored.stderr
    truth = synthetic_customers(CUSTOMERS, seed=11).set_index("customer_id")["churned"]
    start = date.fromisoformat(SNAPSHOT)
    landed = truth.sample(frac=0.8, random_state=1).sort_index()  # 80% of the labels so far
    table = f"outcomes.churn_{uuid.uuid4().hex[:6]}"
    frame = outcomes_frame(landed.index.to_numpy(), landed.to_numpy().astype(bool), start, 2)
    load_outcomes(postgres_url, table, frame, "boolean", "date")
    env = {**outcome_env(postgres_url, target, table), "MLFLOW_TRACKING_URI": mlflow_uri}

    code, lines, err = evaluate(env)
    assert code == 0, (lines, err)
    scores = predictions(postgres_url, target, run_id)
    first = evaluation(postgres_url, target, run_id)
    assert_figures(first, expected(scores, landed.astype(int).reindex(scores.index), 0.1))
    assert first["label_coverage"] == pytest.approx(0.8, abs=1e-3)  # partial, and says so
    assert (first["rows_scored"], first["rows_labelled"]) == (CUSTOMERS, len(landed))
    assert first["horizon_days"] == HORIZON
    assert first["window_start"].startswith("2026-09-01T00:00:00")
    assert first["window_end"].startswith("2026-10-01T00:00:00")
    bins = first["calibration"]
    assert [b["bin"] for b in bins] == list(range(10))
    assert sum(b["rows"] for b in bins) == len(landed)
    done = [line for line in lines if line["event"] == "evaluate.done"]
    assert done[0]["evaluated"] == 1

    # Evaluated once: a second pass has nothing to do.
    code, lines, _ = evaluate(env)
    assert code == 0
    assert [line["evaluated"] for line in lines if line["event"] == "evaluate.done"] == [0]

    # The late labels land; --reevaluate takes them.
    late = truth.drop(landed.index)
    more = outcomes_frame(late.index.to_numpy(), late.to_numpy().astype(bool), start, 3)
    frame = pd.concat([frame, more], ignore_index=True)
    load_outcomes(postgres_url, table, frame, "boolean", "date")
    code, lines, err = evaluate(env, "--reevaluate")
    assert code == 0, (lines, err)
    second = evaluation(postgres_url, target, run_id)
    assert_figures(second, expected(scores, truth.astype(int).reindex(scores.index), 0.1))
    assert second["label_coverage"] == 1.0
    assert second["roc_auc"] != first["roc_auc"]

    assert_shown(env, run_id, second, mlflow_uri)


@pytest.mark.parametrize("kind", ["integer", "boolean"])
def test_ties_and_the_window_equal_sklearn(postgres_url: str, target: str, kind: str) -> None:
    """Five entities share every score; timestamps at the window's edges."""
    run = sim.insert_run(
        postgres_url, target, "tied", snapshot=SNAPSHOT, finished_at=sim.NOW, rows=5_000
    )
    scores = predictions(postgres_url, target, run.run_id)
    rng = np.random.default_rng(4)
    truth = pd.Series((rng.random(len(scores)) < scores.to_numpy()).astype(int), scores.index)
    start = datetime(2026, 9, 1, tzinfo=UTC)
    frame = pd.DataFrame(
        {
            "customer_id": truth.index,
            "churned": truth.to_numpy(),
            # the window's last instant counts; its first does not (below)
            "observed_on": [start + timedelta(days=HORIZON)] * len(truth),
        }
    )
    edge = frame.head(500).copy()
    edge["churned"] = 1 - edge["churned"]
    edge["observed_on"] = start  # the snapshot's own instant: outside (snapshot, ...]
    table = f"outcomes.tied_{uuid.uuid4().hex[:6]}"
    frame = pd.concat([frame, edge], ignore_index=True)
    frame["churned"] = frame["churned"].astype(bool) if kind == "boolean" else frame["churned"]
    load_outcomes(postgres_url, table, frame, kind, "timestamptz")

    env = outcome_env(postgres_url, target, table)
    code, lines, err = evaluate(env, "--compare-top-share", "0.15")
    assert code == 0, (lines, err)
    assert scores.round(3).value_counts().max() >= 5  # ties, at the cut too
    assert_figures(evaluation(postgres_url, target, run.run_id), expected(scores, truth, 0.15))


def test_a_run_whose_window_has_not_passed_waits(postgres_url: str, target: str) -> None:
    today = sim.NOW.date().isoformat()
    sim.insert_run(postgres_url, target, "recent", snapshot=today, finished_at=sim.NOW)
    table = f"outcomes.none_{uuid.uuid4().hex[:6]}"
    frame = outcomes_frame(np.arange(1, 21), np.ones(20, dtype=int), sim.NOW.date(), 1)
    load_outcomes(postgres_url, table, frame, "integer", "date")
    code, lines, _ = evaluate(outcome_env(postgres_url, target, table))
    assert code == 0
    assert [line["evaluated"] for line in lines if line["event"] == "evaluate.done"] == [0]


def test_below_the_minimum_auc_exits_2_with_every_figure_recorded(
    postgres_url: str, target: str
) -> None:
    run = sim.insert_run(
        postgres_url, target, "weak", snapshot=SNAPSHOT, finished_at=sim.NOW, rows=400
    )
    scores = predictions(postgres_url, target, run.run_id)
    inverted = (scores < 0.5).astype(int)  # the model is exactly wrong
    table = f"outcomes.weak_{uuid.uuid4().hex[:6]}"
    frame = outcomes_frame(inverted.index.to_numpy(), inverted.to_numpy(), date(2026, 9, 1), 5)
    load_outcomes(postgres_url, table, frame, "integer", "date")
    env = outcome_env(postgres_url, target, table, SCORER_MIN_REALIZED_AUC="0.6")
    code, lines, _ = evaluate(env)
    assert code == 2
    failed = lines[-1]
    assert (failed["event"], failed["kind"]) == ("evaluate.failed", "realized_performance")
    assert "weak" in failed["error"]
    assert "SCORER_MIN_REALIZED_AUC" in failed["error"]
    assert evaluation(postgres_url, target, run.run_id)["roc_auc"] < 0.6


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"SCORER_OUTCOMES_TABLE": ""}, "SCORER_OUTCOMES_TABLE"),
        ({"SCORER_OUTCOMES_TABLE": "outcomes.nowhere"}, "SCORER_OUTCOMES_TABLE"),
        ({"SCORER_OUTCOME_ENTITY_COLUMN": "code"}, "SCORER_OUTCOME_ENTITY_COLUMN"),
        ({"SCORER_OUTCOME_COLUMN": "code"}, "SCORER_OUTCOME_COLUMN"),
        ({"SCORER_OUTCOME_TIME_COLUMN": "churned"}, "SCORER_OUTCOME_TIME_COLUMN"),
        ({"SCORER_OUTCOME_COLUMN": "count"}, "SCORER_OUTCOME_COLUMN"),
        ({"SCORER_OUTCOME_HORIZON_DAYS": "0"}, "SCORER_OUTCOME_HORIZON_DAYS"),
    ],
    ids=["no-table", "missing-table", "text-entity", "text-outcome", "time-not-a-time",
         "outcome-not-0-1", "horizon-0"],
)  # fmt: skip
def test_bad_settings_exit_2_naming_the_setting(
    postgres_url: str, target: str, change: dict[str, str], setting: str
) -> None:
    sim.insert_run(postgres_url, target, "ok", snapshot=SNAPSHOT, finished_at=sim.NOW)
    table = f"outcomes.bad_{uuid.uuid4().hex[:6]}"
    frame = pd.DataFrame(
        {
            "customer_id": range(1, 21),
            "churned": [0, 1] * 10,
            "observed_on": [date(2026, 9, 5)] * 20,
            "code": [f"C-{i}" for i in range(20)],
            "count": [7] * 20,
        }
    )
    types = {
        "customer_id": "bigint", "churned": "integer", "observed_on": "date", "code": "text",
        "count": "integer",
    }  # fmt: skip
    load_table(postgres_url, table, frame, types)
    code, lines, err = evaluate({**outcome_env(postgres_url, target, table), **change})
    assert code == 2, (lines, err)
    failed = lines[-1]
    assert failed["event"] == "evaluate.failed"
    assert setting in failed["error"]
    assert "C-1" not in json.dumps(lines)  # no outcome value named
    assert services.query(
        postgres_url, f"SELECT count(*) FROM {quote_identifier(target)}.scoring_run_evaluations"
    ) == [(0,)]


def test_prune_keeps_runs_not_yet_evaluated_and_says_so(postgres_url: str, target: str) -> None:
    made = sim.nightly(postgres_url, target, 5)
    env = {
        "SCORER_DATABASE_URL": postgres_url,
        "SCORER_TARGET_SCHEMA": target,
        "SCORER_OUTCOMES_TABLE": "outcomes.anything",
        "SCORER_OUTCOME_HORIZON_DAYS": str(HORIZON),
    }
    result = services.run_scorer(env, "prune", "--keep-runs", "1", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = services.json_lines(result.stdout)
    kept = {line["run_id"] for line in lines if line["event"] == "prune.would_keep_unevaluated"}
    assert kept == {run.run_id for run in made[1:]}
    assert lines[-1]["kept_unevaluated"] == 4
    without = services.run_scorer(
        {k: v for k, v in env.items() if "OUTCOME" not in k}, "prune", "--keep-runs", "1"
    )
    assert without.returncode == 0
    assert sim.statuses(postgres_url, target)[made[-1].run_id] == "pruned"
