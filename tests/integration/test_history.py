"""``scorer runs``, ``show`` and ``explain`` as real processes, their output checked against the
database, as text and as ``--json``."""

from __future__ import annotations

import json
import re
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest

from scorer.io import sink
from tests.support import services
from tests.support import simulated as sim
from tests.support.simulated import NOW, target
from tests.support.stack import CUSTOMERS, ChurnModel

pytestmark = pytest.mark.integration
__all__ = ["target"]  # the fixture, imported


def history(url: str, target: str, *args: str) -> services.subprocess.CompletedProcess[str]:
    env = {"SCORER_DATABASE_URL": url, "SCORER_TARGET_SCHEMA": target}
    result = services.run_scorer(env, *args)
    assert result.stderr == "", result.stderr
    return result


def as_json(value: Any) -> Any:
    """A database value as the commands write it in JSON."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def run_rows(
    url: str, target: str, where: str = "true", params: tuple[Any, ...] = ()
) -> list[dict[str, Any]]:
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(
            f'SELECT * FROM "{target}".scoring_runs WHERE {where}'
            " ORDER BY started_at DESC, run_id DESC",
            params or None,
        )
        names = [column.name for column in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def checks(psi: float, status: str = "passed") -> list[dict[str, Any]]:
    return [
        {"check": "score_psi", "value": psi, "limit": 0.25, "warn": 0.1, "status": status},
        {"check": "rows_ratio", "value": 1.05, "limit": 0.5, "warn": 0.8, "status": "passed"},
        {
            "check": "null_share_increase:tenure",
            "value": 0.0,
            "limit": 0.2,
            "warn": 0.05,
            "status": "passed",
        },
    ]


@pytest.fixture
def history_of_runs(postgres_url: str, target: str) -> dict[str, sim.Simulated]:
    """Nightly runs of three models (one per id type), with quality checks, a failed run, a
    shifted run and a pruned one."""
    url = postgres_url
    made: dict[str, sim.Simulated] = {}
    for night in (3, 2, 1):
        reference = f"churn-{night + 1}" if night < 3 else None
        psi = 0.0123 * night
        made[f"churn-{night}"] = sim.insert_run(
            url,
            target,
            f"churn-{night}",
            snapshot=f"2026-11-{30 - night:02d}",
            finished_at=NOW - timedelta(days=night),
            rows=40 + night,
            run_index=night,
            extra={
                "quality": json.dumps(
                    {
                        "reference_run_id": reference,
                        "checks": checks(psi) if reference else [],
                        "passed": True,
                        "override": None,
                    }
                )
            },
        )
    made["churn-failed"] = sim.insert_run(
        url,
        target,
        "churn-failed",
        snapshot="2026-11-30",
        finished_at=NOW - timedelta(hours=2),
        status="failed",
        rows=21,
        extra={
            "error": "quality gate: score_psi 0.41 above SCORER_MAX_SCORE_PSI=0.25; nothing"
            " published",
            "quality": json.dumps(
                {
                    "reference_run_id": "churn-1",
                    "checks": checks(0.41, "failed"),
                    "passed": False,
                    "override": None,
                }
            ),
        },
    )
    made["telco-2"] = sim.insert_run(
        url, target, "telco-2", model="telco", entity_type="text", snapshot="2026-11-28",
        finished_at=NOW - timedelta(days=2, hours=1), rows=12, run_index=5,
    )  # fmt: skip
    made["telco-1"] = sim.insert_run(
        url, target, "telco-1", model="telco", entity_type="text", snapshot="2026-11-29",
        finished_at=NOW - timedelta(days=1, hours=1), rows=12, run_index=6, shift=0.3,
        extra={"quality_override": "v3 is a deliberate model change (ticket ML-42)"},
    )  # fmt: skip
    made["devices-1"] = sim.insert_run(
        url, target, "devices-1", model="devices", entity_type="uuid", snapshot="2026-11-29",
        finished_at=NOW - timedelta(days=1, hours=2), rows=8, run_index=7,
    )  # fmt: skip
    made["churn-old"] = sim.insert_run(
        url, target, "churn-old", snapshot="2026-10-01", finished_at=NOW - timedelta(days=60),
        rows=5, run_index=60,
    )  # fmt: skip
    pruned = services.run_scorer(
        {"SCORER_DATABASE_URL": url, "SCORER_TARGET_SCHEMA": target},
        "prune",
        "--model-name",
        "churn",
        "--keep-days",
        "30",
    )
    assert pruned.returncode == 0, pruned.stdout
    assert sim.statuses(url, target)["churn-old"] == "pruned"
    return made


# --- runs -------------------------------------------------------------------------------


def test_runs_lists_recent_runs_as_the_database_has_them(
    postgres_url: str, target: str, history_of_runs: dict[str, sim.Simulated]
) -> None:
    result = history(postgres_url, target, "runs", "--json")
    assert result.returncode == 0, result.stdout
    listed = json.loads(result.stdout)
    rows = run_rows(postgres_url, target)
    assert [r["run_id"] for r in listed] == [r["run_id"] for r in rows]
    for shown, row in zip(listed, rows, strict=True):
        for key in (
            "status", "trigger", "model_name", "model_selector", "model_version", "snapshot",
            "rows_read", "rows_scored", "rows_rejected", "score_mean", "started_at",
            "finished_at", "pruned_at", "entity_type", "features_relation",
        ):  # fmt: skip
            assert shown[key] == as_json(row[key]), key
        quality = row["quality"] or {}
        psi = [c["value"] for c in quality.get("checks", []) if c["check"] == "score_psi"]
        assert shown["score_psi"] == (psi[0] if psi else None)
        assert shown["duration_seconds"] == pytest.approx(sum(row["timings"].values()))
    assert {r["run_id"]: r["status"] for r in listed}["churn-old"] == "pruned"

    text = history(postgres_url, target, "runs").stdout
    header, *lines = text.splitlines()
    assert header.split() == [
        "RUN", "ID", "STATUS", "TRIGGER", "MODEL", "SELECTOR", "→", "VERSION", "SNAPSHOT",
        "ROWS", "REJECTED", "MEAN", "PSI", "AUC", "DURATION", "AGE",
    ]  # fmt: skip
    assert [line.split()[0] for line in lines] == [r["run_id"] for r in rows]
    by_id = {line.split()[0]: line for line in lines}
    churn_1 = next(r for r in rows if r["run_id"] == "churn-1")
    assert re.search(
        rf"churn-1\s+succeeded\s+scheduled\s+churn\s+alias:champion → 2\s+2026-11-29\s+41\s+0\s+"
        rf"{churn_1['score_mean']:.4f}\s+0\.012\s+—\s+1\.3s\s+1d$",
        by_id["churn-1"],
    ), by_id["churn-1"]
    assert re.search(r"churn-failed\s+failed\s.*\s0\.410\s", by_id["churn-failed"])


def test_runs_of_one_model_newest_first_and_a_limit(
    postgres_url: str, target: str, history_of_runs: dict[str, sim.Simulated]
) -> None:
    result = history(postgres_url, target, "runs", "--model", "churn", "--limit", "2", "--json")
    assert [r["run_id"] for r in json.loads(result.stdout)] == ["churn-failed", "churn-1"]
    assert history(postgres_url, target, "runs", "--model", "nobody").stdout.strip() == "no runs"


def test_runs_with_a_limit_below_one_exits_2(postgres_url: str, target: str) -> None:
    result = history(postgres_url, target, "runs", "--limit", "0")
    assert result.returncode == 2
    last = services.json_lines(result.stdout)[-1]
    assert (last["event"], last["kind"]) == ("runs.failed", "config")
    assert "--limit" in last["error"]


# --- show -------------------------------------------------------------------------------


def test_show_prints_the_whole_lineage_chain(
    postgres_url: str, target: str, history_of_runs: dict[str, sim.Simulated]
) -> None:
    (row,) = run_rows(postgres_url, target, "run_id = %s", ("churn-1",))
    text = history(postgres_url, target, "show", "churn-1").stdout
    lines = {line.split(maxsplit=1)[0]: line for line in text.splitlines() if line.strip()}
    assert (
        f"alias:champion → churn version 2 → MLflow run {row['mlflow_run_id']}" in lines["lineage"]
    )
    assert f"source {row['model_source']}" in text
    assert (
        "features.telco · snapshot 2026-11-29 (column snapshot_date) · entity ids bigint"
        in (lines["features"])
    )
    assert lines["kubernetes"].split(maxsplit=1)[1] == (
        "namespace scoring · cronjob churn-nightly · job churn-nightly-1 · pod"
        " churn-nightly-1-x7k2p · node worker-1 · image scorer:0.1.0"
    )
    assert lines["rows"].split(maxsplit=1)[1] == "read 41 · scored 41 · rejected 0"
    assert f"mean {row['score_mean']:.4f}" in lines["scores"]
    assert lines["quality"].startswith(
        "quality     passed, against run churn-2 (version 2, snapshot 2026-11-28, succeeded)"
    )
    assert re.search(r"score_psi\s+0\.0123\s+0\.1\s+0\.25\s+passed", text)
    assert re.search(r"null_share_increase:tenure\s+0\.0000\s+0\.05\s+0\.2\s+passed", text)
    assert "nulls       tenure 0.0%" in text
    # The histogram: 20 bars of this run beside its reference run's, each column's shares.
    head = next(line for line in text.splitlines() if line.startswith("score "))
    assert "this run (41)" in head
    assert "reference churn-2 (42)" in head
    bars = [line for line in text.splitlines() if line.startswith("[")]
    assert len(bars) == 20
    mine = [0] * 20
    for index, count in enumerate(row["score_histogram"]):
        mine[index // 50] += count
    shares = [float(share) for share in re.findall(r"(\d+\.\d)%", "\n".join(bars))]
    assert shares[0::2] == [round(100 * count / 41, 1) for count in mine]
    assert (
        len(history(postgres_url, target, "show", "churn-1", "--bins", "10").stdout.split("\n["))
        == 11
    )

    shown = json.loads(history(postgres_url, target, "show", "churn-1", "--json").stdout)
    bins = row.pop("feature_bins")
    assert {key: shown[key] for key in row} == {key: as_json(value) for key, value in row.items()}
    assert shown["feature_bins"] == (sorted(bins) if bins else None)  # names, not edges
    assert shown["reference"]["run_id"] == "churn-2"
    (reference,) = run_rows(postgres_url, target, "run_id = %s", ("churn-2",))
    assert shown["reference"]["score_histogram"] == reference["score_histogram"]


def test_show_a_failed_a_pruned_and_an_overridden_run(
    postgres_url: str, target: str, history_of_runs: dict[str, sim.Simulated]
) -> None:
    failed = history(postgres_url, target, "show", "churn-failed").stdout
    assert "quality     failed, against run churn-1" in failed
    assert re.search(r"score_psi\s+0\.4100\s+0\.1\s+0\.25\s+failed", failed)
    assert "error       quality gate: score_psi 0.41 above SCORER_MAX_SCORE_PSI=0.25" in failed
    assert "no histogram recorded" in failed

    pruned = history(postgres_url, target, "show", "churn-old").stdout
    (row,) = run_rows(postgres_url, target, "run_id = %s", ("churn-old",))
    assert f"pruned      {as_json(row['pruned_at'])[:19]}" in pruned
    assert "its partition dropped, row kept" in pruned

    overridden = history(postgres_url, target, "show", "telco-1").stdout
    assert "override    v3 is a deliberate model change (ticket ML-42)" in overridden
    assert "quality     — (no checks recorded)" in overridden


def test_show_an_unknown_run_exits_2_naming_it(postgres_url: str, target: str) -> None:
    result = history(postgres_url, target, "show", "no-such-run")
    assert result.returncode == 2
    last = services.json_lines(result.stdout)[-1]
    assert (last["event"], last["kind"], last["exit_code"]) == ("show.failed", "run_not_found", 2)
    assert "'no-such-run'" in last["error"]


# --- explain ----------------------------------------------------------------------------


def scores_in_db(url: str, target: str, parent: str, entity: str, cast: str) -> dict[str, float]:
    rows = services.query(
        url,
        f'SELECT p.run_id, p.score FROM "{target}".{parent} AS p'
        f' JOIN "{target}".scoring_runs AS r USING (run_id)'
        f" WHERE r.status = 'succeeded' AND p.entity_id = %s::{cast}",
        (entity,),
    )
    return {str(run_id): float(score) for run_id, score in rows}


@pytest.mark.parametrize(
    ("kind", "model", "runs_newest_first"),
    [
        ("bigint", "churn", ["churn-1", "churn-2", "churn-3"]),
        ("text", "telco", ["telco-1", "telco-2"]),
        ("uuid", "devices", ["devices-1"]),
    ],
)
def test_explain_shows_an_entity_across_the_kept_runs(
    postgres_url: str,
    target: str,
    history_of_runs: dict[str, sim.Simulated],
    kind: str,
    model: str,
    runs_newest_first: list[str],
) -> None:
    entity = sim.entity(kind, 4)
    expected = scores_in_db(postgres_url, target, sink.PARENTS[kind], entity, kind)
    assert set(expected) == set(runs_newest_first)  # churn-old is pruned: it has no rows

    shown = json.loads(history(postgres_url, target, "explain", entity, "--json").stdout)
    assert shown["entity_id"] == entity
    assert [s["run_id"] for s in shown["scores"]] == runs_newest_first
    assert {s["run_id"]: s["score"] for s in shown["scores"]} == expected
    by_run = {s["run_id"]: s for s in shown["scores"]}
    latest = services.query(
        postgres_url,
        f'SELECT DISTINCT run_id FROM "{target}".latest_predictions{_suffix(kind)}'
        " WHERE model_name = %s",
        (model,),
    )
    assert [run_id for run_id, s in by_run.items() if s["latest"]] == [latest[0][0]]
    for run_id in runs_newest_first:
        (row,) = run_rows(postgres_url, target, "run_id = %s", (run_id,))
        assert (by_run[run_id]["model_version"], by_run[run_id]["snapshot"]) == (
            row["model_version"],
            row["snapshot"],
        )

    text = history(postgres_url, target, "explain", entity, "--model", model).stdout
    title, header, *lines = text.splitlines()
    assert header.split()[:3] == ["MODEL", "RUN", "ID"]
    assert title == (
        f"entity {entity}: {len(expected)} scores in the kept runs of model {model}"
        " (newest snapshot first)"
    )
    assert [line.split()[1] for line in lines] == runs_newest_first
    for line, run_id in zip(lines, runs_newest_first, strict=True):
        assert f"{expected[run_id]:.6f}" in line
        assert ("latest_predictions" in line) == by_run[run_id]["latest"]


def test_explain_an_unknown_entity_says_so(
    postgres_url: str, target: str, history_of_runs: dict[str, sim.Simulated]
) -> None:
    result = history(postgres_url, target, "explain", "C-99999")
    assert result.returncode == 0
    assert result.stdout.strip() == (
        "entity C-99999: no scores in the kept runs of any model (pruned runs keep no predictions)"
    )
    shown = json.loads(history(postgres_url, target, "explain", "nope", "--json").stdout)
    assert shown == {"entity_id": "nope", "model_name": None, "scores": []}


def _suffix(kind: str) -> str:
    return "" if kind == "bigint" else f"_{kind}"


# --- a real run ---------------------------------------------------------------------------


def test_a_real_run_shown_as_the_scorer_recorded_it(
    scorer_env: dict[str, str], postgres_url: str, churn_model: ChurnModel, target: str
) -> None:
    run_id = f"history-{uuid.uuid4().hex[:8]}"
    env = {**scorer_env, "SCORER_TARGET_SCHEMA": target, "SCORER_RUN_ID": run_id}
    scored = services.run_scorer(env, "run")
    assert scored.returncode == 0, scored.stdout + scored.stderr
    (row,) = run_rows(postgres_url, target, "run_id = %s", (run_id,))

    listed = json.loads(history(postgres_url, target, "runs", "--json").stdout)
    assert [(r["run_id"], r["rows_read"], r["model_version"]) for r in listed] == [
        (run_id, CUSTOMERS, churn_model.champion)
    ]
    shown = json.loads(history(postgres_url, target, "show", run_id, "--json").stdout)
    bins = row.pop("feature_bins")
    assert {key: shown[key] for key in row} == {key: as_json(value) for key, value in row.items()}
    assert shown["feature_bins"] == (sorted(bins) if bins else None)  # names, not edges
    text = history(postgres_url, target, "show", run_id).stdout
    assert (
        f"alias:champion → {churn_model.name} version {churn_model.champion} → MLflow run"
        f" {row['mlflow_run_id']}" in text
    )
    assert f"features.customers · snapshot {row['snapshot']} · entity ids bigint" in text

    ((score,),) = services.query(
        postgres_url,
        f'SELECT score FROM "{target}".predictions WHERE run_id = %s AND entity_id = 17',
        (run_id,),
    )
    explained = json.loads(history(postgres_url, target, "explain", "17", "--json").stdout)
    assert [(s["run_id"], s["score"], s["latest"]) for s in explained["scores"]] == [
        (run_id, score, True)
    ]

    # What they print holds ids and statistics, never a feature value.
    values = services.query(
        postgres_url,
        "SELECT total_charges::text, monthly_charges::text FROM features.customers"
        " WHERE customer_id BETWEEN 1 AND 50 AND total_charges > 1000",
    )
    everything = text + json.dumps(shown) + json.dumps(explained) + json.dumps(listed)
    everything += history(postgres_url, target, "explain", "17").stdout
    for value in {value for pair in values for value in pair}:
        assert value not in everything
