"""Every advisory lock the scorer takes: the seven namespaces of its keys, and the calls that
take, release and look them up. A key is text; PostgreSQL locks ``hashtextextended(key, 0)``.

- ``run(schema, model, snapshot)``, ``scorer:…``: a run's (model, snapshot) lock, for its
  session; exclusive for an unsharded run, shared by every shard of a sharded one.
- ``live_run(schema, run_id)``, ``scorer-run:…``: held shared by each live shard of a run.
- ``opening(schema, run_id)``, ``scorer-opening:…``: the shard opening a run, until it has
  recorded it.
- ``shard(schema, run_id, index)``, ``scorer-shard:…``: one process per shard, exclusive.
- ``opening_serial(key)``, ``scorer-open:…``: a shard opening or joining, for the transaction.
- ``prune(schema)``, ``scorer-prune:…``: one ``scorer prune`` per schema.
- ``migrate(schema)``, ``migrate:…``: one ``scorer migrate`` per schema, for the transaction.

``scorer prune`` reads ``pg_locks`` (``holders``) to tell a running row whose process is gone
from one that is still scoring.
"""

from __future__ import annotations

from scorer.postgres import db


def run(schema: str, model_name: str, snapshot: str) -> str:
    """A run's (model, snapshot) lock: one run of a model and snapshot at a time."""
    return f"scorer:{schema}:{model_name}:{snapshot}"


def live_run(schema: str, run_id: str) -> str:
    """Held shared by a live shard: the sharded run is live while any shard holds it."""
    return f"scorer-run:{schema}:{run_id}"


def opening(schema: str, run_id: str) -> str:
    """Held by the shard opening the run while it resolves and records; the run's other
    shards wait on it, then join what it recorded."""
    return f"scorer-opening:{schema}:{run_id}"


def shard(schema: str, run_id: str, index: int) -> str:
    """One process per shard: a second attempt of a shard beside a live one waits."""
    return f"scorer-shard:{schema}:{run_id}:{index}"


def opening_serial(key: str) -> str:
    """Serializes the opening of runs with the same ``run`` or ``live_run`` key."""
    return f"scorer-open:{key}"


def prune(schema: str) -> str:
    """One ``scorer prune`` per schema at a time."""
    return f"scorer-prune:{schema}"


def migrate(schema: str) -> str:
    """One ``scorer migrate`` per schema at a time."""
    return f"migrate:{schema}"


def acquire(cur: db.Cursor, key: str, *, shared: bool = False) -> None:
    """Wait for the lock, held for the session."""
    function = "pg_advisory_lock_shared" if shared else "pg_advisory_lock"
    cur.execute(f"SELECT {function}(hashtextextended(%s, 0))", (key,))


def try_acquire(cur: db.Cursor, key: str, *, shared: bool = False) -> bool:
    """Take the lock for the session if it is free; whether it was."""
    function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
    cur.execute(f"SELECT {function}(hashtextextended(%s, 0))", (key,))
    return bool(db.one_value(cur))


def acquire_for_transaction(cur: db.Cursor, key: str) -> None:
    """Wait for the lock, held until the transaction ends."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))


def release(cur: db.Cursor, key: str) -> None:
    """Release a session lock taken with ``acquire``."""
    cur.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))


def release_all(cur: db.Cursor) -> None:
    """Release every session lock this session holds."""
    cur.execute("SELECT pg_advisory_unlock_all()")


def holders(cur: db.Cursor, keys: list[str]) -> list[int | None]:
    """Per key, the pid of a session holding it (``None``: nobody)."""
    if not keys:
        return []
    cur.execute(
        "SELECT u.ordinality, min(l.pid)"
        " FROM unnest(%s::text[]) WITH ORDINALITY AS u(key, ordinality)"
        " CROSS JOIN LATERAL (SELECT hashtextextended(u.key, 0) AS hash) AS k"
        " LEFT JOIN pg_locks AS l ON l.locktype = 'advisory' AND l.granted"
        "  AND l.objsubid = 1"
        "  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        "  AND l.classid = ((k.hash >> 32) & 4294967295)::oid"
        "  AND l.objid = (k.hash & 4294967295)::oid"
        " GROUP BY u.ordinality ORDER BY u.ordinality",
        (keys,),
    )
    return [pid for _, pid in cur.fetchall()]
