"""One run over many processes: shards of one run id, one version, one atomic publish.

Every shard is a real ``python -m scorer run`` process against the real PostgreSQL and MLflow
server, started in a shuffled order and partly at once, as an Indexed Job's pods would be.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import numpy as np
import psycopg2
import pytest
from mlflow import MlflowClient

from scorer.io import features
from scorer.postgres import db, wire
from scorer.postgres.identifiers import Relation, quote_identifier
from scorer.run import shard_plan
from tests.support import services
from tests.support.fixtures import NUMERIC_FEATURES, loaded_customers
from tests.support.stack import CUSTOMERS, FEATURES_TABLE, ChurnModel

pytestmark = pytest.mark.integration

BIG_TABLE = "features.customers_shards_big"
BIG_ROWS = 200_000
TEXT_VIEW = "features.customers_text_ids"
UUID_VIEW = "features.customers_uuid_ids"
DUP_VIEW = "features.customers_one_duplicate"
DUPLICATED_ID = CUSTOMERS - 10  # in the last shard's range


def new_run_id(prefix: str = "shards") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def start(env: dict[str, str]) -> subprocess.Popen[str]:
    return services.start_scorer(env, "run")


def summary(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return lines[-1]


def run_row(url: str, target: str, run_id: str) -> dict[str, Any] | None:
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT * FROM {quote_identifier(target)}.scoring_runs WHERE run_id = %s", (run_id,)
        )
        row = cur.fetchone()
        assert cur.description is not None
        names = [c.name for c in cur.description]
        return None if row is None else dict(zip(names, row, strict=True))


def published(url: str, target: str, run_id: str, parent: str = "predictions") -> dict[str, Any]:
    """What readers of ``parent`` see of the run: rows, distinct entities, versions."""
    rows = services.query(
        url,
        "SELECT count(*), count(DISTINCT entity_id), array_agg(DISTINCT model_version)"
        f" FROM {quote_identifier(target)}.{parent} WHERE run_id = %s",
        (run_id,),
    )
    count, distinct, versions = rows[0]
    return {"rows": count, "entities": distinct, "versions": sorted(versions or [])}


def latest_run(url: str, target: str, view: str = "latest_predictions") -> set[str]:
    return {
        row[0]
        for row in services.query(
            url, f"SELECT DISTINCT run_id FROM {quote_identifier(target)}.{view}"
        )
    }


def model_copies(url: str, target: str, run_id: str) -> int:
    """How many copies of its model's files the run keeps (one while it is open)."""
    found = services.query(
        url,
        f"SELECT count(*) FROM {quote_identifier(target)}.scoring_run_models WHERE run_id = %s",
        (run_id,),
    )
    return int(found[0][0])


def loaded_from(lines: list[dict[str, Any]]) -> tuple[str, str]:
    """Where a shard loaded its model from, and the digest of the files it loaded."""
    (line,) = [line for line in lines if line["event"] == "model.loaded"]
    return str(line["loaded_from"]), str(line["files_sha256"])


def scorer_tables(url: str, target: str) -> list[str]:
    """Every predictions table in the target schema that is not a parent."""
    return [
        row[0]
        for row in services.query(
            url,
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            r" WHERE n.nspname = %s AND c.relname LIKE 'predictions\_%%' AND c.relkind IN"
            " ('r', 'p') AND c.relname NOT IN ('predictions_text', 'predictions_uuid')"
            " ORDER BY 1",
            (target,),
        )
    ]


def assert_nothing_visible(url: str, target: str, run_id: str, parent: str) -> None:
    assert published(url, target, run_id, parent)["rows"] == 0
    row = run_row(url, target, run_id)
    assert row is not None
    assert row["status"] == "running"
    suffix = parent.removeprefix("predictions")
    assert run_id not in latest_run(url, target, f"latest_predictions{suffix}")


@pytest.fixture(scope="module")
def id_views(postgres_url: str) -> Iterator[None]:
    """The session's customers with text ids and with uuid ids, and with one duplicated id."""
    columns = ", ".join(NUMERIC_FEATURES)
    services.execute(
        postgres_url,
        f"CREATE VIEW {TEXT_VIEW} AS SELECT 'cust-' || customer_id AS customer_id, {columns}"
        f" FROM {FEATURES_TABLE};"
        f" CREATE VIEW {UUID_VIEW} AS SELECT md5(customer_id::text)::uuid AS customer_id,"
        f" {columns} FROM {FEATURES_TABLE};"
        f" CREATE VIEW {DUP_VIEW} AS SELECT customer_id, {columns} FROM {FEATURES_TABLE}"
        f" UNION ALL SELECT customer_id, {columns} FROM {FEATURES_TABLE}"
        f" WHERE customer_id = {DUPLICATED_ID}",
    )
    yield
    services.execute(postgres_url, f"DROP VIEW {TEXT_VIEW}, {UUID_VIEW}, {DUP_VIEW}")


@pytest.fixture(scope="module")
def big_table(postgres_url: str) -> Iterator[str]:
    with loaded_customers(postgres_url, BIG_TABLE, BIG_ROWS, seed=9) as table:
        yield table


def test_four_shards_in_random_order_publish_once_and_equal_a_one_shard_run(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str, churn_model: ChurnModel
) -> None:
    run_id, count = new_run_id(), 4
    order = [int(index) for index in np.random.default_rng().permutation(count)]
    first_two = [start(services.shard_env(scorer_env, run_id, count, index)) for index in order[:2]]
    results = [
        services.finish_scorer(process) for process in first_two
    ]  # these two ran at the same time
    loads = []
    for code, lines, err in results:
        assert code == 0, (order, lines, err)
        assert summary(lines)["outcome"] == "shard_done", order
        loads.append(loaded_from(lines))
    assert_nothing_visible(postgres_url, target_schema, run_id, "predictions")
    assert model_copies(postgres_url, target_schema, run_id) == 1
    code, lines, err = services.finish_scorer(
        start(services.shard_env(scorer_env, run_id, count, order[2]))
    )
    assert code == 0, (lines, err)
    assert summary(lines)["outcome"] == "shard_done"
    loads.append(loaded_from(lines))
    assert_nothing_visible(postgres_url, target_schema, run_id, "predictions")

    code, lines, err = services.finish_scorer(
        start(services.shard_env(scorer_env, run_id, count, order[3]))
    )
    assert code == 0, (lines, err)
    assert summary(lines)["outcome"] == "published"
    loads.append(loaded_from(lines))
    # One shard downloaded the model from MLflow (of the two that started at once, the other
    # waited for its record); every other loaded the run's copy of the very same files.
    assert sorted(source for source, _ in loads) == ["registry"] + ["run copy"] * 3, loads
    assert len({digest for _, digest in loads}) == 1, loads
    assert model_copies(postgres_url, target_schema, run_id) == 0  # gone with the publish
    assert published(postgres_url, target_schema, run_id) == {
        "rows": CUSTOMERS,
        "entities": CUSTOMERS,
        "versions": [churn_model.champion],
    }
    assert latest_run(postgres_url, target_schema) == {run_id}
    row = run_row(postgres_url, target_schema, run_id)
    assert row is not None
    assert (row["status"], row["shards"], row["rows_read"], row["rows_scored"]) == (
        "succeeded",
        count,
        CUSTOMERS,
        CUSTOMERS,
    )
    assert len(row["shard_split"]["bounds"]) == count - 1
    parts = services.shard_rows(postgres_url, target_schema, run_id)
    assert [(shard, status, attempts) for shard, status, attempts, *_ in parts] == [
        (index, "succeeded", 1) for index in range(count)
    ]
    assert sum(part[4] for part in parts) == CUSTOMERS
    assert all(part[4] > CUSTOMERS / count * 0.8 for part in parts)  # balanced by quantiles

    # `scorer show` names the shards.
    shown = services.run_scorer(
        {"SCORER_DATABASE_URL": postgres_url, "SCORER_TARGET_SCHEMA": target_schema},
        "show",
        run_id,
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    (line,) = [line for line in shown.stdout.splitlines() if line.startswith("shards ")]
    assert line.startswith("shards      4 shards, by entity id range · 0: succeeded ")

    # Every shard that reruns after the publish does nothing.
    code, lines, _ = services.finish_scorer(start(services.shard_env(scorer_env, run_id, count, 1)))
    assert (code, summary(lines)["outcome"]) == (0, "already_published")

    # The same rows in one run: the same scores per entity, the same statistics.
    single = new_run_id("single")
    one = services.run_scorer({**scorer_env, "SCORER_RUN_ID": single}, "run")
    assert one.returncode == 0, one.stdout + one.stderr
    alone = run_row(postgres_url, target_schema, single)
    assert alone is not None
    for name in ("rows_read", "rows_scored", "score_p50", "score_p90", "share_above_threshold"):
        assert row[name] == alone[name], name
    assert row["score_mean"] == pytest.approx(alone["score_mean"], rel=1e-12)
    assert row["score_histogram"] == alone["score_histogram"]
    assert row["feature_stats"] == alone["feature_stats"]
    differ = services.query(
        postgres_url,
        f"SELECT count(*) FROM {quote_identifier(target_schema)}.predictions AS a"
        f" FULL JOIN {quote_identifier(target_schema)}.predictions AS b"
        "  ON b.entity_id = a.entity_id AND b.run_id = %s"
        " WHERE a.run_id = %s AND (b.score IS DISTINCT FROM a.score"
        "  OR b.label IS DISTINCT FROM a.label)",
        (single, run_id),
    )
    assert differ == [(0,)]


def start_and_kill(env: dict[str, str]) -> int:
    """Start a shard, SIGKILL it once it is streaming; its exit code."""
    process = start(env)
    assert process.stdout is not None
    for line in process.stdout:
        if '"batch.scored"' in line:
            process.send_signal(signal.SIGKILL)
            break
    process.communicate(timeout=120)
    return process.returncode


def test_a_killed_shard_is_retried_and_the_run_is_exact(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str, big_table: str
) -> None:
    env = {**scorer_env, "SCORER_FEATURES_TABLE": big_table, "SCORER_CHUNK_ROWS": "1000"}
    run_id = new_run_id("killed")
    assert start_and_kill(services.shard_env(env, run_id, 2, 1)) == -signal.SIGKILL
    # Two processes of one shard at once: while a session holds shard 0 (as its live pod
    # would), another process of shard 0 leaves it to a retry (exit 1).
    key = f"scorer-shard:{target_schema}:{run_id}:0"
    with closing(psycopg2.connect(postgres_url)) as holder, holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
        twin = services.run_scorer(services.shard_env(env, run_id, 2, 0), "run")
    assert twin.returncode == 1, twin.stdout + twin.stderr
    assert services.json_lines(twin.stdout)[-1]["kind"] == "lock_busy"
    assert "shard 0 of run" in services.json_lines(twin.stdout)[-1]["error"]
    code, lines, err = services.finish_scorer(start(services.shard_env(env, run_id, 2, 0)))
    assert (code, summary(lines)["outcome"]) == (0, "shard_done"), (lines, err)
    assert_nothing_visible(postgres_url, target_schema, run_id, "predictions")
    assert [part[1] for part in services.shard_rows(postgres_url, target_schema, run_id)] == [
        "succeeded",
        "running",  # killed: its attempt left nothing but this row
    ]

    code, lines, err = services.finish_scorer(
        start(services.shard_env(env, run_id, 2, 1))
    )  # the pod's retry
    assert (code, summary(lines)["outcome"]) == (0, "published"), (lines, err)
    assert published(postgres_url, target_schema, run_id)["rows"] == BIG_ROWS
    assert published(postgres_url, target_schema, run_id)["entities"] == BIG_ROWS
    parts = services.shard_rows(postgres_url, target_schema, run_id)
    assert [(part[1], part[2]) for part in parts] == [("succeeded", 1), ("succeeded", 2)]
    assert sum(part[3] for part in parts) == BIG_ROWS


def test_a_shard_exiting_2_fails_the_run_and_nothing_is_published(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str, id_views: None
) -> None:
    env = {**scorer_env, "SCORER_FEATURES_TABLE": DUP_VIEW}
    run_id = new_run_id("dup")
    code, lines, err = services.finish_scorer(start(services.shard_env(env, run_id, 2, 0)))
    assert (code, summary(lines)["outcome"]) == (0, "shard_done"), (lines, err)
    assert len(scorer_tables(postgres_url, target_schema)) == 1  # shard 0's own table

    code, lines, err = services.finish_scorer(start(services.shard_env(env, run_id, 2, 1)))
    assert code == 2, (lines, err)
    assert summary(lines)["kind"] == "duplicate_entity", lines
    row = run_row(postgres_url, target_schema, run_id)
    assert row is not None
    assert (row["status"], row["failed_shard"]) == ("failed", 1), [
        (line["event"], line.get("error")) for line in lines
    ]
    assert str(row["error"]).startswith("shard 1 of 2 failed (duplicate_entity)")
    assert published(postgres_url, target_schema, run_id)["rows"] == 0
    assert scorer_tables(postgres_url, target_schema) == []  # shard 0's table went too
    assert model_copies(postgres_url, target_schema, run_id) == 0  # and the model's copy
    assert latest_run(postgres_url, target_schema) == set()

    # Another shard (a retry, or one that starts late) refuses: the run has failed.
    code, lines, _ = services.finish_scorer(start(services.shard_env(env, run_id, 2, 0)))
    assert (code, summary(lines)["kind"]) == (2, "run_failed")
    assert run_row(postgres_url, target_schema, run_id)["failed_shard"] == 1  # type: ignore[index]


def test_a_shard_stops_early_when_another_fails_the_run(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str, big_table: str
) -> None:
    env = {**scorer_env, "SCORER_FEATURES_TABLE": big_table, "SCORER_CHUNK_ROWS": "500"}
    run_id = new_run_id("stop")
    slow = start(services.shard_env(env, run_id, 2, 0))
    assert slow.stdout is not None
    for line in slow.stdout:
        if '"batch.scored"' in line:
            break
    slow.send_signal(signal.SIGSTOP)  # paused mid-stream, so it cannot finish meanwhile
    # A pod of the same run with a different shard count is refused, and fails the run.
    try:
        bad = services.run_scorer(services.shard_env(env, run_id, 3, 1), "run")
    finally:
        slow.send_signal(signal.SIGCONT)
    assert bad.returncode == 2
    last = services.json_lines(bad.stdout)[-1]
    assert last["kind"] == "config"
    assert "SCORER_SHARDS=2" in last["error"]
    code, lines, _ = services.finish_scorer(slow)
    assert (code, summary(lines)["kind"]) == (2, "run_failed")
    assert summary(lines)["rows_read"] < BIG_ROWS / 2  # it stopped before the end of its part
    row = run_row(postgres_url, target_schema, run_id)
    assert row is not None
    assert (row["status"], row["failed_shard"]) == ("failed", 1)
    assert published(postgres_url, target_schema, run_id)["rows"] == 0
    assert scorer_tables(postgres_url, target_schema) == []


def test_the_alias_moved_between_shard_starts_changes_no_version(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str, churn_model: ChurnModel
) -> None:
    client = MlflowClient(scorer_env["MLFLOW_TRACKING_URI"])
    run_id = new_run_id("alias")
    code, lines, err = services.finish_scorer(start(services.shard_env(scorer_env, run_id, 2, 1)))
    assert code == 0, (lines, err)
    other = next(v for v in churn_model.versions if v != churn_model.champion)
    client.set_registered_model_alias(churn_model.name, "champion", str(other))
    try:
        code, lines, err = services.finish_scorer(
            start(services.shard_env(scorer_env, run_id, 2, 0))
        )
    finally:
        client.set_registered_model_alias(churn_model.name, "champion", str(churn_model.champion))
    assert (code, summary(lines)["outcome"]) == (0, "published"), (lines, err)
    assert "model.recorded" in [line["event"] for line in lines]
    assert published(postgres_url, target_schema, run_id)["versions"] == [churn_model.champion]
    row = run_row(postgres_url, target_schema, run_id)
    assert row is not None
    assert row["model_version"] == churn_model.champion


def test_later_shards_score_the_runs_copy_of_the_model_without_mlflow(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str, churn_model: ChurnModel
) -> None:
    run_id = new_run_id("copy")
    code, lines, err = services.finish_scorer(start(services.shard_env(scorer_env, run_id, 2, 0)))
    assert (code, summary(lines)["outcome"]) == (0, "shard_done"), (lines, err)
    assert "model.shared" in [line["event"] for line in lines]
    opened = loaded_from(lines)
    assert opened[0] == "registry"
    assert model_copies(postgres_url, target_schema, run_id) == 1

    # The registry is gone (nothing listens on port 9): shard 1 needs nothing from it.
    offline = {
        **scorer_env,
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
        "SCORER_MLFLOW_RECORD": "false",
    }
    code, lines, err = services.finish_scorer(start(services.shard_env(offline, run_id, 2, 1)))
    assert (code, summary(lines)["outcome"]) == (0, "published"), (lines, err)
    assert loaded_from(lines) == ("run copy", opened[1])
    assert published(postgres_url, target_schema, run_id) == {
        "rows": CUSTOMERS,
        "entities": CUSTOMERS,
        "versions": [churn_model.champion],
    }
    assert model_copies(postgres_url, target_schema, run_id) == 0


@pytest.mark.parametrize(
    ("view", "parent"),
    [(TEXT_VIEW, "predictions_text"), (UUID_VIEW, "predictions_uuid")],
    ids=["text", "uuid"],
)
def test_text_and_uuid_ids_split_disjointly_and_completely(
    scorer_env: dict[str, str],
    postgres_url: str,
    target_schema: str,
    id_views: None,
    view: str,
    parent: str,
) -> None:
    env = {**scorer_env, "SCORER_FEATURES_TABLE": view}
    run_id, count = new_run_id(), 3
    processes = [start(services.shard_env(env, run_id, count, index)) for index in (2, 0)]
    for process in processes:
        code, lines, err = services.finish_scorer(process)
        assert code == 0, (lines, err)
    assert_nothing_visible(postgres_url, target_schema, run_id, parent)
    code, lines, err = services.finish_scorer(start(services.shard_env(env, run_id, count, 1)))
    assert (code, summary(lines)["outcome"]) == (0, "published"), (lines, err)
    assert published(postgres_url, target_schema, run_id, parent)["entities"] == CUSTOMERS
    missing = services.query(
        postgres_url,
        f"SELECT count(*) FROM {view} AS f LEFT JOIN {quote_identifier(target_schema)}.{parent}"
        " AS p ON p.entity_id = f.customer_id AND p.run_id = %s WHERE p.entity_id IS NULL",
        (run_id,),
    )
    assert missing == [(0,)]
    assert (
        sum(part[4] for part in services.shard_rows(postgres_url, target_schema, run_id))
        == CUSTOMERS
    )


@pytest.mark.parametrize("kind", ["bigint", "integer", "text", "uuid", "varchar"])
@pytest.mark.parametrize("count", [2, 5, 64])
def test_the_parts_are_disjoint_and_cover_every_row(
    postgres_url: str, kind: str, count: int
) -> None:
    """Each row meets exactly one shard's condition: NULL ids, duplicates, few distinct ids."""
    table = f"public.split_{kind}_{count}"
    value = {
        "bigint": "(g * 7919 % 1000)::bigint - 500",
        "integer": "(g % 37)::integer",
        "text": "CASE WHEN g % 3 = 0 THEN 'Zeta-' ELSE 'alpha ' END || (g % 400)",
        "uuid": "md5((g % 300)::text)::uuid",
        "varchar": "('id' || g % 9)::varchar(8)",
    }[kind]
    services.execute(
        postgres_url,
        f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} AS SELECT CASE WHEN g % 50 = 0"
        f" THEN NULL ELSE {value} END AS id, g AS n FROM generate_series(1, 3000) AS g",
    )
    try:
        with closing(db.connect(postgres_url)) as conn, conn.cursor() as cur:
            columns = features.describe(conn, Relation.parse(table))
            entity_kind = {"int8": "bigint", "int4": "bigint", "uuid": "uuid"}.get(
                columns["id"].typname, "text"
            )
            plan = features.FeaturePlan(
                Relation.parse(table),
                "id",
                entity_kind,  # type: ignore[arg-type]
                (),
                features.Snapshot("s", "s"),
                wire.RowLayout(()),
                "",
            )
            split = shard_plan.compute_split(cur, plan, count)
            assert split.ranges <= count
            conditions = [shard_plan.condition(cur, split, index, plan) for index in range(count)]
            hits = " + ".join(f"coalesce(({c}), false)::int" for c in conditions)  # as WHERE
            cur.execute(f"SELECT {hits} AS hits, count(*) FROM {table} GROUP BY 1")
            assert cur.fetchall() == [(1, 3000)]
    finally:
        services.execute(postgres_url, f"DROP TABLE {table}")


@pytest.mark.parametrize("relation", ["table", "view"])
def test_a_sampled_split_balances_the_shards(postgres_url: str, relation: str) -> None:
    """Over ``SAMPLE_ROWS`` ids the bounds come from a sample: of pages for a table, of rows
    for a view (which takes no TABLESAMPLE); either way each shard gets its share."""
    rows, count = 5 * shard_plan.SAMPLE_ROWS, 8
    table, view = "public.split_sampled", "public.split_sampled_view"
    services.execute(
        postgres_url,
        f"DROP VIEW IF EXISTS {view}; DROP TABLE IF EXISTS {table};"
        f" CREATE TABLE {table} AS SELECT md5(g::text) AS id, g AS n"
        f" FROM generate_series(1, {rows}) AS g; ANALYZE {table};"
        f" CREATE VIEW {view} AS SELECT * FROM {table}",
    )
    try:
        with closing(db.connect(postgres_url)) as conn, conn.cursor() as cur:
            plan = features.FeaturePlan(
                Relation.parse(table if relation == "table" else view),
                "id",
                "text",
                (),
                features.Snapshot("s", "s"),
                wire.RowLayout(()),
                "",
            )
            split = shard_plan.compute_split(cur, plan, count)
            assert split.ranges == count
            sizes = []
            for index in range(count):
                cur.execute(
                    f"SELECT count(*) FROM {plan.relation.sql}"
                    f" WHERE {shard_plan.condition(cur, split, index, plan)}"
                )
                sizes.append(db.one_value(cur))
            assert sum(sizes) == rows
            assert max(abs(size - rows / count) for size in sizes) < 0.05 * rows / count, sizes
    finally:
        services.execute(postgres_url, f"DROP VIEW {view}; DROP TABLE {table}")


def test_locks_admit_the_shards_of_one_run_and_time_out_a_stale_one(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    env = {**scorer_env, "SCORER_SNAPSHOT": "locks"}
    stale = new_run_id("stale")
    code, lines, err = services.finish_scorer(start(services.shard_env(env, stale, 2, 0)))
    assert (code, summary(lines)["outcome"]) == (0, "shard_done"), (lines, err)

    # Between its shards the run has no session; prune leaves it running (the time-out is
    # the scorer's, below).
    pruned = services.run_scorer({**env, "SCORER_KEEP_RUNS": "1"}, "prune")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert run_row(postgres_url, target_schema, stale)["status"] == "running"  # type: ignore[index]
    assert len(scorer_tables(postgres_url, target_schema)) == 1  # shard 0's table stays

    # Within the time-out the half-done run holds its model and snapshot: other runs wait.
    other = new_run_id("other")
    busy = services.run_scorer(services.shard_env(env, other, 2, 0), "run")
    assert busy.returncode == 1
    assert services.json_lines(busy.stdout)[-1]["kind"] == "lock_busy"
    single = services.run_scorer({**env, "SCORER_RUN_ID": new_run_id("single")}, "run")
    assert single.returncode == 1
    assert services.json_lines(single.stdout)[-1]["kind"] == "lock_busy"
    assert "SCORER_SHARD_TIMEOUT_SECONDS" in services.json_lines(single.stdout)[-1]["error"]
    # A pod of one shard cannot join the sharded run either.
    joined = services.run_scorer({**env, "SCORER_RUN_ID": stale}, "run")
    assert joined.returncode == 2
    assert services.json_lines(joined.stdout)[-1]["kind"] == "config"

    # Past it (no shard live, none started or finished since), the next run goes ahead.
    time.sleep(2.5)
    after = services.run_scorer(
        {**services.shard_env(env, other, 2, 0), "SCORER_SHARD_TIMEOUT_SECONDS": "2"}, "run"
    )
    assert after.returncode == 0, after.stdout + after.stderr
    row = run_row(postgres_url, target_schema, stale)
    assert row is not None
    assert row["status"] == "failed"
    assert str(row["error"]).startswith("abandoned:")
    assert [t for t in scorer_tables(postgres_url, target_schema) if "stale" in t] == []
    code, lines, _ = services.finish_scorer(start(services.shard_env(env, other, 2, 1)))
    assert (code, summary(lines)["outcome"]) == (0, "published")


def test_a_shard_killed_while_publishing_is_published_by_its_retry(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str, big_table: str
) -> None:
    env = {**scorer_env, "SCORER_FEATURES_TABLE": big_table, "SCORER_CHUNK_ROWS": "1000"}
    run_id = new_run_id("publish")
    code, lines, err = services.finish_scorer(start(services.shard_env(env, run_id, 2, 0)))
    assert (code, summary(lines)["outcome"]) == (0, "shard_done"), (lines, err)
    runs = f"{quote_identifier(target_schema)}.scoring_runs"
    last = start(services.shard_env(env, run_id, 2, 1))
    assert last.stdout is not None
    with closing(psycopg2.connect(postgres_url)) as reader, reader.cursor() as cur:
        for line in last.stdout:
            if '"shard.started"' in line:
                break
        # A reader's share lock on the run row, taken while the shard streams: the shard still
        # commits its part (FOR SHARE), and its publishing transaction (FOR UPDATE) waits.
        cur.execute(f"SELECT status FROM {runs} WHERE run_id = %s FOR SHARE", (run_id,))
        for line in last.stdout:
            if '"shard.succeeded"' in line:
                break
        time.sleep(1.0)
        last.send_signal(signal.SIGKILL)
        last.communicate(timeout=60)
    assert last.returncode == -signal.SIGKILL
    assert_nothing_visible(postgres_url, target_schema, run_id, "predictions")
    assert [part[1] for part in services.shard_rows(postgres_url, target_schema, run_id)] == [
        "succeeded",
        "succeeded",
    ]

    code, lines, err = services.finish_scorer(start(services.shard_env(env, run_id, 2, 1)))
    assert (code, summary(lines)["outcome"]) == (0, "published"), (lines, err)
    assert "shard.already_succeeded" in [line["event"] for line in lines]
    assert summary(lines)["rows_scored"] == BIG_ROWS
    assert published(postgres_url, target_schema, run_id)["entities"] == BIG_ROWS
    assert [part[2] for part in services.shard_rows(postgres_url, target_schema, run_id)] == [1, 1]
