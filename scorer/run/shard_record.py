"""The ``scoring_run_shards`` rows: one per shard of a sharded run, beside its run's
``scoring_runs`` row (``scorer.run.record``)."""

from __future__ import annotations

import json
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from scorer.errors import ReferenceMovedError
from scorer.postgres import db
from scorer.postgres.identifiers import quote_identifier
from scorer.run import drift
from scorer.run.gate import FeatureCounts
from scorer.run.record import Counts
from scorer.run.statistics import ScoreStats


@dataclass(frozen=True)
class ShardKey:
    """Which shard's row: the target schema, the run id and the shard's index."""

    schema: str
    run_id: str
    shard: int


@dataclass(frozen=True)
class ShardResult:
    """What a shard scored, as its row records it when its part commits."""

    counts: Counts
    stats: ScoreStats
    feature_counts: FeatureCounts
    timings: dict[str, float]
    staging_table: str | None  # None: the shard had no range to read
    drift: drift.Evidence | None  # None: the shard had no range to read


@dataclass(frozen=True)
class ShardRow:
    """A succeeded shard's row, as the publishing shard merges it."""

    shard: int
    rows_read: int
    rows_rejected_by: dict[str, int]
    timings: dict[str, float]
    stats: dict[str, Any]
    histogram: npt.NDArray[np.int64]
    staging_table: str | None
    drift: drift.Evidence | None


def _table(schema: str) -> str:
    return f"{quote_identifier(schema)}.scoring_run_shards"


def open_shard(cur: db.Cursor, key: ShardKey, pod: str | None) -> int | None:
    """Open (or reopen, for a retry) this shard's row; its attempt number, or ``None`` when
    the shard already succeeded."""
    table = _table(key.schema)
    cur.execute(
        f"INSERT INTO {table} (run_id, shard, status, started_at, k8s_pod)"
        " VALUES (%s, %s, 'running', now(), %s)"
        " ON CONFLICT (run_id, shard) DO UPDATE SET status = 'running',"
        f" attempts = {table}.attempts + 1, started_at = now(),"
        " finished_at = NULL, error = NULL, k8s_pod = EXCLUDED.k8s_pod"
        f" WHERE {table}.status <> 'succeeded' RETURNING attempts",
        (key.run_id, key.shard, pod),
    )
    row = cur.fetchone()
    return None if row is None else int(row[0])


def succeed(cur: db.Cursor, key: ShardKey, result: ShardResult) -> None:
    """Mark the shard succeeded with its counts, timings, score statistics and drift evidence."""
    counts, stats = result.counts, result.stats
    shard_stats = {
        "count": stats.count,
        "total": stats.total,
        "above": stats.above,
        "extremes": stats.extremes,
        "nulls": result.feature_counts.nulls,
        "empties": result.feature_counts.empties,
    }
    cur.execute(
        f"UPDATE {_table(key.schema)} SET status = 'succeeded', finished_at = now(),"
        " rows_read = %s, rows_scored = %s, rows_rejected = %s,"
        " rows_rejected_by = %s, timings = %s, stats = %s, histogram = %s,"
        " staging_table = %s, feature_drift = %s WHERE run_id = %s AND shard = %s",
        (
            counts.read,
            stats.count,
            counts.rejected,
            json.dumps(dict(counts.rejected_by)),
            json.dumps(result.timings),
            json.dumps(shard_stats),
            _pack(stats.histogram),
            result.staging_table,
            None if result.drift is None else json.dumps(result.drift.as_json()),
            key.run_id,
            key.shard,
        ),
    )


def fail(
    cur: db.Cursor, key: ShardKey, error: str, rows_read: int, timings: dict[str, float]
) -> None:
    """Mark this shard's running attempt failed (its retry redoes it)."""
    cur.execute(
        f"UPDATE {_table(key.schema)} SET status = 'failed', finished_at = now(),"
        " error = %s, rows_read = %s, timings = %s"
        " WHERE run_id = %s AND shard = %s AND status = 'running'",
        (error, rows_read, json.dumps(timings), key.run_id, key.shard),
    )


def succeeded(cur: db.Cursor, schema: str, run_id: str) -> list[ShardRow]:
    """The run's succeeded shards, by index."""
    cur.execute(
        "SELECT shard, rows_read, rows_rejected_by, timings, stats, histogram, staging_table,"
        f" feature_drift FROM {_table(schema)} WHERE run_id = %s AND status = 'succeeded'"
        " ORDER BY shard",
        (run_id,),
    )
    return [
        ShardRow(
            shard=int(shard),
            rows_read=int(read),
            rows_rejected_by={k: int(v) for k, v in (rejected_by or {}).items()},
            timings={step: float(seconds) for step, seconds in (timings or {}).items()},
            stats=stats,
            histogram=_unpack(histogram),
            staging_table=None if staging is None else str(staging),
            drift=None if evidence is None else drift.Evidence.from_json(evidence),
        )
        for shard, read, rejected_by, timings, stats, histogram, staging, evidence in cur.fetchall()
    ]


def merged(rows: list[ShardRow]) -> tuple[Counts, ScoreStats, FeatureCounts]:
    """The whole run's counts and statistics: sums of the shards' (exact, not averages)."""
    counts, stats, feature_counts = Counts(), ScoreStats(), FeatureCounts()
    for row in rows:
        counts.read += row.rows_read
        counts.rejected_by.update(Counter(row.rows_rejected_by))
        stats.count += int(row.stats["count"])
        stats.total += float(row.stats["total"])
        stats.above += int(row.stats["above"])
        stats.extremes += int(row.stats["extremes"])
        stats.histogram += row.histogram
        feature_counts.add(row.stats["nulls"], row.stats["empties"])
    return counts, stats, feature_counts


def merged_drift(rows: list[ShardRow]) -> drift.Evidence | None:
    """The whole run's drift evidence: the sum of its shards' (``drift.Evidence.merge``); None
    when a shard that scored recorded none (an earlier scorer version scored it).

    Raises ``ReferenceMovedError`` when the shards binned against different reference runs.
    """
    parts = [row.drift for row in rows if row.staging_table is not None]
    evidence = [part for part in parts if part is not None]
    if not evidence or len(evidence) < len(parts):
        return None
    references = sorted({str(part.reference_run_id) for part in evidence})
    if len(references) > 1:
        raise ReferenceMovedError(
            f"this run's shards binned their features against different reference runs"
            f" ({', '.join(references)}: a run published while they scored); nothing"
            " published. A retry cannot re-bin them: start a new run (a new Job)"
        )
    return drift.Evidence.merge(evidence)


def _pack(histogram: npt.NDArray[np.int64]) -> bytes:
    """A shard's fine score histogram, compressed (mostly zeros) for its row."""
    return zlib.compress(histogram.astype("<i8").tobytes(), 6)


def _unpack(data: bytes | memoryview) -> npt.NDArray[np.int64]:
    """The histogram ``_pack`` stored."""
    return np.frombuffer(zlib.decompress(bytes(data)), dtype="<i8").astype(np.int64)
