"""Refuse a connection pooler that does not keep one server session per connection.

The scorer keeps state in its database session across transactions: a run holds its (model,
snapshot) advisory lock for the whole session (``locks.run``), a sharded run's shards hold
their liveness and opening locks the same way, and ``prune`` holds its schema lock and reads
``pg_locks`` to tell a live run from a dead one. Behind a pooler in transaction or statement
mode (PgBouncer ``pool_mode = transaction``, for one), each transaction runs on whichever server
session is free: a lock taken in one transaction stays on a server session other clients then
use, and the next transaction runs without it. Nothing fails; the guard simply does not hold.

``require_session(conn, other)`` proves the opposite before anything is written, with two
connections of the same URL and the one fact that cannot be faked, the server process id
(``pg_backend_pid()``, one per session):

1. ``conn``, between transactions, notes its pid;
2. ``other`` opens a transaction, which pins a server session in every pooling mode, and notes
   its pid: ``conn``'s pid means ``conn``'s session was handed to another client;
3. while ``other`` holds its session, ``conn`` must find its own pid again in a new transaction.

Directly on PostgreSQL, or through a session-mode pool, both checks always pass. Through a
transaction pool, step 2 gets ``conn``'s just-released session (PgBouncer hands out the most
recently used idle server first) or step 3 gets another one. (A statement-mode pool cannot pass
unnoticed either: PgBouncer closes the connection at its first transaction, a lost connection.)
"""

from __future__ import annotations

import psycopg2

from scorer.errors import DatabasePoolerError
from scorer.postgres import db

_FIX = (
    "point SCORER_DATABASE_URL at the PostgreSQL primary, or at a session-mode pool"
    " (PgBouncer pool_mode = session); nothing was written"
)


def require_session(conn: db.Connection, other: db.Connection) -> None:
    """Raise ``DatabasePoolerError`` unless ``conn`` keeps one server session across its
    transactions and shares it with no other connection (``other``: a second connection to the
    same URL, idle). Writes nothing."""
    try:
        with db.autocommit(conn), conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            mine = db.one_value(cur)
        with db.transaction(other), other.cursor() as pinned:
            pinned.execute("SELECT pg_backend_pid()")
            if db.one_value(pinned) == mine:
                raise _refusal("another connection was given this connection's server session")
            with db.transaction(conn), conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                if db.one_value(cur) != mine:
                    raise _refusal("this connection's next transaction ran on another session")
    except psycopg2.Error as exc:
        raise db.database_error(exc, "checking the database session") from exc


def _refusal(what: str) -> DatabasePoolerError:
    return DatabasePoolerError(
        "SCORER_DATABASE_URL reaches PostgreSQL through a pooler that does not keep one server"
        f" session per connection ({what}: transaction pooling). The scorer holds"
        " session-level advisory locks across transactions (one run per model and snapshot),"
        f" which cannot hold there; {_FIX}"
    )
