"""``scorer.postgres.db`` against the real PostgreSQL: visible transactions, classified failures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing

import psycopg2
import psycopg2.extensions
import pytest

from scorer.errors import InternalError, ScorerError
from scorer.postgres import db
from tests.support import services

pytestmark = pytest.mark.integration


class BlockError(Exception):
    """The block's own failure."""


@pytest.fixture
def conn(postgres_url: str) -> Iterator[psycopg2.extensions.connection]:
    with closing(db.connect(postgres_url)) as connection:
        yield connection


@pytest.fixture
def table(postgres_url: str) -> Iterator[str]:
    name = f"public.tx_{time.monotonic_ns()}"
    services.execute(postgres_url, f"CREATE TABLE {name} (id int PRIMARY KEY)")
    yield name
    services.execute(postgres_url, f"DROP TABLE {name}")


def in_transaction(conn: psycopg2.extensions.connection, *statements: str) -> None:
    """Run ``statements`` in one ``db.transaction``."""
    with db.transaction(conn), conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def insert_then_raise(conn: psycopg2.extensions.connection, table: str, exc: BaseException) -> None:
    with db.transaction(conn), conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} VALUES (1)")
        raise exc


def insert_while_the_server_ends_the_session(
    conn: psycopg2.extensions.connection, url: str, table: str
) -> None:
    with db.transaction(conn), conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} VALUES (1)")
        services.query(url, "SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        cur.execute(f"INSERT INTO {table} VALUES (2)")


def count(url: str, table: str) -> int:
    return int(services.query(url, f"SELECT count(*) FROM {table}")[0][0])


@pytest.mark.parametrize("autocommit_before", [False, True])
def test_transaction_commits_at_the_end_and_not_before(
    conn: psycopg2.extensions.connection, postgres_url: str, table: str, autocommit_before: bool
) -> None:
    conn.autocommit = autocommit_before
    with db.transaction(conn), conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} VALUES (1), (2)")
        assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
        assert count(postgres_url, table) == 0  # another session sees nothing yet
    assert count(postgres_url, table) == 2
    assert conn.autocommit is autocommit_before
    assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE


def test_transaction_rolls_back_and_reraises_the_blocks_own_exception(
    conn: psycopg2.extensions.connection, postgres_url: str, table: str
) -> None:
    raised = BlockError("the block failed")
    with pytest.raises(BlockError) as caught:
        insert_then_raise(conn, table, raised)
    assert caught.value is raised
    assert count(postgres_url, table) == 0
    assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    with db.transaction(conn), conn.cursor() as cur:  # the connection is usable again
        cur.execute(f"INSERT INTO {table} VALUES (1)")
    assert count(postgres_url, table) == 1


def test_transaction_after_a_failed_statement_rolls_back(
    conn: psycopg2.extensions.connection, postgres_url: str, table: str
) -> None:
    with pytest.raises(psycopg2.errors.UniqueViolation):
        in_transaction(conn, f"INSERT INTO {table} VALUES (1)", f"INSERT INTO {table} VALUES (1)")
    assert count(postgres_url, table) == 0


def test_transaction_refuses_to_nest_or_to_start_inside_an_open_one(
    conn: psycopg2.extensions.connection, table: str
) -> None:
    with db.transaction(conn):
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")
        with pytest.raises(InternalError, match="not idle"), db.transaction(conn):
            pass
        with pytest.raises(InternalError, match="not idle"), db.autocommit(conn):
            pass


def test_autocommit_commits_each_statement_and_restores_the_mode(
    conn: psycopg2.extensions.connection, postgres_url: str, table: str
) -> None:
    conn.autocommit = False
    with db.autocommit(conn), conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} VALUES (1)")
        assert count(postgres_url, table) == 1  # visible at once
        assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        with db.transaction(conn):  # a transaction inside an autocommit block is fine
            cur.execute(f"INSERT INTO {table} VALUES (2)")
        assert conn.autocommit is True
    assert conn.autocommit is False


def test_autocommit_restores_the_mode_when_the_block_raises(
    conn: psycopg2.extensions.connection,
) -> None:
    conn.autocommit = False
    with pytest.raises(BlockError), db.autocommit(conn):
        raise BlockError
    assert conn.autocommit is False


def test_a_connection_lost_inside_a_transaction_is_named_and_not_masked(
    conn: psycopg2.extensions.connection, postgres_url: str, table: str
) -> None:
    with pytest.raises(psycopg2.Error) as caught:
        insert_while_the_server_ends_the_session(conn, postgres_url, table)
    failure = db.database_error(caught.value, "scoring")
    assert (failure.kind, failure.exit_code) == ("database_lost", 1)
    assert "the connection to the database was lost" in str(failure)
    assert count(postgres_url, table) == 0
    with pytest.raises(psycopg2.InterfaceError) as closed, conn.cursor():
        pass
    assert db.database_error(closed.value).kind == "database_lost"  # "connection already closed"


def test_wrong_password_is_permanent_and_not_retried(postgres_url: str) -> None:
    parts = services.urlsplit(postgres_url)
    url = parts._replace(netloc=f"{parts.username}:wrong-pw@{parts.hostname}:{parts.port}").geturl()
    started = time.monotonic()
    with pytest.raises(ScorerError) as caught:
        db.connect(url)
    assert time.monotonic() - started < 3  # stamina would wait 0.5 + 1 + 2 s
    assert (caught.value.kind, caught.value.exit_code) == ("database_auth", 2)
    assert "password or role" in str(caught.value)
    assert "wrong-pw" not in str(caught.value)
    assert isinstance(caught.value.__cause__, psycopg2.OperationalError)


def test_unknown_role_is_an_authentication_failure(postgres_url: str) -> None:
    parts = services.urlsplit(postgres_url)
    url = parts._replace(netloc=f"no_such_role:pw@{parts.hostname}:{parts.port}").geturl()
    with pytest.raises(ScorerError) as caught:
        db.connect(url)
    assert caught.value.kind == "database_auth"


def test_missing_database_is_permanent(postgres_url: str) -> None:
    url = services.with_database(postgres_url, "no_such_database_here")
    with pytest.raises(ScorerError) as caught:
        db.connect(url)
    assert (caught.value.kind, caught.value.exit_code) == ("database_missing", 2)
    assert "does not exist" in str(caught.value)


def test_unreachable_server_is_retryable(postgres_url: str) -> None:
    url = services.with_database(postgres_url, "x").replace(
        f":{services.urlsplit(postgres_url).port}/", f":{services.free_port()}/"
    )
    with pytest.raises(ScorerError) as caught:
        db.connect(url)
    assert (caught.value.kind, caught.value.exit_code) == ("database_unreachable", 1)
    assert "unreachable" in str(caught.value)


@pytest.mark.parametrize(
    ("sql", "kind", "value"),
    [
        (
            "CREATE TEMP TABLE d AS SELECT 987654 AS id UNION ALL SELECT 987654;"
            " ALTER TABLE d ADD PRIMARY KEY (id)",
            "duplicate_entity",
            "987654",
        ),
        ("SELECT 'not-a-number-77'::float8", "bad_data", "not-a-number-77"),
        (
            "CREATE TEMP TABLE n (id int, v text NOT NULL); INSERT INTO n VALUES (31337, NULL)",
            "bad_data",
            "31337",
        ),
        ("SELECT no_such_column_x FROM pg_class", "schema_mismatch", None),
    ],
    ids=["duplicate", "cast", "not-null", "column"],
)
def test_real_server_errors_are_classified_without_row_data(
    conn: psycopg2.extensions.connection, sql: str, kind: str, value: str | None
) -> None:
    with pytest.raises(ScorerError) as caught, db.database_errors("testing"):
        in_transaction(conn, sql)
    assert caught.value.kind == kind
    assert isinstance(caught.value.__cause__, psycopg2.Error)
    message = str(caught.value)
    assert "DETAIL" not in message
    if value is not None:
        assert value in str(caught.value.__cause__)  # the server did say it
        assert value not in message  # and the message does not repeat it
