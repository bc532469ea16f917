"""The scorer behind a real PgBouncer (Debian's package) on loopback, in each pooling mode.

Session mode keeps one server session per client connection: a full run passes. Transaction
mode hands each transaction to any free server session, so the run's session-level advisory
lock would not hold: every command that relies on it is refused before any write.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from scorer.postgres.identifiers import quote_identifier
from scorer.postgres.schema import SCHEMA_VERSION
from tests.support import services
from tests.support.stack import CUSTOMERS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bouncers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A PgBouncer per pooling mode, each in front of the test server: mode -> URL."""
    work = tmp_path_factory.mktemp("pgbouncer")
    with (
        services.pgbouncer(work / "session", "session") as session,
        services.pgbouncer(work / "transaction", "transaction") as transaction,
        services.pgbouncer(work / "statement", "statement") as statement,
    ):
        yield {"session": session, "transaction": transaction, "statement": statement}


def through(bouncers: dict[str, str], mode: str, postgres_url: str) -> str:
    """``postgres_url``'s database through the PgBouncer in ``mode``."""
    return services.with_database(bouncers[mode], services.urlsplit(postgres_url).path[1:])


def written(url: str, target: str) -> tuple[int, int, list[str]]:
    """Run rows, prediction rows and the tables of ``target``: what a command wrote."""
    quoted = quote_identifier(target)
    ((runs,),) = services.query(url, f"SELECT count(*) FROM {quoted}.scoring_runs")
    ((predictions,),) = services.query(url, f"SELECT count(*) FROM {quoted}.predictions")
    tables = services.query(
        url, "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (target,)
    )
    return int(runs), int(predictions), [str(name) for (name,) in tables]


def test_session_mode_passes_a_full_run(
    bouncers: dict[str, str], scorer_env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    env = {**scorer_env, "SCORER_DATABASE_URL": through(bouncers, "session", postgres_url)}
    result = services.run_scorer(env, "run", "--run-id", "pooled-session")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = services.json_lines(result.stdout)[-1]
    assert summary["event"] == "run.succeeded"
    assert summary["rows_scored"] == CUSTOMERS
    ((status, scored),) = services.query(
        postgres_url,
        f"SELECT status, rows_scored FROM {quote_identifier(target_schema)}.scoring_runs"
        " WHERE run_id = 'pooled-session'",
    )
    assert (status, scored) == ("succeeded", CUSTOMERS)


COMMANDS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "run": (("run",), {}),
    "sharded-run": (("run",), {"SCORER_SHARDS": "2", "JOB_COMPLETION_INDEX": "0"}),
    "check": (("check",), {}),
    "prune": (("prune", "--keep-runs", "1"), {}),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_transaction_pooling_is_refused_before_any_write(
    bouncers: dict[str, str],
    scorer_env: dict[str, str],
    postgres_url: str,
    target_schema: str,
    command: str,
) -> None:
    before = written(postgres_url, target_schema)
    args, extra = COMMANDS[command]
    url = through(bouncers, "transaction", postgres_url)
    result = services.run_scorer({**scorer_env, **extra, "SCORER_DATABASE_URL": url}, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    failure: dict[str, Any] = services.json_lines(result.stdout)[-1]
    assert failure["kind"] == "database_pooler", failure
    assert "session-mode pool" in failure["error"]
    assert "SCORER_DATABASE_URL" in failure["error"]
    assert written(postgres_url, target_schema) == before == (0, 0, before[2])
    password = services.urlsplit(url).password
    assert password
    assert password not in result.stdout + result.stderr


def test_the_pgbouncer_fixture_really_pools_by_transaction(
    bouncers: dict[str, str], postgres_url: str
) -> None:
    """The refusal above is of a real transaction pool: two clients, one server session."""
    url = through(bouncers, "transaction", postgres_url)
    first, second = psycopg2.connect(url), psycopg2.connect(url)
    try:
        first.autocommit = second.autocommit = True
        pids = []
        for conn in (first, second):
            with conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                pids.append(cur.fetchone())
        assert pids[0] == pids[1]
    finally:
        first.close()
        second.close()


def test_migrate_works_through_a_transaction_pool(
    bouncers: dict[str, str], postgres_url: str
) -> None:
    """``migrate`` is one transaction: no session state, so any pool will do."""
    target = f"pooled_{secrets.token_hex(4)}"
    env = {
        "SCORER_DATABASE_URL": through(bouncers, "transaction", postgres_url),
        "SCORER_TARGET_SCHEMA": target,
    }
    try:
        result = services.run_scorer(env, "migrate")
        assert result.returncode == 0, result.stdout + result.stderr
        ((version,),) = services.query(
            postgres_url, f"SELECT max(version) FROM {quote_identifier(target)}.schema_migrations"
        )
        assert version == SCHEMA_VERSION
    finally:
        services.execute(postgres_url, f"DROP SCHEMA IF EXISTS {quote_identifier(target)} CASCADE")


def test_a_statement_pool_loses_the_connection_at_the_first_transaction(
    bouncers: dict[str, str], scorer_env: dict[str, str], postgres_url: str, target_schema: str
) -> None:
    """Statement pooling cannot pass unnoticed either: PgBouncer drops the connection."""
    env = {**scorer_env, "SCORER_DATABASE_URL": through(bouncers, "statement", postgres_url)}
    result = services.run_scorer(env, "run")
    assert result.returncode == 1, result.stdout + result.stderr
    assert services.json_lines(result.stdout)[-1]["kind"] == "database_lost"
    assert written(postgres_url, target_schema) == (0, 0, written(postgres_url, target_schema)[2])
