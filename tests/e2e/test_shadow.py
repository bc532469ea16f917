"""A challenger in the champion's shadow on a real kind cluster: a release with
`model.shadow.alias: challenger` runs a Job whose pod publishes the champion's run, then scores
the challenger on the same snapshot as a shadow run beside it, compared with it, and exits 0.
No consumer view shows the shadow run. One install in a namespace of its own."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from scorer.postgres.privileges import VIEWS
from tests.support import services
from tests.support.fixtures import register_versions, synthetic_customers
from tests.support.kube import CRONJOB, Cluster, Deployment

pytestmark = pytest.mark.e2e

NAMESPACE = "scorer-e2e-shadow"
MODEL = "churn-e2e-shadow"
CUSTOMERS = 5_000


def install_values(deployment: Deployment) -> dict[str, Any]:
    """A suspended release (Jobs are made from it by hand) whose runs have a shadow, with
    egress to this host's services only."""
    return {
        "schedule": "0 3 * * *",
        "timeZone": "Etc/UTC",
        "suspend": True,
        "activeDeadlineSeconds": 600,
        "model": {"stage": "", "version": "", "shadow": {"alias": "challenger"}},
        "mlflow": {"recordRuns": True},
        "networkPolicy": deployment.network_policy(),
    }


@pytest.fixture(scope="module")
def release(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The release installed: version 1 the champion, version 2 the challenger."""
    work = tmp_path_factory.mktemp("e2e-shadow")
    with cluster.deploy(NAMESPACE, work, model=MODEL, customers=CUSTOMERS, seed=9) as deployment:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            register_versions(  # version 2: challenger
                deployment.mlflow_uri, MODEL, synthetic_customers(2_000, seed=6), 1, "challenger"
            )
        deployment.install(install_values(deployment))
        yield deployment


def test_a_release_with_a_challenger_runs_a_shadow_beside_the_published_run(
    release: Deployment,
) -> None:
    env = {e["name"]: e.get("value") for e in release.kube.kubectl_json("get", "cronjob", CRONJOB)[
        "spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]}  # fmt: skip
    assert env["SCORER_SHADOW_ALIAS"] == "challenger"
    job = f"{CRONJOB}-manual-{int(time.time())}"
    release.kube.kubectl("create", "job", f"--from=cronjob/{CRONJOB}", job)
    release.kube.wait_job(job, "complete")  # exit 0

    champion, shadow = release.run_row(job), release.run_row(f"{job}-shadow")
    assert champion is not None, release.kube.logs(job)
    assert shadow is not None, release.kube.logs(job)
    assert (champion["status"], champion["shadow"], champion["model_version"]) == (
        "succeeded",
        False,
        1,
    )
    assert (shadow["status"], shadow["shadow"], shadow["model_version"]) == ("succeeded", True, 2)
    assert shadow["shadow_of"] == job
    assert shadow["snapshot"] == champion["snapshot"]
    assert (shadow["k8s_job"], shadow["k8s_namespace"]) == (job, NAMESPACE)  # full lineage
    assert shadow["rows_scored"] == CUSTOMERS
    assert champion["comparison"]["compared_with"] == f"{job}-shadow"
    assert champion["comparison"]["rows_compared"] == CUSTOMERS
    assert 0.5 < champion["comparison"]["spearman"] <= 1.0  # two models of one churn signal
    for row in (champion, shadow):
        assert row["mlflow_record_status"] == "recorded"

    for view in VIEWS:
        shown = services.query(release.database_url, f"SELECT DISTINCT run_id FROM scoring.{view}")
        assert f"{job}-shadow" not in {run_id for (run_id,) in shown}, view
    assert services.query(
        release.database_url, "SELECT DISTINCT run_id FROM scoring.latest_predictions"
    ) == [(job,)]

    (pod,) = release.kube.pods_of(job)
    lines = release.kube.pod_log_lines(pod)
    summary = lines[-1]
    assert summary["event"] == "shadow.succeeded", summary
    assert (summary["run_id"], summary["exit_code"]) == (job, 0)
    assert summary["shadow"]["outcome"] == "scored"
    assert summary["shadow"]["comparison"]["spearman"] == champion["comparison"]["spearman"]
    assert [line["event"] for line in lines].count("run.succeeded") == 2  # champion, shadow
