"""``scorer.io.sink`` against the real PostgreSQL: how the run partition's key is built."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg2.extensions
import pytest

from scorer.errors import DuplicateEntityError
from scorer.io import sink
from scorer.postgres import db, wire

pytestmark = pytest.mark.integration

ROWS = 200_000  # about 20 MB: past min_parallel_table_scan_size, so a parallel build is an option


@pytest.fixture
def conn(postgres_url: str) -> Iterator[psycopg2.extensions.connection]:
    with closing(db.connect(postgres_url)) as connection:
        yield connection


def _partition(target_schema: str, kind: str, run_id: str) -> sink.RunPartition:
    lineage = sink.LineageColumns(run_id, "churn", 1, "2026-12-01", datetime.now(UTC))
    return sink.RunPartition(target_schema, lineage, kind, labels=True)


def _load(cur: db.Cursor, partition: sink.RunPartition, ids: npt.NDArray[Any]) -> None:
    partition.create(cur)
    scores = np.random.default_rng(5).random(ids.size)
    payload = wire.encode_predictions(ids, scores, (scores >= 0.5).astype(np.int16))
    sink.write(cur, partition.copy_statement, [payload])


def _settings(conn: psycopg2.extensions.connection) -> dict[str, str]:
    """The key build's settings as they stand on ``conn``, in a transaction of their own."""
    with db.transaction(conn), conn.cursor() as cur:
        return _current(cur)


def _current(cur: db.Cursor) -> dict[str, str]:
    found = {}
    for name, _ in sink.SERIAL_KEY_BUILD:
        cur.execute("SELECT current_setting(%s)", (name,))
        found[name] = str(db.one_value(cur))
    return found


def _load_and_attach(
    conn: psycopg2.extensions.connection, partition: sink.RunPartition, ids: npt.NDArray[Any]
) -> None:
    with db.transaction(conn), conn.cursor() as cur:
        _load(cur, partition, ids)
        partition.attach(cur)


def _ids(kind: str, numbers: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    if kind == "bigint":
        return numbers
    return np.array([f"{n:04d}-X" for n in numbers], dtype="S10")


@pytest.mark.parametrize("kind", ["bigint", "text"])
def test_bigint_keys_are_built_by_one_serial_sort_and_the_settings_end_with_the_transaction(
    conn: psycopg2.extensions.connection, target_schema: str, kind: str
) -> None:
    partition = _partition(target_schema, kind, f"run-key-build-{kind}")
    conn.notices = []
    before = _settings(conn)
    with db.transaction(conn), conn.cursor() as cur:
        _load(cur, partition, _ids(kind, np.arange(1, ROWS + 1, dtype=np.int64)))
        cur.execute("SET LOCAL trace_sort = on")
        cur.execute("SET LOCAL client_min_messages = log")
        partition.attach(cur)
        during = _current(cur)
    assert _settings(conn) == before  # SET LOCAL: the session's own values are back
    with db.transaction(conn), conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = to_regclass(%s) AND indisprimary",
            (partition.table,),
        )
        assert db.one_value(cur) == 1
    sorts = [line for line in conn.notices if " sort of worker " in line and " ended" in line]
    assert sorts, conn.notices  # trace_sort reported the key's sort
    if kind == "bigint":
        assert during == dict(sink.SERIAL_KEY_BUILD)
        assert all(" sort of worker -1 " in line for line in sorts), sorts  # no participant
    else:  # text ids keep the server's own build
        assert during == before


@pytest.mark.parametrize("kind", ["bigint", "text"])
def test_a_duplicated_id_fails_the_key_and_leaves_no_table(
    conn: psycopg2.extensions.connection, target_schema: str, kind: str
) -> None:
    numbers = np.arange(1, ROWS + 1, dtype=np.int64)
    numbers[-1] = 4242  # far from its twin: the sort, not the load order, finds it
    ids = _ids(kind, numbers)
    partition = _partition(target_schema, kind, f"run-key-duplicate-{kind}")
    with pytest.raises(DuplicateEntityError) as caught:
        _load_and_attach(conn, partition, ids)
    twin = "4242" if kind == "bigint" else "4242-X"
    message = str(caught.value)
    assert message.startswith(f"duplicate entity ids in the feature relation (e.g. '{twin}')")
    assert "nothing published" in message
    with db.transaction(conn), conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (partition.table,))
        assert db.one_value(cur) is None
