"""The three roles against the real PostgreSQL: the migration role owns the schema, the runtime
role scores, publishes and prunes without owning anything, the reader reads the views.

The roles are cluster-wide, so each gets a unique name and is dropped after the module.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import psycopg2.errors
import pytest

from scorer.io import sink
from scorer.postgres.identifiers import quote_identifier as q
from tests.support import services
from tests.support.stack import CUSTOMERS, FEATURES_TABLE, ChurnModel

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Roles:
    """The test's roles (by kind), their password, and the schema the migration role owns."""

    names: dict[str, str]
    password: str
    schema: str
    admin_url: str

    def url(self, kind: str) -> str:
        """The database URL that logs in as the role of ``kind``."""
        parts = urlsplit(self.admin_url)
        netloc = f"{self.names[kind]}:{self.password}@{parts.hostname}:{parts.port}"
        return parts._replace(netloc=netloc).geturl()


@pytest.fixture(scope="module")
def roles(postgres_url: str) -> Iterator[Roles]:
    """Login roles migration, runtime and reader; the runtime may read the features."""
    suffix = secrets.token_hex(4)
    made = Roles(
        {kind: f"scorer_it_{kind}_{suffix}" for kind in ("migration", "runtime", "reader")},
        secrets.token_hex(12),
        f"roles_{suffix}",
        postgres_url,
    )
    created: list[str] = []
    try:
        for name in made.names.values():
            services.execute(
                postgres_url, f"CREATE ROLE {q(name)} LOGIN PASSWORD %s", (made.password,)
            )
            created.append(name)
        database = urlsplit(postgres_url).path.lstrip("/")
        services.execute(
            postgres_url, f"GRANT CREATE ON DATABASE {q(database)} TO {q(made.names['migration'])}"
        )
        runtime = q(made.names["runtime"])
        services.execute(postgres_url, f"GRANT USAGE ON SCHEMA features TO {runtime}")
        services.execute(postgres_url, f"GRANT SELECT ON {FEATURES_TABLE} TO {runtime}")
        yield made
    finally:
        services.execute(postgres_url, f"DROP SCHEMA IF EXISTS {q(made.schema)} CASCADE")
        _drop_roles(postgres_url, created)


def _drop_roles(url: str, names: list[str]) -> None:
    for name in names:
        services.execute(url, f"DROP OWNED BY {q(name)} CASCADE")  # its grants, here
        services.execute(url, f"DROP ROLE {q(name)}")


def _env(roles: Roles, kind: str, mlflow_uri: str, model: ChurnModel) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "SCORER_DATABASE_URL": roles.url(kind),
        "SCORER_MODEL_NAME": model.name,
        "SCORER_MODEL_ALIAS": "champion",
        "SCORER_FEATURES_TABLE": FEATURES_TABLE,
        "SCORER_ENTITY_COLUMN": "customer_id",
        "SCORER_TARGET_SCHEMA": roles.schema,
    }


def _scorer(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    """Run the scorer: its exit code, its last log line, and its whole output."""
    result = services.run_scorer(env, *args)
    output = result.stdout + result.stderr
    lines = services.json_lines(result.stdout)
    return result.returncode, lines[-1] if lines else {}, output


@pytest.fixture(scope="module")
def migrated(roles: Roles, mlflow_uri: str, churn_model: ChurnModel) -> Roles:
    """The schema migrated by the migration role, which granted the runtime and reader roles."""
    env = _env(roles, "migration", mlflow_uri, churn_model)
    code, last, output = _scorer(env, "migrate")
    assert code == 0, output
    code, last, output = _scorer(
        env, "grant", "--runtime", roles.names["runtime"], "--reader", roles.names["reader"]
    )
    assert (code, last["event"]) == (0, "grant.done"), output
    return roles


@pytest.fixture(scope="module")
def published(migrated: Roles, mlflow_uri: str, churn_model: ChurnModel) -> str:
    """One run published by the runtime role: its run id."""
    env = {**_env(migrated, "runtime", mlflow_uri, churn_model), "SCORER_RUN_ID": "roles-first"}
    code, last, output = _scorer(env, "run")
    assert (code, last["event"]) == (0, "run.succeeded"), output
    return "roles-first"


def _query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return services.query(url, sql, params)


def _owner(roles: Roles, relation: str) -> str:
    return str(
        _query(
            roles.admin_url,
            "SELECT relowner::regrole::text FROM pg_class WHERE oid = to_regclass(%s)",
            (relation,),
        )[0][0]
    )


def test_each_command_runs_as_the_role_it_needs(
    migrated: Roles, published: str, mlflow_uri: str, churn_model: ChurnModel
) -> None:
    roles, s = migrated, q(migrated.schema)
    runtime = _env(roles, "runtime", mlflow_uri, churn_model)
    owner = roles.names["migration"]
    found = _query(
        roles.admin_url,
        "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s",
        (roles.schema,),
    )
    assert found == [(owner,)]
    # The runtime role's own run table belongs to the schema's owner, and it keeps no privilege
    # on it once published.
    first = f"{s}.{q(sink.partition_name(published))}"
    assert _owner(roles, first) == owner
    assert _query(
        roles.admin_url,
        "SELECT has_table_privilege(%s, %s, 'INSERT, UPDATE, DELETE, TRUNCATE')",
        (roles.names["runtime"], first),
    ) == [(False,)]

    code, last, output = _scorer(runtime, "check")
    assert (code, last["event"]) == (0, "check.passed"), output
    code, last, output = _scorer({**runtime, "SCORER_RUN_ID": "roles-second"}, "run")
    assert (code, last["event"]) == (0, "run.succeeded"), output
    listed = services.run_scorer(runtime, "runs")  # a table on stdout, for people
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "roles-second" in listed.stdout

    reader = roles.url("reader")
    rows = _query(reader, f"SELECT run_id, count(*) FROM {s}.latest_predictions GROUP BY run_id")
    assert rows == [("roles-second", CUSTOMERS)]
    for table in ("scoring_runs", "predictions"):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            _query(reader, f"SELECT 1 FROM {s}.{table} LIMIT 1")

    code, last, output = _scorer(runtime, "prune", "--keep-runs", "1")
    assert (code, last["event"], last["pruned"]) == (0, "prune.done", 1), output
    statuses = dict(_query(roles.admin_url, f"SELECT run_id, status FROM {s}.scoring_runs"))
    assert statuses == {"roles-first": "pruned", "roles-second": "succeeded"}
    assert _query(roles.admin_url, "SELECT to_regclass(%s)", (first,)) == [(None,)]


def _latest_run(roles: Roles) -> str:
    s = q(roles.schema)
    return str(_query(roles.admin_url, f"SELECT run_id FROM {s}.latest_predictions LIMIT 1")[0][0])


FORBIDDEN = [
    "DROP TABLE {s}.{partition}",
    "TRUNCATE {s}.predictions",
    "TRUNCATE {s}.{partition}",
    "DELETE FROM {s}.scoring_runs",
    "DELETE FROM {s}.predictions",
    "UPDATE {s}.predictions SET score = 0",
    "INSERT INTO {s}.predictions SELECT * FROM {s}.predictions LIMIT 1",
    "ALTER TABLE {s}.predictions ADD COLUMN x integer",
    "ALTER TABLE {s}.predictions DETACH PARTITION {s}.{partition}",
    "ALTER TABLE {s}.{partition} RENAME TO gone",
    "ALTER TABLE {s}.scoring_runs DROP COLUMN error",
    "DROP TABLE {s}.scoring_runs",
    "DROP VIEW {s}.latest_predictions",
    "ALTER SCHEMA {s} RENAME TO gone",
    "DROP SCHEMA {s} CASCADE",
    "CREATE TABLE {s}.mine (x integer)",
    "SELECT {s}.run_partition_drop('{partition}')",  # its run is not marked pruned
    # Marked pruned, the model's newest run still keeps its partition.
    "UPDATE {s}.scoring_runs SET status = 'pruned' WHERE run_id = '{run_id}';"
    " SELECT {s}.run_partition_drop('{partition}')",
    "SELECT {s}.run_table_drop('{partition}')",  # published: not an unpublished run table
    "SELECT {s}.run_table_add_key('predictions_text')",  # a parent, not a run table
]


@pytest.mark.parametrize("statement", FORBIDDEN)
def test_the_runtime_role_cannot_destroy_or_alter_what_is_published(
    migrated: Roles, published: str, statement: str
) -> None:
    s, run_id = q(migrated.schema), _latest_run(migrated)
    partition = sink.partition_name(run_id)
    table = f"{s}.{q(partition)}"
    before = _query(migrated.admin_url, f"SELECT count(*) FROM {table}")
    sql = statement.format(s=s, partition=partition, run_id=run_id)
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        services.execute(migrated.url("runtime"), sql)
    assert _query(migrated.admin_url, f"SELECT count(*) FROM {table}") == before
    assert _owner(migrated, table) == migrated.names["migration"]


def _written(roles: Roles) -> tuple[Any, ...]:
    """What a command could have written: run rows and their statuses, and the schema's tables."""
    s = q(roles.schema)
    rows = _query(roles.admin_url, f"SELECT run_id, status, attempts FROM {s}.scoring_runs")
    tables = _query(
        roles.admin_url,
        "SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace",
        (s,),
    )
    return (sorted(rows), sorted(tables))


MISSING = [
    # (what is revoked, the command, what the message names)
    ("SELECT ON {features}", "check", "SELECT on table {features}"),
    ("SELECT ON {features}", "run", "SELECT on table {features}"),
    ("USAGE ON SCHEMA features", "check", "USAGE on schema features"),
    (
        "EXECUTE ON FUNCTION {s}.run_table_publish",
        "check",
        "EXECUTE on function {n}.run_table_publish",
    ),
    ("EXECUTE ON FUNCTION {s}.run_table_create", "run", "EXECUTE on function {n}.run_table_create"),
    ("INSERT ON {s}.scoring_runs", "run", "INSERT on table {n}.scoring_runs"),
    ("INSERT ON {s}.scoring_runs", "backfill", "INSERT on table {n}.scoring_runs"),
    (
        "EXECUTE ON FUNCTION {s}.run_partition_drop",
        "prune",
        "EXECUTE on function {n}.run_partition_drop",
    ),
    ("UPDATE ON {s}.scoring_runs", "prune", "UPDATE on table {n}.scoring_runs"),
    ("SELECT ON {s}.scoring_runs", "runs", "SELECT on table {n}.scoring_runs"),
]


@pytest.mark.parametrize(("revoked", "command", "named"), MISSING)
def test_a_missing_privilege_exits_2_naming_it_and_nothing_is_written(
    migrated: Roles,
    published: str,
    mlflow_uri: str,
    churn_model: ChurnModel,
    revoked: str,
    command: str,
    named: str,
) -> None:
    roles = migrated
    names = {"s": q(roles.schema), "n": roles.schema, "features": FEATURES_TABLE}
    revoked, named = revoked.format(**names), named.format(**names)
    runtime = q(roles.names["runtime"])
    env = {**_env(roles, "runtime", mlflow_uri, churn_model), "SCORER_RUN_ID": f"roles-{command}"}
    args = {"backfill": ("--snapshots", "2026-01-01"), "prune": ("--keep-runs", "1")}
    before = _written(roles)
    # A superuser's REVOKE and GRANT act as the object's owner: the grant comes back as it was.
    services.execute(roles.admin_url, f"REVOKE {revoked} FROM {runtime}")
    try:
        code, last, output = _scorer(env, command, *args.get(command, ()))
    finally:
        services.execute(roles.admin_url, f"GRANT {revoked} TO {runtime}")
    assert (code, last.get("kind"), last.get("exit_code")) == (2, "database_privilege", 2), output
    assert named in last["error"], last["error"]
    assert "nothing was written" in last["error"]
    assert _written(roles) == before


def test_migrate_as_the_runtime_role_exits_2_naming_the_ownership(
    migrated: Roles, mlflow_uri: str, churn_model: ChurnModel
) -> None:
    code, last, output = _scorer(_env(migrated, "runtime", mlflow_uri, churn_model), "migrate")
    assert (code, last.get("kind")) == (2, "database_privilege"), output
    assert f"ownership of schema {migrated.schema!r}" in last["error"]


def test_a_sharded_run_publishes_as_the_runtime_role(
    migrated: Roles, published: str, mlflow_uri: str, churn_model: ChurnModel
) -> None:
    env = _env(migrated, "runtime", mlflow_uri, churn_model)
    run_id = "roles-sharded"
    processes = [
        services.start_scorer(services.shard_env(env, run_id, 2, index), "run")
        for index in range(2)
    ]
    results = [services.finish_scorer(process) for process in processes]
    assert all(code == 0 for code, _, _ in results), results
    s = q(migrated.schema)
    rows = _query(
        migrated.admin_url, f"SELECT count(*) FROM {s}.predictions WHERE run_id = %s", (run_id,)
    )
    assert rows == [(CUSTOMERS,)]
    # Every table of the run (the run's and its shards') belongs to the schema's owner and
    # leaves the runtime role no privilege.
    tables = _query(
        migrated.admin_url,
        "SELECT c.oid::regclass::text, c.relowner::regrole::text,"
        " has_table_privilege(%s, c.oid, 'INSERT')"
        " FROM pg_class AS c WHERE c.relnamespace = %s::regnamespace AND c.relname LIKE %s"
        " AND c.relkind IN ('r', 'p')",
        (migrated.names["runtime"], s, sink.partition_name(run_id)[:-9] + "%"),
    )
    assert len(tables) == 3, tables
    assert {(owner, insert) for _, owner, insert in tables} == {
        (migrated.names["migration"], False)
    }


def _privileges(url: str, schema: str, role: str) -> set[tuple[str, str, str]]:
    """Every privilege ``role`` holds in ``schema``, from the catalog: (kind, object, privilege)."""
    rows = _query(
        url,
        """
        SELECT 'schema', n.nspname, a.privilege_type
        FROM pg_namespace AS n, aclexplode(n.nspacl) AS a
        WHERE n.oid = %s::regnamespace AND a.grantee = %s::regrole
        UNION ALL
        SELECT c.relkind::text, c.relname, a.privilege_type
        FROM pg_class AS c, aclexplode(c.relacl) AS a
        WHERE c.relnamespace = %s::regnamespace AND a.grantee = %s::regrole
        UNION ALL
        SELECT 'function', p.proname, a.privilege_type
        FROM pg_proc AS p, aclexplode(p.proacl) AS a
        WHERE p.pronamespace = %s::regnamespace AND a.grantee = %s::regrole
        """,
        (q(schema), q(role)) * 3,
    )
    return {(str(kind), str(name), str(privilege)) for kind, name, privilege in rows}


def test_the_grant_command_and_its_dry_run_sql_give_the_same_privileges(
    migrated: Roles, mlflow_uri: str, churn_model: ChurnModel
) -> None:
    roles = migrated
    suffix = secrets.token_hex(4)
    by_hand = {kind: f"scorer_it_{kind}_{suffix}" for kind in ("runtime", "reader")}
    created: list[str] = []
    try:
        for name in by_hand.values():
            services.execute(roles.admin_url, f"CREATE ROLE {q(name)} NOLOGIN")
            created.append(name)
        result = services.run_scorer(
            {"SCORER_TARGET_SCHEMA": roles.schema},  # no database URL: it connects to nothing
            "grant",
            "--dry-run",
            "--runtime",
            by_hand["runtime"],
            "--reader",
            by_hand["reader"],
        )
        assert result.returncode == 0, result.stdout + result.stderr
        with closing(psycopg2.connect(roles.url("migration"))) as conn:
            with conn.cursor() as cur:
                cur.execute(result.stdout)  # as a DBA applies it, as the schema's owner
            conn.commit()
        for kind in ("runtime", "reader"):
            by_command = _privileges(roles.admin_url, roles.schema, roles.names[kind])
            assert by_command == _privileges(roles.admin_url, roles.schema, by_hand[kind])
        runtime = _privileges(roles.admin_url, roles.schema, roles.names["runtime"])
        reader = _privileges(roles.admin_url, roles.schema, roles.names["reader"])
    finally:
        _drop_roles(roles.admin_url, created)
    # Least privilege, as the catalog says: the runtime role holds no DELETE on the run rows,
    # no TRUNCATE, and nothing on the published predictions but SELECT; the reader only SELECT
    # on the consumer views.
    assert ("r", "scoring_runs", "DELETE") not in runtime
    assert not any(
        privilege in ("TRUNCATE", "REFERENCES", "TRIGGER", "CREATE") for _, _, privilege in runtime
    )
    assert {p for kind, name, p in runtime if name.startswith("predictions")} == {"SELECT"}
    assert {kind for kind, _, _ in reader} == {"schema", "v"}
    assert {p for kind, _, p in reader if kind == "v"} == {"SELECT"}
    assert len([name for kind, name, _ in reader if kind == "v"]) == 6


def test_grant_refuses_what_would_defeat_it(migrated: Roles) -> None:
    roles = migrated
    as_owner = {"SCORER_DATABASE_URL": roles.url("migration"), "SCORER_TARGET_SCHEMA": roles.schema}
    reader = roles.names["reader"]
    cases = [
        # (whose URL, the runtime role named, the kind, what the message says)
        (as_owner, "scorer_it_no_such_role", "config", "does not exist"),
        (as_owner, roles.names["migration"], "config", "could drop every table"),
        (
            {**as_owner, "SCORER_DATABASE_URL": roles.url("runtime")},
            roles.names["runtime"],
            "database_privilege",
            f"ownership of schema {roles.schema!r}",
        ),
    ]
    for env, runtime, kind, said in cases:
        code, last, output = _scorer(env, "grant", "--runtime", runtime, "--reader", reader)
        assert (code, last.get("kind")) == (2, kind), output
        assert said in last["error"]


def test_grant_again_changes_nothing(migrated: Roles) -> None:
    roles = migrated
    env = {"SCORER_DATABASE_URL": roles.url("migration"), "SCORER_TARGET_SCHEMA": roles.schema}
    before = {
        kind: _privileges(roles.admin_url, roles.schema, roles.names[kind]) for kind in roles.names
    }
    code, last, output = _scorer(
        env, "grant", "--runtime", roles.names["runtime"], "--reader", roles.names["reader"]
    )
    assert (code, last["event"]) == (0, "grant.done"), output
    after = {
        kind: _privileges(roles.admin_url, roles.schema, roles.names[kind]) for kind in roles.names
    }
    assert after == before


def test_migrate_with_grant_gives_what_grant_gives(migrated: Roles) -> None:
    """The release's migration Job (``migrate.grant.*``) migrates, then grants as ``grant``."""
    roles = migrated
    suffix = secrets.token_hex(4)
    fresh = {kind: f"scorer_it_{kind}_{suffix}" for kind in ("runtime", "reader")}
    env = {"SCORER_DATABASE_URL": roles.url("migration"), "SCORER_TARGET_SCHEMA": roles.schema}
    created: list[str] = []
    try:
        for name in fresh.values():
            services.execute(roles.admin_url, f"CREATE ROLE {q(name)} NOLOGIN")
            created.append(name)
        code, last, output = _scorer(env, "migrate", "--grant-runtime", fresh["runtime"])
        assert (code, last.get("kind")) == (2, "config"), output  # one role without the other
        assert _privileges(roles.admin_url, roles.schema, fresh["runtime"]) == set()
        code, last, output = _scorer(
            env,
            "migrate",
            "--grant-runtime",
            fresh["runtime"],
            "--grant-reader",
            fresh["reader"],
        )
        assert (code, last["event"]) == (0, "grant.done"), output
        for kind in ("runtime", "reader"):
            granted = _privileges(roles.admin_url, roles.schema, fresh[kind])
            assert granted == _privileges(roles.admin_url, roles.schema, roles.names[kind])
            assert granted
    finally:
        _drop_roles(roles.admin_url, created)


def test_evaluate_runs_as_the_runtime_role_with_select_on_the_outcomes(
    migrated: Roles, published: str, mlflow_uri: str, churn_model: ChurnModel
) -> None:
    table = f"outcomes_{secrets.token_hex(3)}"
    services.execute(
        roles_admin := migrated.admin_url,
        f"CREATE TABLE features.{table} (customer_id bigint, churned boolean, observed_on date)",
    )
    env = {
        **_env(migrated, "runtime", mlflow_uri, churn_model),
        "SCORER_OUTCOMES_TABLE": f"features.{table}",
        "SCORER_OUTCOME_ENTITY_COLUMN": "customer_id",
        "SCORER_OUTCOME_COLUMN": "churned",
        "SCORER_OUTCOME_TIME_COLUMN": "observed_on",
        "SCORER_OUTCOME_HORIZON_DAYS": "30",
    }
    code, last, output = _scorer(env, "evaluate")
    assert (code, last["kind"]) == (2, "database_privilege"), output
    assert f"SELECT on table features.{table}" in last["error"]
    services.execute(
        roles_admin, f"GRANT SELECT ON features.{table} TO {q(migrated.names['runtime'])}"
    )
    code, last, output = _scorer(env, "evaluate")
    assert (code, last["event"]) == (0, "evaluate.done"), output
