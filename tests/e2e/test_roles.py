"""A least-privilege install on kind: three database roles, each Job with the Secret of its own.

The migration role owns the schema: the release's migration hook migrates as it and grants the
other two (``migrate.grant.*``). The runtime role owns nothing: the CronJob's run scores and
publishes as it. The reader role reads the consumer view ``latest_predictions`` and nothing
else. The roles are made here as a DBA would, once per database; nothing else is run from the
test host but reads.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass

import psycopg2
import pytest

from scorer.postgres.identifiers import quote_identifier as q
from tests.support import services
from tests.support.kube import (
    CRONJOB,
    Cluster,
    Kube,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "scorer-e2e-roles"
MODEL = "churn-roles"
CUSTOMERS = 500
KINDS = ("migration", "runtime", "reader")


@dataclass
class Roles:
    """The three roles of one database: their names, passwords and URLs."""

    admin_url: str
    names: dict[str, str]
    passwords: dict[str, str]

    def url(self, kind: str, host: str | None = None) -> str:
        """``kind``'s URL of the test database, on ``host`` (the kind gateway, for pods)."""
        database = self.admin_url.rsplit("/", 1)[1]
        url = services.with_database(services.admin_url(), database, host=host)
        credentials, _, rest = url.partition("@")
        scheme = credentials.split("//", 1)[0]
        return f"{scheme}//{self.names[kind]}:{self.passwords[kind]}@{rest}"


@dataclass
class Release:
    kube: Kube
    roles: Roles


@pytest.fixture(scope="module")
def release(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    suffix = secrets.token_hex(3)
    with cluster.deploy(
        NAMESPACE,
        tmp_path_factory.mktemp("e2e-roles"),
        model=MODEL,
        customers=CUSTOMERS,
        seed=7,
        database_secret=False,  # each Job has the Secret of its own role
    ) as deployment:
        admin_url = deployment.database_url
        roles = Roles(
            admin_url,
            {kind: f"scorer_e2e_{kind}_{suffix}" for kind in KINDS},
            {kind: secrets.token_hex(12) for kind in KINDS},
        )
        database = admin_url.rsplit("/", 1)[1]
        try:
            for kind in KINDS:  # as a DBA does, once per database
                services.execute(
                    admin_url,
                    f"CREATE ROLE {q(roles.names[kind])} LOGIN PASSWORD '{roles.passwords[kind]}'",
                )
            services.execute(
                admin_url,
                f"GRANT CREATE ON DATABASE {q(database)} TO {q(roles.names['migration'])};"
                f" GRANT USAGE ON SCHEMA features TO {q(roles.names['runtime'])};"
                f" GRANT SELECT ON features.customers TO {q(roles.names['runtime'])}",
            )
            for kind in ("migration", "runtime"):
                deployment.kube.kubectl(
                    "create", "secret", "generic", f"scorer-{kind}",
                    f"--from-literal=url={roles.url(kind, cluster.host)}",
                )  # fmt: skip
            deployment.install(
                {
                    "mlflow": {"recordRuns": False},
                    "database": {"existingSecret": "scorer-runtime"},
                    "migrate": {
                        "database": {"existingSecret": "scorer-migration"},
                        "grant": {
                            "runtimeRole": roles.names["runtime"],
                            "readerRole": roles.names["reader"],
                        },
                    },
                }
            )
            yield Release(deployment.kube, roles)
        finally:
            services.execute(
                admin_url,
                "; ".join(
                    f"DROP OWNED BY {q(name)} CASCADE; DROP ROLE {q(name)}"
                    for name in roles.names.values()
                ),
            )


def test_the_cronjob_publishes_as_the_runtime_role_that_owns_nothing(release: Release) -> None:
    roles = release.roles
    job = f"{CRONJOB}-roles-{secrets.token_hex(3)}"
    release.kube.kubectl("create", "job", f"--from=cronjob/{CRONJOB}", job)
    release.kube.wait_job(job, "complete")
    ((status, rows),) = services.query(
        roles.admin_url,
        "SELECT status, rows_scored FROM scoring.scoring_runs WHERE run_id = %s",
        (job,),
    )
    assert (status, rows) == ("succeeded", CUSTOMERS)
    owners = services.query(
        roles.admin_url,
        "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c"
        " WHERE c.relnamespace = 'scoring'::regnamespace",
    )
    assert owners == [(roles.names["migration"],)]  # the run's partition included
    runtime = closing(psycopg2.connect(roles.url("runtime")))
    with (
        runtime as conn,
        conn.cursor() as cur,
        pytest.raises(psycopg2.errors.InsufficientPrivilege),
    ):
        cur.execute("TRUNCATE scoring.predictions")


def test_the_reader_reads_latest_predictions_and_nothing_else(release: Release) -> None:
    with closing(psycopg2.connect(release.roles.url("reader"))) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM scoring.latest_predictions WHERE model_name = %s", (MODEL,)
        )
        assert cur.fetchone() == (CUSTOMERS,)
        conn.rollback()
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT count(*) FROM scoring.scoring_runs")
