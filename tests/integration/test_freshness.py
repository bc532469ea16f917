"""``SCORER_MAX_SNAPSHOT_AGE`` against a real PostgreSQL: a stale newest snapshot is refused
and nothing is written; a fresh one is scored; where a snapshot has no time, the setting is."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from scorer.postgres.identifiers import quote_identifier
from tests.support import services

pytestmark = pytest.mark.integration


@pytest.fixture
def snapshots(postgres_url: str) -> Iterator[str]:
    """``features.customers`` twice, as the snapshots 3 and 4 days ago (dates, UTC), with the
    same rows also under a ``timestamp`` 90 minutes old and an integer snapshot column."""
    table = f"features.fresh_{secrets.token_hex(4)}"
    services.execute(
        postgres_url,
        f"CREATE TABLE {table} AS"
        " SELECT c.*, ((now() AT TIME ZONE 'UTC')::date - d) AS snapshot_date,"
        "  (now() AT TIME ZONE 'UTC') - interval '90 minutes' - d * interval '1 day' AS loaded_at,"
        "  d AS batch"
        " FROM features.customers c CROSS JOIN (VALUES (3), (4)) AS s(d)",
    )
    yield table
    services.execute(postgres_url, f"DROP TABLE {table}")


def run(env: dict[str, str], table: str, **settings: str) -> tuple[int, dict[str, Any]]:
    result = services.run_scorer({**env, "SCORER_FEATURES_TABLE": table, **settings}, "run")
    return result.returncode, services.json_lines(result.stdout)[-1]


def written(url: str, target: str) -> tuple[int, int]:
    quoted = quote_identifier(target)
    ((runs,),) = services.query(url, f"SELECT count(*) FROM {quoted}.scoring_runs")
    ((rows,),) = services.query(url, f"SELECT count(*) FROM {quoted}.predictions")
    return int(runs), int(rows)


def test_a_stale_snapshot_is_refused_and_nothing_is_written(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str, snapshots: str
) -> None:
    code, failure = run(
        scorer_env, snapshots, SCORER_SNAPSHOT_COLUMN="snapshot_date", SCORER_MAX_SNAPSHOT_AGE="60h"
    )
    assert code == 2, failure
    assert failure["kind"] == "stale_snapshot"
    assert "older than SCORER_MAX_SNAPSHOT_AGE (60 h)" in failure["error"]
    assert written(postgres_url, target_schema) == (0, 0)


def test_a_fresh_snapshot_is_scored_and_a_named_one_whatever_its_age(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str, snapshots: str
) -> None:
    # A date counts from its midnight UTC: 3 days ago is 72 h old at least, 96 h at most.
    code, summary = run(
        scorer_env, snapshots, SCORER_SNAPSHOT_COLUMN="snapshot_date", SCORER_MAX_SNAPSHOT_AGE="4d"
    )
    assert (code, summary["event"]) == (0, "run.succeeded"), summary
    # A timestamp is read as UTC: 3 days and 90 minutes old.
    code, failure = run(
        scorer_env, snapshots, SCORER_SNAPSHOT_COLUMN="loaded_at", SCORER_MAX_SNAPSHOT_AGE="3d1h"
    )
    assert (code, failure["kind"]) == (2, "stale_snapshot"), failure
    code, summary = run(
        scorer_env, snapshots, SCORER_SNAPSHOT_COLUMN="loaded_at", SCORER_MAX_SNAPSHOT_AGE="3d2h"
    )
    assert (code, summary["event"]) == (0, "run.succeeded"), summary
    # A snapshot asked for by name is scored whatever its age (a backfill, a rerun).
    ((oldest,),) = services.query(postgres_url, f"SELECT min(snapshot_date)::text FROM {snapshots}")
    code, summary = run(
        scorer_env,
        snapshots,
        SCORER_SNAPSHOT_COLUMN="snapshot_date",
        SCORER_SNAPSHOT=oldest,
        SCORER_MAX_SNAPSHOT_AGE="1h",
    )
    assert (code, summary["snapshot"]) == (0, oldest), summary
    assert written(postgres_url, target_schema)[0] == 3


@pytest.mark.parametrize(
    ("column", "named"), [("batch", "snapshot column 'batch' is integer"), (None, "no SCORER_")]
)
def test_the_limit_is_refused_where_a_snapshot_has_no_time(
    scorer_env: dict[str, str],
    postgres_url: str,
    target_schema: str,
    snapshots: str,
    column: str | None,
    named: str,
) -> None:
    settings = {"SCORER_MAX_SNAPSHOT_AGE": "36h"}
    if column is not None:
        settings["SCORER_SNAPSHOT_COLUMN"] = column
    code, failure = run(scorer_env, snapshots, **settings)
    assert (code, failure["kind"]) == (2, "config"), failure
    assert named in failure["error"]
    assert written(postgres_url, target_schema) == (0, 0)
