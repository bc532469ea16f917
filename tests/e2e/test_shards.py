"""A sharded release on a real kind cluster: the CronJob's Job is an Indexed Job of 3 pods,
each scoring its own part of one run, published once when the last shard succeeds. A shard
pod deleted mid-run is retried on its own index; a shard exiting 2 fails the whole Job with
nothing published; `helm test` checks the installed release. One install in a namespace of
its own (beside tests/e2e/test_scoring.py's)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import psycopg2
import pytest

from scorer.postgres import locks
from tests.support import services
from tests.support.kube import (
    CRONJOB,
    EVERY_MINUTE,
    INDEX_ANNOTATION,
    RELEASE,
    Cluster,
    Deployment,
    OnDeployment,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "scorer-e2e-shards"
MODEL = "churn-e2e-shards"
SHARDS = 3
CUSTOMERS = 60_000
TABLE = "features.customers"
BROKEN = "features.customers_with_a_duplicate"  # no key: one id twice, in one shard's part


@dataclass
class Release(OnDeployment):
    """The sharded release and its database."""

    deployment: Deployment

    def install(self, *, suspend: bool, table: str = TABLE) -> None:
        self.deployment.install(
            {
                **EVERY_MINUTE,
                "activeDeadlineSeconds": 600,
                "successfulJobsHistoryLimit": 20,
                "failedJobsHistoryLimit": 20,
                "suspend": suspend,
                "shards": SHARDS,
                "backoffLimitPerIndex": 2,
                "model": {"stage": "", "version": ""},
                "features": {"table": table},
                "mlflow": {"recordRuns": False},
                "networkPolicy": self.deployment.network_policy(),
                "image": {"digest": ""},
                "resources": {
                    "requests": {"cpu": "50m", "memory": "256Mi"},
                    "limits": {"memory": "1Gi"},
                },
            }
        )

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        return self.deployment.run_row(run_id)

    def shard_rows(self, run_id: str) -> list[tuple[int, str, int | None]]:
        return [
            (int(shard), str(status), None if scored is None else int(scored))
            for shard, status, scored in services.query(
                self.database_url,
                "SELECT shard, status, rows_scored FROM scoring.scoring_run_shards"
                " WHERE run_id = %s ORDER BY shard",
                (run_id,),
            )
        ]

    def published(self, run_id: str) -> tuple[int, int, list[int]]:
        """(rows, distinct entities, model versions) of the run in ``predictions``."""
        ((rows, entities, versions),) = services.query(
            self.database_url,
            "SELECT count(*), count(DISTINCT entity_id), array_agg(DISTINCT model_version)"
            " FROM scoring.predictions WHERE run_id = %s",
            (run_id,),
        )
        return int(rows), int(entities), sorted(int(v) for v in versions or [] if v is not None)


@pytest.fixture(scope="module")
def release(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    work = tmp_path_factory.mktemp("e2e-shards")
    with cluster.deploy(NAMESPACE, work, model=MODEL, customers=CUSTOMERS, seed=13) as deployment:
        services.execute(
            deployment.database_url,
            f"CREATE TABLE {BROKEN} AS SELECT * FROM {TABLE};"
            f" INSERT INTO {BROKEN} SELECT * FROM {TABLE} WHERE customer_id = 12345",
        )
        release = Release(deployment)
        release.install(suspend=False)
        yield release


def assert_published_exactly_once(release: Release, job: str) -> tuple[dict[str, Any], list[str]]:
    """The run published once, exactly; returns its row and where each surviving pod loaded
    the model from (one files digest across all of them)."""
    row = release.run_row(job)
    assert row is not None, release.kube.logs(job)
    assert row["status"] == "succeeded"
    assert row["shards"] == SHARDS
    assert row["rows_scored"] == CUSTOMERS
    assert release.published(job) == (CUSTOMERS, CUSTOMERS, [1])
    shards = release.shard_rows(job)
    assert [(shard, status) for shard, status, _ in shards] == [
        (index, "succeeded") for index in range(SHARDS)
    ]
    assert sum(scored or 0 for _, _, scored in shards) == CUSTOMERS
    lines = [line for pod in release.kube.pods_of(job) for line in release.kube.pod_log_lines(pod)]
    assert [line["event"] for line in lines].count("run.published") == 1  # by the last shard
    loads = [line for line in lines if line["event"] == "model.loaded"]
    assert len({line["files_sha256"] for line in loads}) == 1, loads  # the very same files
    # Each pod's predict pool is its CPU request (50m, rounded up), not the node's CPUs.
    assert {line["predict_threads"] for line in loads} == {1}, loads
    sources = [str(line["loaded_from"]) for line in loads]
    assert sources.count("registry") <= 1, sources  # the others loaded the run's copy
    return row, sources


def test_a_sharded_cronjob_fires_three_pods_and_publishes_once(release: Release) -> None:
    spec = release.kube.kubectl_json("get", "cronjob", CRONJOB)["spec"]["jobTemplate"]["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == (
        "Indexed",
        SHARDS,
        SHARDS,
    )
    assert spec["backoffLimitPerIndex"] == 2
    job = release.kube.first_scheduled_job(timeout=150)
    release.kube.wait_job(job, "complete")
    release.install(suspend=True)  # the next scenarios own the (model, snapshot) lock
    for other in release.kube.scheduled_jobs():
        release.kube.wait_job(other, "complete")
    pods = release.kube.pods_of(job)
    indexes = sorted(int(p["metadata"]["annotations"][INDEX_ANNOTATION]) for p in pods)
    assert indexes == list(range(SHARDS))
    row, sources = assert_published_exactly_once(release, job)
    assert row["trigger"] == "scheduled"
    # One pod downloaded the model from MLflow; the other two loaded the run's copy.
    assert sorted(sources) == ["registry", "run copy", "run copy"]


def waiting_on_lock(cur: psycopg2.extensions.cursor, key: str) -> int:
    """How many sessions wait for the advisory lock ``key`` (taken as hashtextextended)."""
    cur.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND ((classid::bigint << 32) | objid::bigint) = hashtextextended(%s, 0)",
        (key,),
    )
    ((waiting,),) = cur.fetchall()
    return int(waiting)


def test_a_shard_pod_deleted_mid_run_is_retried_on_its_index(release: Release) -> None:
    job = f"{CRONJOB}-manual-{int(time.time())}"
    key = locks.opening("scoring", job)
    # The test holds the run's opening lock, so every shard is mid-run (connected, waiting for
    # the run to be opened) when the victim is deleted: it cannot finish its part first.
    with closing(psycopg2.connect(release.database_url)) as holder, holder.cursor() as cur:
        holder.autocommit = True
        cur.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
        kube = release.kube
        kube.kubectl("create", "job", f"--from=cronjob/{CRONJOB}", job)
        deadline = time.monotonic() + 180
        while waiting_on_lock(cur, key) < SHARDS:
            assert time.monotonic() < deadline, f"the shards never all waited:\n{kube.logs(job)}"
            time.sleep(0.5)
        victim = release.kube.wait_pod_running(job, index=1)
        # SIGTERM waits behind the lock wait; the kill a second later ends the pod.
        release.kube.kubectl("delete", "pod", victim, "--grace-period=1", "--wait=true")
    release.kube.wait_job(job, "complete")
    (scored_by,) = services.query(
        release.database_url,
        "SELECT k8s_pod FROM scoring.scoring_run_shards WHERE run_id = %s AND shard = 1",
        (job,),
    )
    assert scored_by[0] is not None
    assert scored_by[0] != victim  # another pod ran index 1 again
    assert_published_exactly_once(release, job)


def test_a_shard_exiting_2_fails_the_job_and_nothing_is_published(release: Release) -> None:
    release.install(suspend=True, table=BROKEN)
    try:
        job = f"{CRONJOB}-duplicate-{int(time.time())}"
        release.kube.kubectl("create", "job", f"--from=cronjob/{CRONJOB}", job)
        status = release.kube.wait_job(job, "failed")["status"]
        failed = next(c for c in status["conditions"] if c["type"] == "Failed")
        assert failed["reason"] == "PodFailurePolicy"  # exit 2 fails the Job at once
        row = release.run_row(job)
        assert row is not None
        assert row["status"] == "failed"
        assert row["failed_shard"] is not None
        assert "12345" in row["error"]  # the duplicated id is named (an id, not a feature)
        assert release.published(job)[0] == 0
    finally:
        release.install(suspend=True)


def test_the_network_policy_is_accepted_and_the_runs_pass_it(release: Release) -> None:
    # Accepted by the API server, as rendered; whether this cluster's CNI enforces it is not
    # asserted (kind's kindnet may or may not). Every scenario above ran with it in place.
    (policy,) = release.kube.kubectl_json("get", "networkpolicy")["items"]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert not spec.get("ingress")  # nothing connects to a batch job
    peers = [peer for rule in spec["egress"] for peer in rule.get("to", [])]
    assert {"ipBlock": {"cidr": f"{release.deployment.host}/32"}} in peers
    assert spec["podSelector"]["matchLabels"]


def test_helm_test_checks_the_installed_release(release: Release) -> None:
    out = release.kube.helm("test", RELEASE, "--logs").stdout
    assert "Phase:          Succeeded" in out, out
    assert "check.passed" in out, out  # the test pod's own `scorer check` summary
