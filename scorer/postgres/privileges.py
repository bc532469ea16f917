"""Least privilege: what each command needs of its role, checked before it writes anything,
and the GRANTs of ``scorer grant`` (one list, so the check and the grants cannot drift).

Three roles (``deploy/README.md``):

- the **migration role** owns the schema and everything in it (every run's table too), and
  runs ``migrate`` and ``grant``;
- the **runtime role** (``run``, ``check``, ``backfill``, ``prune``, ``runs``, ``show``,
  ``explain``, ``evaluate``) reads the features, writes run rows, and creates, publishes and
  drops run tables only through the schema's SECURITY DEFINER functions (migration 8). It owns
  nothing, so it cannot DROP, TRUNCATE or ALTER a table, and it has no DELETE on
  ``scoring_runs``;
- the **reader role** selects the consumer views, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scorer.errors import ConfigError, DatabasePrivilegeError, NotMigratedError
from scorer.postgres import db, schema
from scorer.postgres.identifiers import Relation, quote_any, quote_identifier

Use = Literal["run", "prune", "history", "evaluate"]
"""What a command does: ``run`` (also ``check`` and ``backfill``), ``prune``, ``history``
(``runs``, ``show``, ``explain``), ``evaluate``."""

_ALL: frozenset[Use] = frozenset(("run", "prune", "history", "evaluate"))


@dataclass(frozen=True)
class Grant:
    """Privileges on one object of the target schema ("" names the schema itself)."""

    privileges: tuple[str, ...]
    kind: Literal["schema", "table", "function"]
    name: str
    uses: frozenset[Use] = _ALL


def _run(
    *privileges: str, kind: Literal["table", "function"], names: tuple[str, ...]
) -> tuple[Grant, ...]:
    """Grants only ``run`` needs."""
    return tuple(Grant(privileges, kind, name, frozenset(("run",))) for name in names)


RUNTIME: tuple[Grant, ...] = (
    Grant(("USAGE",), "schema", ""),
    Grant(("SELECT",), "table", "schema_migrations"),
    Grant(("SELECT",), "table", "scoring_runs"),
    Grant(("INSERT",), "table", "scoring_runs", frozenset(("run",))),
    Grant(("UPDATE",), "table", "scoring_runs", frozenset(("run", "prune"))),
    Grant(("SELECT",), "table", "scoring_run_shards", frozenset(("run", "history"))),
    *_run("INSERT", "UPDATE", kind="table", names=("scoring_run_shards",)),
    *_run("SELECT", "INSERT", "DELETE", kind="table", names=("scoring_run_models",)),
    *(
        Grant(("SELECT",), "table", parent, frozenset(("history", "evaluate")))
        for parent in ("predictions", "predictions_text", "predictions_uuid")
    ),
    *_run(
        "EXECUTE",
        kind="function",
        names=(
            "run_table_create",
            "run_table_add_key",
            "run_table_publish",
            "run_table_publish_shards",
        ),
    ),
    Grant(("EXECUTE",), "function", "run_table_drop", frozenset(("run", "prune"))),
    Grant(("EXECUTE",), "function", "run_partition_drop", frozenset(("prune",))),
    Grant(
        ("SELECT",), "table", "scoring_run_evaluations", frozenset(("prune", "history", "evaluate"))
    ),
    Grant(("INSERT", "UPDATE"), "table", "scoring_run_evaluations", frozenset(("evaluate",))),
)
"""The runtime role's privileges; each entry names the commands that need it."""

VIEWS = tuple(
    f"{view}{suffix}"
    for view in ("latest_predictions", "published_predictions")
    for suffix in ("", "_text", "_uuid")
)
READER: tuple[Grant, ...] = (
    Grant(("USAGE",), "schema", ""),
    *(Grant(("SELECT",), "table", view) for view in VIEWS),
)
"""The reader role's privileges: the consumer views only."""

_COMMANDS: dict[Use, str] = {
    "run": "scoring (run, check, backfill)",
    "prune": "prune",
    "history": "reading the history (runs, show, explain)",
    "evaluate": "evaluate",
}


def quote_role(name: str) -> str:
    """A role name quoted for SQL, as it is; ``ConfigError`` if no role can be named so."""
    try:
        return quote_any(name)
    except ValueError:
        raise ConfigError(f"{name!r} is not a usable role name (1 to 63 bytes)") from None


def _object(target: str, kind: str, name: str) -> str:
    quoted = quote_identifier(target)
    if kind == "schema":
        return f"SCHEMA {quoted}"
    return f"{kind.upper()} {quoted}.{quote_identifier(name)}"


def grant_sql(target: str, runtime: str, reader: str) -> list[str]:
    """The GRANT statements of ``scorer grant``, one per object and role (idempotent)."""
    statements = []
    for role, grants in ((runtime, RUNTIME), (reader, READER)):
        merged: dict[tuple[str, str], list[str]] = {}
        for grant in grants:
            privileges = merged.setdefault((grant.kind, grant.name), [])
            privileges += [p for p in grant.privileges if p not in privileges]
        for (kind, name), privileges in merged.items():
            on = _object(target, kind, name)
            statements.append(f"GRANT {', '.join(privileges)} ON {on} TO {quote_role(role)};")
    return statements


_LOOKUP = {
    "schema": "SELECT has_schema_privilege(n.oid, %s) FROM pg_namespace AS n WHERE n.nspname = %s",
    "table": "SELECT has_table_privilege(c.oid, %s) FROM pg_class AS c"
    " JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
    "function": "SELECT bool_and(has_function_privilege(p.oid, %s)) FROM pg_proc AS p"
    " JOIN pg_namespace AS n ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.proname = %s"
    " HAVING count(*) > 0",
}


def _lacks(cur: db.Cursor, privilege: str, kind: str, namespace: str, name: str) -> bool:
    """Whether the current role lacks ``privilege`` on the object (False if there is none:
    a missing object is another check's news, e.g. ``not_migrated``)."""
    cur.execute(_LOOKUP[kind], (privilege, namespace, *((name,) if kind != "schema" else ())))
    row = cur.fetchone()
    return row is not None and row[0] is False


def _missing_in_schema(cur: db.Cursor, target: str, use: Use) -> list[str]:
    """What the current role lacks for ``use`` in ``target``: ``INSERT on table
    scoring.scoring_runs``, …"""
    lacking = []
    for grant in RUNTIME:
        if use not in grant.uses:
            continue
        for privilege in grant.privileges:
            if _lacks(cur, privilege, grant.kind, target, grant.name):
                shown = f"{target}.{grant.name}" if grant.name else target
                lacking.append(f"{privilege} on {grant.kind} {shown}")
    return lacking


def _missing_on_features(cur: db.Cursor, features: Relation) -> list[str]:
    """What the current role lacks to read the feature relation (USAGE, SELECT)."""
    if features.schema is None:  # found through the search_path, as the run will find it
        cur.execute("SELECT has_table_privilege(to_regclass(%s), 'SELECT')", (features.sql,))
        allowed = db.one_value(cur)
        return [f"SELECT on table {features}"] if allowed is False else []
    lacking = []
    if _lacks(cur, "USAGE", "schema", features.schema, ""):
        lacking.append(f"USAGE on schema {features.schema}")
    if _lacks(cur, "SELECT", "table", features.schema, features.name):
        lacking.append(f"SELECT on table {features}")
    return lacking


def require(conn: db.Connection, target: str, use: Use, features: Relation | None = None) -> None:
    """Raise ``DatabasePrivilegeError`` (exit 2) naming every privilege the current role
    lacks for ``use`` in ``target`` (and SELECT on ``features``), before anything is written;
    reads the catalog only."""
    with conn.cursor() as cur:
        on_features = [] if features is None else _missing_on_features(cur, features)
        in_schema = _missing_in_schema(cur, target, use)
        if not on_features and not in_schema:
            return
        cur.execute("SELECT current_user")
        role = str(db.one_value(cur))
    hints = []
    if on_features:
        statements = "; ".join(
            f"GRANT {item.replace(' on schema ', ' ON SCHEMA ').replace(' on table ', ' ON ')}"
            f" TO {quote_role(role)}"
            for item in on_features
        )
        hints.append(f"the owner of {features} ({statements})")
    if in_schema:
        hints.append(
            f"the owner of schema {target} (the migration role): python -m scorer grant"
            f" --runtime {role} --reader <reader role>"
        )
    raise DatabasePrivilegeError(
        f"role {role!r} lacks {', '.join(on_features + in_schema)}, which {_COMMANDS[use]}"
        f" needs; nothing was written. Grant them as {', and as '.join(hints)}"
        " (see deploy/README.md)"
    )


def require_owner(cur: db.Cursor, target: str, command: str, *, create: bool) -> None:
    """Raise ``DatabasePrivilegeError`` unless the current role owns ``target`` (``create``:
    or, when it does not exist yet, may create it in this database)."""
    cur.execute(
        "SELECT n.nspowner::regrole::text, pg_has_role(n.nspowner, 'USAGE'), current_user"
        " FROM pg_namespace AS n WHERE n.nspname = %s",
        (target,),
    )
    row = cur.fetchone()
    if row is None:
        if not create:
            raise NotMigratedError(
                f"schema {target!r} does not exist: run `python -m scorer migrate`"
            )
        cur.execute("SELECT current_user, current_database()")
        role, database = cur.fetchone() or ("", "")
        cur.execute("SELECT has_database_privilege(current_database(), 'CREATE')")
        if not db.one_value(cur):
            raise DatabasePrivilegeError(
                f"role {role!r} lacks CREATE on database {database}, which {command} needs to"
                f" create schema {target!r}; nothing was written. Run it as the migration role"
                " (see deploy/README.md)"
            )
        return
    owner, owns, role = row
    if not owns:
        raise DatabasePrivilegeError(
            f"role {role!r} lacks ownership of schema {target!r} (owned by {owner}), which"
            f" {command} needs; nothing was written. Run it as the migration role (see"
            " deploy/README.md)"
        )


def grant(conn: db.Connection, target: str, runtime: str, reader: str) -> list[str]:
    """Issue ``grant_sql`` in one transaction, as the schema's owner; return the statements.

    Refuses (``ConfigError``) a role that does not exist, or one that holds the owner's
    privileges (it would own every table: no least privilege to grant).
    """
    statements = grant_sql(target, runtime, reader)
    with db.transaction(conn), conn.cursor() as cur:
        require_owner(cur, target, "grant", create=False)
        schema.require_migrated(conn, target)
        for role in dict.fromkeys((runtime, reader)):
            cur.execute(
                "SELECT pg_has_role(r.oid, n.nspowner, 'USAGE'), n.nspowner::regrole::text"
                " FROM pg_roles AS r, pg_namespace AS n WHERE r.rolname = %s AND n.nspname = %s",
                (role, target),
            )
            row = cur.fetchone()
            if row is None:
                raise ConfigError(f"role {role!r} does not exist: create it first (CREATE ROLE)")
            if row[0]:
                raise ConfigError(
                    f"role {role!r} holds the privileges of {row[1]}, the owner of schema"
                    f" {target!r}: it could drop every table. Give it a role of its own"
                )
        for statement in statements:
            cur.execute(statement)
    return statements
