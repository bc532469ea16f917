"""Runs written straight into a target schema, shaped exactly as the scorer writes them.

A run's partition is made by ``sink.RunPartition`` itself (a table ``LIKE`` the parent with
the run's lineage defaults, rows inserted, the primary key built and the table attached),
and its ``scoring_runs`` row carries every column a real run fills, evidence included. Dates
are whatever the test says, so a year of nightly runs takes a second.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest

from scorer.io import sink
from tests.support import services

NOW = datetime.now(UTC)


@pytest.fixture
def target(target_schema: str) -> str:
    """This test's own migrated target schema (conftest's ``target_schema``)."""
    return target_schema


@dataclass(frozen=True)
class Simulated:
    """One simulated run: what was written, to compare with what the commands print."""

    run_id: str
    model_name: str
    snapshot: str
    entity_type: str
    rows: int
    finished_at: datetime
    status: str


def entity(kind: str, index: int) -> str:
    """The ``index``-th entity id of an id type, as text."""
    if kind == "bigint":
        return str(index)
    if kind == "uuid":
        return str(uuid.UUID(int=index))
    return f"C-{index:05d}"


def _entity_sql(kind: str) -> str:
    if kind == "bigint":
        return "i::bigint"
    if kind == "uuid":
        return "lpad(to_hex(i), 32, '0')::uuid"
    return "'C-' || lpad(i::text, 5, '0')"


def histogram_of(scores: Sequence[float]) -> list[int]:
    """The 1000-bin histogram of ``scores`` in [0, 1]."""
    counts = [0] * 1000
    for score in scores:
        counts[min(int(score * 1000), 999)] += 1
    return counts


def score(run_index: int, entity_index: int, shift: float = 0.0) -> float:
    """A deterministic score in [0, 1) for an entity in a run."""
    return min(
        ((entity_index * 7919 + run_index * 104729) % 1000) / 1000 * (1 - shift) + shift, 0.999
    )


def insert_run(
    url: str,
    target: str,
    run_id: str,
    *,
    model: str = "churn",
    snapshot: str,
    finished_at: datetime,
    status: str = "succeeded",
    entity_type: str = "bigint",
    rows: int = 20,
    run_index: int = 0,
    version: int = 2,
    shift: float = 0.0,
    extra: dict[str, Any] | None = None,
) -> Simulated:
    """Write one run: its partition (if it succeeded) and its ``scoring_runs`` row."""
    started_at = finished_at - timedelta(seconds=90 + run_index)
    scores = [score(run_index, i, shift) for i in range(1, rows + 1)]
    published = status == "succeeded"
    columns: dict[str, Any] = {
        "run_id": run_id,
        "status": status,
        "model_name": model,
        "model_selector": "alias:champion",
        "model_version": version,
        "mlflow_run_id": f"mlflow{version:02d}{'0' * 24}",
        "model_source": f"models:/m-{version:04d}",
        "model_id": f"m-{version:04d}",
        "model_flavor": "xgboost",
        "model_signature": json.dumps({"inputs": [{"name": "tenure", "type": "long"}]}),
        "threshold": 0.5,
        "snapshot": snapshot,
        "snapshot_column": "snapshot_date",
        "snapshot_order": snapshot,
        "entity_type": entity_type,
        "score_kind": "probability",
        "score_method": "xgboost Booster.inplace_predict",
        "positive_class": "1",
        "features_relation": "features.telco",
        "trigger": "scheduled",
        "started_at": started_at,
        "finished_at": finished_at if status != "running" else None,
        "timings": json.dumps({"resolve": 0.05, "score": 1.2, "publish": 0.01}),
        "rows_read": rows,
        "rows_scored": rows if published else 0,
        "rows_rejected": 0,
        "rows_rejected_by": json.dumps({}),
        "score_mean": sum(scores) / rows if published else None,
        "score_p50": sorted(scores)[rows // 2] if published else None,
        "score_p90": sorted(scores)[rows * 9 // 10] if published else None,
        "share_above_threshold": sum(s >= 0.5 for s in scores) / rows if published else None,
        "scorer_version": "0.1.0",
        "k8s_namespace": "scoring",
        "k8s_cronjob": f"{model}-nightly",
        "k8s_job": f"{model}-nightly-{run_index}",
        "k8s_pod": f"{model}-nightly-{run_index}-x7k2p",
        "k8s_node": "worker-1",
        "image": "scorer:0.1.0",
        "score_histogram": json.dumps(histogram_of(scores)) if published else None,
        "feature_stats": json.dumps({"tenure": {"null_share": 0.0}}),
        **(extra or {}),
    }
    names = ", ".join(columns)
    values = ", ".join(f"%({name})s" for name in columns)
    with closing(psycopg2.connect(url)) as conn:
        with conn.cursor() as cur:
            cur.execute(f'INSERT INTO "{target}".scoring_runs ({names}) VALUES ({values})', columns)
            if published:
                lineage = sink.LineageColumns(run_id, model, version, snapshot, started_at)
                partition = sink.RunPartition(target, lineage, entity_type, labels=True)
                partition.create(cur)
                cur.execute(
                    f"INSERT INTO {partition.table} (entity_id, score, label)"
                    f" SELECT {_entity_sql(entity_type)}, s, (s >= 0.5)::int"
                    " FROM unnest(%s::float8[]) WITH ORDINALITY AS t(s, i)",
                    (scores,),
                )
                partition.attach(cur)
        conn.commit()
    return Simulated(run_id, model, snapshot, entity_type, rows, finished_at, status)


def nightly(
    url: str,
    target: str,
    nights: int,
    *,
    model: str = "churn",
    entity_type: str = "bigint",
    rows: int = 10,
) -> list[Simulated]:
    """``nights`` nightly runs, the newest finished an hour ago, one a day before (newest first).

    Run ``i`` scores snapshot ``today - i days`` with ``rows + i`` rows, so every run's row
    count is its own.
    """
    made = []
    for night in range(nights):
        finished = NOW - timedelta(days=night, hours=1)
        snapshot = (finished - timedelta(hours=3)).date().isoformat()
        made.append(
            insert_run(
                url,
                target,
                f"{model}-nightly-{night:03d}",
                model=model,
                snapshot=snapshot,
                finished_at=finished,
                entity_type=entity_type,
                rows=rows + night,
                run_index=night,
            )
        )
    return made


def statuses(url: str, target: str) -> dict[str, str]:
    """Every run's status."""
    rows = services.query(url, f'SELECT run_id, status FROM "{target}".scoring_runs')
    return {str(run_id): str(status) for run_id, status in rows}


def partition_exists(url: str, target: str, run_id: str) -> bool:
    """Whether the run's partition table exists."""
    name = f'"{target}".{sink.partition_name(run_id)}'
    return services.query(url, "SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0] is True


def row_counts(url: str, target: str, parent: str = "predictions") -> dict[str, int]:
    """Rows per run in a predictions parent."""
    rows = services.query(url, f'SELECT run_id, count(*) FROM "{target}".{parent} GROUP BY run_id')
    return {str(run_id): int(count) for run_id, count in rows}


def view_runs(url: str, target: str, view: str) -> dict[tuple[str, str], str]:
    """(model, snapshot) -> run id of what a view shows."""
    rows = services.query(
        url, f'SELECT DISTINCT model_name, snapshot, run_id FROM "{target}".{view}'
    )
    return {(str(model), str(snapshot)): str(run_id) for model, snapshot, run_id in rows}
