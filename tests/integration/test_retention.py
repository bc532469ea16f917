"""``scorer prune`` against a real PostgreSQL: the rules, what always stays, what failed runs
leave behind, and pruning beside a run that is scoring.

Each test prunes a target schema of its own (``simulated.target``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg2
import pytest

from scorer.io import sink
from scorer.postgres import locks, schema
from tests.support import services
from tests.support import simulated as sim
from tests.support.fixtures import loaded_customers
from tests.support.simulated import NOW, target
from tests.support.stack import ChurnModel

pytestmark = pytest.mark.integration
__all__ = ["target"]  # the fixture, imported

BIG_TABLE = "features.customers_prune"
BIG_ROWS = 400_000


def env_of(url: str, target: str) -> dict[str, str]:
    return {"SCORER_DATABASE_URL": url, "SCORER_TARGET_SCHEMA": target}


def prune(url: str, target: str, *args: str) -> tuple[int, list[dict[str, Any]]]:
    result = services.run_scorer(env_of(url, target), "prune", *args)
    assert result.stderr == "", result.stderr
    return result.returncode, services.json_lines(result.stdout)


def events_named(lines: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["event"] == event]


@pytest.mark.parametrize(
    ("flag", "value", "kept"),
    [("--keep-runs", "7", 7), ("--keep-days", "14", 14)],
    ids=["K=7", "D=14"],
)
def test_sixty_nightly_runs_are_pruned_to_the_rule(
    postgres_url: str, target: str, flag: str, value: str, kept: int
) -> None:
    made = sim.nightly(postgres_url, target, 60)  # newest first, one a night
    others = sim.nightly(postgres_url, target, 20, model="telco", entity_type="text")
    counts = sim.row_counts(postgres_url, target)
    latest = sim.view_runs(postgres_url, target, "latest_predictions")
    published = sim.view_runs(postgres_url, target, "published_predictions")

    code, lines = prune(postgres_url, target, flag, value, "--model-name", "churn")

    assert code == 0, lines
    stay, gone = made[:kept], made[kept:]
    status = sim.statuses(postgres_url, target)
    assert {run.run_id for run in made if status[run.run_id] == "succeeded"} == {
        run.run_id for run in stay
    }
    assert {run.run_id for run in made if status[run.run_id] == "pruned"} == {
        run.run_id for run in gone
    }
    assert all(status[run.run_id] == "succeeded" for run in others)  # another model's runs
    for run in gone:
        assert not sim.partition_exists(postgres_url, target, run.run_id)
    for run in [*stay, *others]:
        assert sim.partition_exists(postgres_url, target, run.run_id)
    # The kept runs' rows are exactly what they were; the latest run is untouched.
    assert sim.row_counts(postgres_url, target) == {run.run_id: counts[run.run_id] for run in stay}
    assert sim.view_runs(postgres_url, target, "latest_predictions") == latest
    assert latest == {("churn", made[0].snapshot): made[0].run_id}
    stay_ids = {run.run_id for run in [*stay, *others]}
    after = sim.view_runs(postgres_url, target, "published_predictions")
    assert after == {key: run_id for key, run_id in published.items() if run_id in stay_ids}
    pruned_at = services.query(
        postgres_url,
        f'SELECT count(*) FROM "{target}".scoring_runs WHERE status = %s AND pruned_at > now()'
        " - interval '5 minutes'",
        ("pruned",),
    )
    assert pruned_at == [(len(gone),)]
    assert sorted(line["run_id"] for line in events_named(lines, "prune.pruned")) == sorted(
        run.run_id for run in gone
    )
    done = lines[-1]
    assert (done["event"], done["pruned"], done["kept"], done["busy"]) == (
        "prune.done",
        len(gone),
        kept,
        0,
    )

    again_code, again = prune(postgres_url, target, flag, value, "--model-name", "churn")
    assert again_code == 0
    assert again[-1]["pruned"] == 0  # idempotent: the rows stay, as history, with nothing to drop


def test_a_run_is_kept_when_either_rule_keeps_it(postgres_url: str, target: str) -> None:
    made = sim.nightly(postgres_url, target, 10)
    # A backfill two days ago re-scored night 8's snapshot: the newest run of that snapshot.
    backfill = sim.insert_run(
        postgres_url,
        target,
        "churn-backfill-8",
        snapshot=made[8].snapshot,
        finished_at=NOW - timedelta(days=2),
        rows=33,
        run_index=99,
    )
    published = sim.view_runs(postgres_url, target, "published_predictions")
    assert published[("churn", made[8].snapshot)] == backfill.run_id

    code, lines = prune(postgres_url, target, "--keep-runs", "3", "--keep-days", "5")

    assert code == 0, lines
    status = sim.statuses(postgres_url, target)
    kept = {run_id for run_id, value in status.items() if value == "succeeded"}
    # K=3: the three newest snapshots; D=5: the runs of the last five days, the backfill too.
    assert kept == {run.run_id for run in made[:5]} | {backfill.run_id}
    assert {run_id for run_id, value in status.items() if value == "pruned"} == {
        run.run_id for run in made[5:]
    }
    after = sim.view_runs(postgres_url, target, "published_predictions")
    assert after[("churn", made[8].snapshot)] == backfill.run_id  # never an older run of it
    assert all(after[key] == run_id for key, run_id in published.items() if run_id in kept)


def test_the_latest_run_stays_whatever_the_rules_say(postgres_url: str, target: str) -> None:
    # The newest snapshot was last published 40 days ago; a backfill of an older snapshot
    # finished yesterday. latest_predictions shows the former: it stays.
    old = [
        sim.insert_run(
            postgres_url,
            target,
            f"churn-old-{night}",
            snapshot=f"2026-01-{10 - night:02d}",
            finished_at=NOW - timedelta(days=40 + night),
            run_index=night,
        )
        for night in range(5)
    ]
    backfill = sim.insert_run(
        postgres_url,
        target,
        "churn-backfill",
        snapshot="2025-12-01",
        finished_at=NOW - timedelta(days=1),
    )
    latest = sim.view_runs(postgres_url, target, "latest_predictions")
    assert latest == {("churn", old[0].snapshot): old[0].run_id}

    code, lines = prune(postgres_url, target, "--keep-days", "7")

    assert code == 0, lines
    assert sim.view_runs(postgres_url, target, "latest_predictions") == latest
    status = sim.statuses(postgres_url, target)
    assert status[old[0].run_id] == "succeeded"
    assert status[backfill.run_id] == "succeeded"
    assert [status[run.run_id] for run in old[1:]] == ["pruned"] * 4


def test_dry_run_lists_what_would_go_and_changes_nothing(postgres_url: str, target: str) -> None:
    made = sim.nightly(postgres_url, target, 12)
    before = sim.statuses(postgres_url, target)

    code, lines = prune(postgres_url, target, "--keep-runs", "4", "--dry-run")

    assert code == 0, lines
    listed = events_named(lines, "prune.would_prune")
    assert [line["run_id"] for line in listed] == [run.run_id for run in reversed(made[4:])]
    assert all(line["partition"].endswith(sink.partition_name(line["run_id"])) for line in listed)
    assert not events_named(lines, "prune.pruned")
    assert (lines[-1]["event"], lines[-1]["would_prune"]) == ("prune.planned", 8)
    assert sim.statuses(postgres_url, target) == before
    assert all(sim.partition_exists(postgres_url, target, run.run_id) for run in made)


@contextmanager
def holding_run_lock(url: str, target: str, model: str, snapshot: str) -> Iterator[None]:
    """Hold a run's (model, snapshot) advisory lock, as a live run's session does."""
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            key = locks.run(target, model, snapshot)
            cur.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
        yield


def unattached_table(url: str, target: str, run_id: str, model: str = "churn") -> str:
    """A committed, unattached run table, as an interrupted manual operation leaves one."""
    lineage = sink.LineageColumns(run_id, model, 1, "2026-01-01", NOW)
    partition = sink.RunPartition(target, lineage, "bigint", labels=True)
    with closing(psycopg2.connect(url)) as conn:
        with conn.cursor() as cur:
            partition.create(cur)
            cur.execute(
                f"INSERT INTO {partition.table} (entity_id, score, label) VALUES (1, 0.5, 1)"
            )
        conn.commit()
    return sink.partition_name(run_id)


def table_exists(url: str, target: str, table: str) -> bool:
    found = services.query(url, "SELECT to_regclass(%s) IS NOT NULL", (f'"{target}".{table}',))
    return bool(found[0][0])


def test_what_failed_runs_leave_behind_is_cleaned_up(postgres_url: str, target: str) -> None:
    when = NOW - timedelta(hours=2)
    failed = sim.insert_run(
        postgres_url, target, "failed-1", snapshot="s1", finished_at=when, status="failed"
    )
    dead = sim.insert_run(
        postgres_url, target, "killed-1", snapshot="s2", finished_at=when, status="running"
    )
    live = sim.insert_run(
        postgres_url, target, "live-1", snapshot="s3", finished_at=when, status="running"
    )
    published = sim.insert_run(postgres_url, target, "ok-1", snapshot="s4", finished_at=when)
    left_by_failed = unattached_table(postgres_url, target, failed.run_id)
    left_by_dead = unattached_table(postgres_url, target, dead.run_id)
    of_live = unattached_table(postgres_url, target, live.run_id)
    of_no_row = unattached_table(postgres_url, target, "never-recorded")
    services.execute(
        postgres_url,
        f'CREATE TABLE "{target}".predictions_backup (LIKE "{target}".predictions INCLUDING ALL)',
    )

    with holding_run_lock(postgres_url, target, live.model_name, live.snapshot):
        code, lines = prune(postgres_url, target, "--keep-runs", "1")

    assert code == 0, lines
    status = sim.statuses(postgres_url, target)
    assert status == {
        failed.run_id: "failed",  # history: its row stays as it was
        dead.run_id: "failed",  # running, but no session held its lock
        live.run_id: "running",  # its session holds the lock: still scoring
        published.run_id: "succeeded",
    }
    (error,) = services.query(
        postgres_url,
        f'SELECT error FROM "{target}".scoring_runs WHERE run_id = %s',
        (dead.run_id,),
    )[0]
    assert error.startswith("abandoned:")
    assert [line["run_id"] for line in events_named(lines, "prune.abandoned")] == [dead.run_id]
    for table in (left_by_failed, left_by_dead, of_no_row):
        assert not table_exists(postgres_url, target, table)
    assert table_exists(postgres_url, target, of_live)
    assert table_exists(postgres_url, target, "predictions_backup")  # not the scorer's
    assert sim.partition_exists(postgres_url, target, published.run_id)
    assert lines[-1]["abandoned"] == 1
    assert lines[-1]["orphans_dropped"] == 3


def test_a_detached_published_partition_is_left_alone(postgres_url: str, target: str) -> None:
    run = sim.insert_run(postgres_url, target, "detached-1", snapshot="s", finished_at=NOW)
    table = sink.partition_name(run.run_id)
    services.execute(
        postgres_url, f'ALTER TABLE "{target}".predictions DETACH PARTITION "{target}".{table}'
    )
    code, lines = prune(postgres_url, target, "--keep-runs", "1")
    assert code == 0
    assert table_exists(postgres_url, target, table)
    assert [line["run_id"] for line in events_named(lines, "prune.detached_published")] == [
        run.run_id
    ]


def test_one_prune_per_schema_at_a_time(postgres_url: str, target: str) -> None:
    sim.nightly(postgres_url, target, 3)
    with closing(psycopg2.connect(postgres_url)) as holder:  # another prune, still at work
        holder.autocommit = True
        with holder.cursor() as cur:
            key = f"scorer-prune:{target}"
            cur.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
        second = services.start_scorer(env_of(postgres_url, target), "prune", "--keep-runs", "1")
        deadline = time.monotonic() + 60
        while not services.query(
            postgres_url,
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'scorer prune'"
            " AND wait_event = 'advisory'",
        ):
            assert time.monotonic() < deadline, "the second prune never waited"
            assert second.poll() is None, second.communicate()
            time.sleep(0.02)
        assert sim.statuses(postgres_url, target)["churn-nightly-002"] == "succeeded"
    out, err = second.communicate(timeout=60)  # the first prune is done: the second goes on
    assert second.returncode == 0, out + err
    assert services.json_lines(out)[-1]["pruned"] == 2


def test_runs_from_before_partitioning_go_together(postgres_url: str) -> None:
    name = f"t_legacy_{uuid.uuid4().hex[:8]}"
    with closing(psycopg2.connect(postgres_url)) as conn:
        schema.migrate(conn, name, up_to=1)
    try:
        for run_id, age, snapshot in (
            ("v1-a", "30 days", "2025-11-01"),
            ("v1-b", "29 days", "2025-11-02"),
        ):
            services.execute(
                postgres_url,
                f"INSERT INTO {name}.scoring_runs (run_id, status, model_name, model_selector,"
                " threshold, snapshot, features_relation, trigger, started_at, finished_at,"
                " scorer_version) VALUES (%s, 'succeeded', 'churn', 'version:1', 0.5, %s,"
                " 'f', 'local', now() - %s::interval, now() - %s::interval, '0.1.0')",
                (run_id, snapshot, age, age),
            )
            services.execute(
                postgres_url,
                f"INSERT INTO {name}.predictions SELECT %s, g, 0.25, 0, 'churn', 1, 's', now()"
                " FROM generate_series(1, 50) AS g",
                (run_id,),
            )
        with closing(psycopg2.connect(postgres_url)) as conn:
            schema.migrate(conn, name)
        sim.nightly(postgres_url, name, 3)

        # v1-a goes by the rule, but shares predictions_v1 with v1-b, which is kept.
        code, lines = prune(postgres_url, name, "--keep-runs", "4")
        assert code == 0, lines
        assert sim.statuses(postgres_url, name)["v1-a"] == "succeeded"
        assert table_exists(postgres_url, name, "predictions_v1")
        assert events_named(lines, "prune.kept_shared")[0]["runs"] == ["v1-a"]

        code, lines = prune(postgres_url, name, "--keep-runs", "3")
        assert code == 0, lines
        status = sim.statuses(postgres_url, name)
        assert (status["v1-a"], status["v1-b"]) == ("pruned", "pruned")
        assert not table_exists(postgres_url, name, "predictions_v1")
        assert {line["partition"] for line in events_named(lines, "prune.pruned")} == {
            f"{name}.predictions_v1"
        }
    finally:
        services.execute(postgres_url, f"DROP SCHEMA {name} CASCADE")


# --- beside a run that is scoring ---------------------------------------------------------


@dataclass
class LockWaits:
    """Samples pg_stat_activity: how long each scorer run backend waited for a lock."""

    url: str
    interval: float = 0.01
    waited: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> LockWaits:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def _sample(self) -> None:
        with closing(psycopg2.connect(self.url)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                last = time.perf_counter()
                while not self._stop.is_set():
                    cur.execute(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = 'scorer'"
                        " AND wait_event_type = 'Lock'"
                    )
                    now = time.perf_counter()
                    for (pid,) in cur.fetchall():
                        self.waited[pid] = self.waited.get(pid, 0.0) + (now - last)
                    last = now
                    time.sleep(self.interval)

    @property
    def longest(self) -> float:
        return max(self.waited.values(), default=0.0)


@pytest.fixture(scope="module")
def big_table(postgres_url: str) -> Iterator[str]:
    with loaded_customers(postgres_url, BIG_TABLE, BIG_ROWS, seed=9) as table:
        yield table


def test_prune_beside_a_run_in_progress_neither_blocks_nor_breaks_it(
    scorer_env: dict[str, str],
    postgres_url: str,
    churn_model: ChurnModel,
    big_table: str,
    target: str,
) -> None:
    old = sim.nightly(postgres_url, target, 8, model=churn_model.name)  # same parent as the run
    old_text = sim.nightly(postgres_url, target, 8, model="telco", entity_type="text")
    env = {
        **scorer_env,
        "SCORER_TARGET_SCHEMA": target,
        "SCORER_FEATURES_TABLE": big_table,
        "SCORER_CHUNK_ROWS": "2000",
        "SCORER_SNAPSHOT": (NOW + timedelta(days=1)).date().isoformat(),  # the newest snapshot
        "SCORER_RUN_ID": "beside-prune",
    }
    timeout = 1.0
    process = services.start_scorer(env, "run")
    assert process.stdout is not None
    seen: list[str] = []
    with LockWaits(postgres_url) as waits:
        for line in process.stdout:
            seen.append(line)
            if '"batch.scored"' in line:
                break  # its publishing transaction is open: it holds a lock on predictions
        started = time.perf_counter()
        code, lines = prune(
            postgres_url,
            target,
            "--keep-runs",
            "3",
            "--prune-lock-timeout-seconds",
            str(timeout),
        )
        prune_seconds = time.perf_counter() - started
        still_scoring = process.poll() is None
        out, err = process.communicate(timeout=300)
    log = services.json_lines("".join(seen) + out)

    assert still_scoring, "the run finished before prune did: make BIG_ROWS larger"
    assert process.returncode == 0, out + err
    assert log[-1]["event"] == "run.succeeded"
    assert code == 0, lines
    # The run's parent was skipped at once; the other parent's old runs went meanwhile.
    (busy,) = events_named(lines, "prune.busy")
    assert busy["parent"] == f"{target}.predictions"
    assert "beside-prune" in busy["detail"]
    assert sorted(busy["runs"]) == sorted(run.run_id for run in old[3:])
    status = sim.statuses(postgres_url, target)
    assert [status[run.run_id] for run in old_text] == ["succeeded"] * 3 + ["pruned"] * 5
    # Not held up: no run backend waited for a lock longer than the lock timeout.
    assert waits.longest <= timeout, waits.waited
    print(
        f"\nrun {log[-1]['seconds']}s, prune {prune_seconds:.2f}s alongside,"
        f" longest lock wait of a run backend {waits.longest:.3f}s"
    )
    assert status["beside-prune"] == "succeeded"
    assert sim.row_counts(postgres_url, target)["beside-prune"] == BIG_ROWS

    # Next time, with the run done, the deferred runs go; the new run is the latest and stays.
    code, lines = prune(postgres_url, target, "--keep-runs", "3")
    assert code == 0, lines
    status = sim.statuses(postgres_url, target)
    assert [status[run.run_id] for run in old] == ["succeeded"] * 2 + ["pruned"] * 6
    assert (
        sim.view_runs(postgres_url, target, "latest_predictions")[
            (churn_model.name, env["SCORER_SNAPSHOT"])
        ]
        == "beside-prune"
    )


def test_a_run_starting_while_a_drop_waits_is_held_up_at_most_the_lock_timeout(
    postgres_url: str, target: str
) -> None:
    made = sim.nightly(postgres_url, target, 4)
    timeout = 2.0
    with closing(psycopg2.connect(postgres_url)) as reader:
        with reader.cursor() as cur:  # a long reader: its share lock on the parent stays
            cur.execute(f'SELECT count(*) FROM "{target}".latest_predictions')
        pruning = services.start_scorer(
            env_of(postgres_url, target),
            "prune",
            "--keep-runs",
            "1",
            "--prune-lock-timeout-seconds",
            str(timeout),
        )
        deadline = time.monotonic() + 60
        while not services.query(
            postgres_url,
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'scorer prune'"
            " AND wait_event_type = 'Lock'",
        ):
            assert time.monotonic() < deadline, "prune never waited for its DROP"
            assert pruning.poll() is None, pruning.communicate()
            time.sleep(0.01)
        # A run starting now: its CREATE TABLE ... (LIKE parent) queues behind the DROP.
        with closing(psycopg2.connect(postgres_url)) as run, run.cursor() as cur:
            begin = time.perf_counter()
            cur.execute(f'CREATE TABLE "{target}".starting (LIKE "{target}".predictions)')
            held_up = time.perf_counter() - begin
            run.rollback()
        out, err = pruning.communicate(timeout=60)
        reader.rollback()

    assert pruning.returncode == 0, out + err
    lines = services.json_lines(out)
    (busy,) = events_named(lines, "prune.busy")
    assert f"not granted within {timeout:g}s" in busy["detail"]
    assert lines[-1]["pruned"] == 0
    assert 0 < held_up <= timeout + 0.25
    print(f"\na starting run was held up {held_up:.3f}s (lock timeout {timeout:g}s)")
    assert all(sim.partition_exists(postgres_url, target, run.run_id) for run in made)

    code, lines = prune(postgres_url, target, "--keep-runs", "1")  # the reader is gone
    assert code == 0
    assert lines[-1]["pruned"] == 3
