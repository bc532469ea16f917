"""The "latest" rule on real data: the consumer views, ``scorer prune``'s plan and
``scorer explain`` choose the same run per model and per snapshot, in the same order.

The runs are made so that every part of the rule decides something: a newer snapshot that
finished earlier, a backfill of an older snapshot that finished last, a snapshot whose text
sorts one way and its sort key the other, two runs finished at the same instant, and a
failed run newer than all of them.
"""

from __future__ import annotations

from contextlib import closing
from datetime import timedelta

import psycopg2
import pytest

from scorer.ops import history, retention
from scorer.postgres import db
from tests.support import simulated as sim
from tests.support.simulated import NOW, target

pytestmark = pytest.mark.integration
__all__ = ["target"]  # the fixture, imported

RunSpec = tuple[str, str, str, str, int, str]
"""run id, model, snapshot, snapshot_order, finished hours ago, status."""

RUNS: tuple[RunSpec, ...] = (
    ("churn-jan", "churn", "2026-01", "2026-01", 120, "succeeded"),
    ("churn-feb", "churn", "2026-02", "2026-02", 240, "succeeded"),  # newer snapshot, earlier
    ("churn-jan-backfill", "churn", "2026-01", "2026-01", 24, "succeeded"),  # finished last
    ("churn-tie-a", "churn", "2026-02", "2026-02", 72, "succeeded"),
    ("churn-tie-b", "churn", "2026-02", "2026-02", 72, "succeeded"),  # same instant: b wins
    ("churn-old-z", "churn", "z-legacy", "2025-12", 1, "succeeded"),  # sorts last by its key
    ("churn-mar", "churn", "2026-03", "2026-03", 0, "failed"),
    ("telco-1", "telco", "w1", "2026-01-05", 48, "succeeded"),
    ("telco-2", "telco", "w2", "2026-01-12", 96, "succeeded"),
    ("telco-2-rerun", "telco", "w2", "2026-01-12", 50, "succeeded"),
)
KINDS = {"churn": "bigint", "telco": "text"}


def succeeded(model: str) -> list[RunSpec]:
    return [spec for spec in RUNS if spec[1] == model and spec[5] == "succeeded"]


def ranked(model: str) -> list[str]:
    """The model's succeeded runs as the rule ranks them (computed here, in Python): newest
    snapshot by its sort key, then latest finished, then the larger run id."""
    runs = sorted(succeeded(model), key=lambda spec: (spec[3], -spec[4], spec[0]), reverse=True)
    return [spec[0] for spec in runs]


def published(model: str) -> dict[tuple[str, str], str]:
    """(model, snapshot) -> its latest finished run (the larger run id on a tie)."""
    snapshots = {spec[2] for spec in succeeded(model)}
    return {
        (model, snapshot): max(
            (spec for spec in succeeded(model) if spec[2] == snapshot),
            key=lambda spec: (-spec[4], spec[0]),
        )[0]
        for snapshot in snapshots
    }


@pytest.fixture
def runs(postgres_url: str, target: str) -> None:
    for index, (run_id, model, snapshot, order, hours, status) in enumerate(RUNS):
        sim.insert_run(
            postgres_url,
            target,
            run_id,
            model=model,
            snapshot=snapshot,
            finished_at=NOW - timedelta(hours=hours),
            status=status,
            entity_type=KINDS[model],
            rows=5,
            run_index=index,
            extra={"snapshot_order": order},
        )


def test_the_expected_ranking_exercises_every_part_of_the_rule() -> None:
    assert ranked("churn") == [
        "churn-tie-b",
        "churn-tie-a",
        "churn-feb",
        "churn-jan-backfill",
        "churn-jan",
        "churn-old-z",
    ]
    assert ranked("telco") == ["telco-2-rerun", "telco-2", "telco-1"]


def test_views_prune_and_explain_agree(postgres_url: str, target: str, runs: None) -> None:
    latest_view: dict[tuple[str, str], str] = {}
    published_view: dict[tuple[str, str], str] = {}
    for suffix in ("", "_text", "_uuid"):
        latest_view |= sim.view_runs(postgres_url, target, f"latest_predictions{suffix}")
        published_view |= sim.view_runs(postgres_url, target, f"published_predictions{suffix}")
    assert latest_view == {
        ("churn", "2026-02"): ranked("churn")[0],
        ("telco", "w2"): ranked("telco")[0],
    }
    assert published_view == published("churn") | published("telco")

    with closing(psycopg2.connect(postgres_url)) as conn:
        # keep_runs=2: prune keeps each model's first two runs by the rule, in its order.
        with db.transaction(conn):
            plan = retention.published_runs(
                conn, target, retention.Rules(keep_runs=2, keep_days=None)
            )
        explained = {
            model: history.explain(conn, target, sim.entity(kind, 1), model)["scores"]
            for model, kind in KINDS.items()
        }
    for model in KINDS:
        planned = [run for run in plan if run.model_name == model]
        assert [run.run_id for run in planned] == ranked(model)
        assert [run.kept_by for run in planned[:2]] == ["latest", "keep_runs"]
        assert {
            (model, run.snapshot): run.run_id for run in planned if run.kept_by == "latest"
        } == {key: run_id for key, run_id in latest_view.items() if key[0] == model}
        scores = explained[model]
        assert [score["run_id"] for score in scores] == ranked(model)
        assert [score["run_id"] for score in scores if score["latest"]] == [ranked(model)[0]]
        assert {
            (model, score["snapshot"]): score["run_id"] for score in scores if score["published"]
        } == published(model)


def test_a_run_of_a_newer_snapshot_becomes_latest_everywhere(
    postgres_url: str, target: str, runs: None
) -> None:
    sim.insert_run(
        postgres_url,
        target,
        "churn-apr",
        snapshot="2026-04",
        finished_at=NOW - timedelta(days=30),
        rows=5,
        extra={"snapshot_order": "2026-04"},
    )
    assert sim.view_runs(postgres_url, target, "latest_predictions") == {
        ("churn", "2026-04"): "churn-apr"
    }
    with closing(psycopg2.connect(postgres_url)) as conn:
        with db.transaction(conn):
            plan = retention.published_runs(conn, target, retention.Rules(None, None, "churn"))
        scores = history.explain(conn, target, sim.entity("bigint", 1), "churn")["scores"]
    assert [run.run_id for run in plan if run.kept_by == "latest"] == ["churn-apr"]
    assert [score["run_id"] for score in scores if score["latest"]] == ["churn-apr"]
