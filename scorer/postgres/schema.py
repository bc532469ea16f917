"""The target tables and views, created and upgraded by ``scorer migrate``.

Migrations are numbered SQL files, ``migrations/NNNN_name.sql`` (0001, 0002, …, no gaps),
applied in order under an advisory lock and recorded in ``schema_migrations``; re-running
``migrate`` applies only what is missing, and the schema's version is the number of files.
In a file, ``{s}`` stands for the quoted schema and ``{n}`` for its name as a string literal;
nothing else is substituted. A released file never changes (tests/unit/test_migrations.py
holds its digest): a change to the schema is a new file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import structlog

from scorer.errors import InternalError, NotMigratedError
from scorer.postgres import db, locks
from scorer.postgres.identifiers import quote_identifier

log = structlog.get_logger("scorer.schema")


_FILE_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")
_PLACEHOLDER = re.compile(r"\{([sn])\}")


@dataclass(frozen=True)
class Migration:
    """One numbered file: its version, file name and SQL (``{s}`` and ``{n}`` unfilled)."""

    version: int
    file_name: str
    script: str

    def sql(self, schema: str) -> str:
        """The script for ``schema``: ``{s}`` its quoted name, ``{n}`` its name as a literal
        (a validated identifier, so it needs no escaping)."""
        values = {"s": quote_identifier(schema), "n": f"'{schema}'"}
        return _PLACEHOLDER.sub(lambda match: values[match.group(1)], self.script)


def load(directory: Traversable) -> tuple[Migration, ...]:
    """The ``NNNN_name.sql`` files of ``directory`` in order; a misnamed ``.sql`` file, a
    number used twice or a gap in the numbering (1, 2, …, N) is refused."""
    found: dict[int, Migration] = {}
    for entry in directory.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        named = _FILE_NAME.fullmatch(entry.name)
        if named is None:
            raise InternalError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        version = int(named.group(1))
        if version in found:
            raise InternalError(
                f"migrations {found[version].file_name!r} and {entry.name!r} share number {version}"
            )
        found[version] = Migration(version, entry.name, entry.read_text(encoding="utf-8"))
    missing = sorted(set(range(1, max(found, default=0) + 1)) - set(found))
    if missing:
        raise InternalError(f"migrations are numbered 1..N without gaps; missing: {missing}")
    return tuple(found[version] for version in sorted(found))


MIGRATIONS = load(resources.files(__package__) / "migrations")
"""Every migration, oldest first: ``scorer/postgres/migrations/NNNN_name.sql``."""
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: db.Connection, schema: str, up_to: int = SCHEMA_VERSION) -> list[int]:
    """Create or upgrade the tables in ``schema`` up to ``up_to``, in one transaction.

    Returns the versions applied.
    """
    s = quote_identifier(schema)
    applied: list[int] = []
    with db.transaction(conn), conn.cursor() as cur:
        locks.acquire_for_transaction(cur, locks.migrate(schema))
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.schema_migrations ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute(f"SELECT coalesce(max(version), 0) FROM {s}.schema_migrations")
        current = db.one_value(cur)
        for migration in MIGRATIONS:
            if current < migration.version <= up_to:
                cur.execute(migration.sql(schema))
                cur.execute(
                    f"INSERT INTO {s}.schema_migrations (version) VALUES (%s)", (migration.version,)
                )
                applied.append(migration.version)
    return applied


def require_migrated(conn: db.Connection, schema: str) -> None:
    """Raise ``NotMigratedError`` unless ``schema`` is at the current version."""
    table = f"{quote_identifier(schema)}.schema_migrations"
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (table,))
        version = 0
        if db.one_value(cur) is not None:
            cur.execute(f"SELECT coalesce(max(version), 0) FROM {table}")
            version = db.one_value(cur)
    if version < SCHEMA_VERSION:
        raise NotMigratedError(
            f"schema {schema!r} is at version {version}, scorer needs {SCHEMA_VERSION}: "
            "run `python -m scorer migrate`"
        )
