"""TLS on a real kind cluster: the test PostgreSQL with TLS on and a CA made by the test, the CA
mounted by the chart (`database.tls.caSecret`). The database URL in the Secret has no TLS
options, as CloudNativePG's `uri` has none: the chart's `PGSSLMODE=verify-full` and
`PGSSLROOTCERT` make the pod verify the server. `verify-full` passes; a wrong CA fails the Job
at once, without retries (exit 2, `database_tls`, the podFailurePolicy's FailJob).

The pods run `scorer migrate` (the chart's `args`; the first install also runs the release's
own migration Job): it needs the database only, so what passes or fails is the connection."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import services, tls
from tests.support.kube import (
    CRONJOB,
    DATABASE_SECRET,
    Cluster,
    Deployment,
    Kube,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "scorer-e2e-tls"
CA_SECRET = "database-ca"
WRONG_CA_SECRET = "another-ca"


@dataclass
class TlsInstall:
    deployment: Deployment  # no MLflow: the pods run `scorer migrate`
    server: tls.Cluster
    ca: tls.Certificate

    @property
    def kube(self) -> Kube:
        return self.deployment.kube

    def install(self, ca_secret: str, *, migrate_hook: bool) -> None:
        """`helm upgrade --install`, suspended, its pods running `migrate` with this CA; with
        ``migrate_hook`` the release's own migration Job runs first (and must pass)."""
        values = {
            "suspend": True,
            "migrate": {"enabled": migrate_hook},
            "args": ["migrate"],
            "backoffLimit": 3,
            "database": {"tls": {"caSecret": ca_secret}},
        }
        self.deployment.install(values, dev=False)

    def run_job(self, name: str, outcome: str) -> dict[str, Any]:
        self.kube.kubectl("create", "job", f"--from=cronjob/{CRONJOB}", name)
        return self.kube.wait_job(name, outcome)


@pytest.fixture(scope="module")
def setup(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsInstall]:
    work = tmp_path_factory.mktemp("e2e-tls")
    ca = tls.make_ca(work / "ca")
    another_ca = tls.make_ca(work / "another-ca", "another CA")
    # The certificate names the address pods reach the host by, as a real server's names its host.
    certificate = tls.issue(ca, work / "server", [cluster.host])
    with (
        tls.postgres_cluster(certificate, listen=cluster.host) as server,
        cluster.namespace(NAMESPACE) as kube,
    ):
        kube.kubectl(
            "create", "secret", "generic", DATABASE_SECRET, f"--from-literal=url={server.url}"
        )
        for name, cert in ((CA_SECRET, ca.cert), (WRONG_CA_SECRET, another_ca.cert)):
            kube.kubectl("create", "secret", "generic", name, f"--from-file=ca.crt={cert}")
        mlflow = "http://mlflow.invalid:5000"
        deployment = Deployment(kube, server.url, mlflow, cluster.host, "churn-e2e-tls", (), work)
        yield TlsInstall(deployment, server, ca)


def test_verify_full_with_the_mounted_ca_passes(setup: TlsInstall) -> None:
    setup.install(CA_SECRET, migrate_hook=True)  # the release's migration Job, over TLS
    setup.run_job("tls-verify-full", "complete")
    (pod,) = setup.kube.pods_of("tls-verify-full")
    assert setup.kube.pod_log_lines(pod)[-1]["event"] == "migrate.done"
    # The server admits TLS connections only (hostssl): the pod made the schema over TLS.
    url = f"{setup.server.url}?sslmode=verify-full&sslrootcert={setup.ca.cert}"
    assert services.query(url, "SELECT to_regclass('scoring.scoring_runs') IS NOT NULL") == [
        (True,)
    ]


def test_a_wrong_ca_fails_the_job_at_once(setup: TlsInstall) -> None:
    # No migration hook: with this CA it would fail the upgrade itself, before any CronJob.
    setup.install(WRONG_CA_SECRET, migrate_hook=False)
    job = setup.run_job("tls-wrong-ca", "failed")
    pods = setup.kube.pods_of("tls-wrong-ca")
    assert len(pods) == 1, "exit 2 must not be retried"
    reasons = {c["reason"] for c in job["status"]["conditions"] if c["type"] == "Failed"}
    assert reasons == {"PodFailurePolicy"}
    last = setup.kube.pod_log_lines(pods[0])[-1]
    assert (last["kind"], last["exit_code"]) == ("database_tls", 2)
    assert "an unknown CA" in last["error"]
    assert tls.PASSWORD not in setup.kube.logs("tls-wrong-ca")
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 2
