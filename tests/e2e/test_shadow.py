"""A challenger in the champion's shadow on a real kind cluster: a release with
`model.shadow.alias: challenger` runs a Job whose pod publishes the champion's run, then scores
the challenger on the same snapshot as a shadow run beside it, compared with it, and exits 0.
No consumer view shows the shadow run. One install in a namespace of its own."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from scorer.postgres.privileges import VIEWS
from tests.support import services
from tests.support.fixtures import register_versions, synthetic_customers
from tests.support.helm import ENV_VALUES, find_helm
from tests.support.kube import (
    CRONJOB,
    DATABASE_SECRET,
    IMAGE,
    IMAGE_REPOSITORY,
    IMAGE_TAG,
    RELEASE,
    Kube,
    build_and_load_image,
    create_database_secret,
    seed,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "scorer-e2e-shadow"
MODEL = "churn-e2e-shadow"
CUSTOMERS = 5_000


@dataclass
class Release(Kube):
    """The release with a challenger, and its database."""

    database_url: str = ""

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        rows = services.query(
            self.database_url,
            "SELECT row_to_json(r) FROM scoring.scoring_runs r WHERE run_id = %s",
            (run_id,),
        )
        return None if not rows else dict(rows[0][0])


def install_values(host: str, mlflow_uri: str) -> dict[str, Any]:
    """A suspended release (Jobs are made from it by hand) whose runs have a shadow."""
    host_peer = [{"ipBlock": {"cidr": f"{host}/32"}}]
    return {
        "schedule": "0 3 * * *",
        "timeZone": "Etc/UTC",
        "suspend": True,
        "activeDeadlineSeconds": 600,
        "model": {
            "name": MODEL,
            "alias": "champion",
            "stage": "",
            "version": "",
            "shadow": {"alias": "challenger"},
        },
        "features": {"table": "features.customers", "entityColumn": "customer_id"},
        "log": {"format": "json", "level": "INFO"},
        "mlflow": {"trackingUri": mlflow_uri, "recordRuns": True},
        "database": {"existingSecret": DATABASE_SECRET},
        "networkPolicy": {
            "enabled": True,
            "database": {"to": host_peer, "ports": [{"port": 5432, "protocol": "TCP"}]},
            "mlflow": {
                "to": host_peer,
                "ports": [{"port": int(mlflow_uri.rsplit(":", 1)[1]), "protocol": "TCP"}],
            },
        },
        "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"},
    }


@pytest.fixture(scope="module")
def release(
    kind_cluster: Any, host_address_for_pods: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    helm = find_helm()
    if helm is None:
        pytest.fail("helm is not built: run hack/helm.sh")
    work = tmp_path_factory.mktemp("e2e-shadow")
    build_and_load_image(kind_cluster, IMAGE)
    host = host_address_for_pods
    with (
        services.mlflow_server(work / "mlflow", host=host) as mlflow_uri,
        services.fresh_database("scorer_e2e_shadow") as database_url,
    ):
        seed(database_url, mlflow_uri, MODEL, CUSTOMERS, seed=9)  # version 1: champion
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            register_versions(  # version 2: challenger
                mlflow_uri, MODEL, synthetic_customers(2_000, seed=6), 1, "challenger"
            )
        kube = Release(
            kubectl_path=Path(kind_cluster.kubectl_path),
            helm_path=helm,
            kubeconfig=Path(kind_cluster.kubeconfig_path),
            namespace=NAMESPACE,
            database_url=database_url,
        )
        kube.kubectl("create", "namespace", NAMESPACE)
        create_database_secret(kube.kubectl, NAMESPACE, database_url, host)
        values = work / "shadow-values.yaml"
        values.write_text(yaml.safe_dump(install_values(host, mlflow_uri)))
        kube.helm(
            "upgrade", "--install", RELEASE, str(services.REPO / "charts" / "scorer"),
            "-f", str(ENV_VALUES["dev"]), "-f", str(values), "--wait",
        )  # fmt: skip
        try:
            yield kube
        finally:
            kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_a_release_with_a_challenger_runs_a_shadow_beside_the_published_run(
    release: Release,
) -> None:
    env = {e["name"]: e.get("value") for e in release.kubectl_json("get", "cronjob", CRONJOB)[
        "spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]}  # fmt: skip
    assert env["SCORER_SHADOW_ALIAS"] == "challenger"
    job = f"{CRONJOB}-manual-{int(time.time())}"
    release.kubectl("create", "job", f"--from=cronjob/{CRONJOB}", job)
    release.wait_job(job, "complete")  # exit 0

    champion, shadow = release.run_row(job), release.run_row(f"{job}-shadow")
    assert champion is not None, release.logs(job)
    assert shadow is not None, release.logs(job)
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

    (pod,) = release.pods_of(job)
    lines = release.pod_log_lines(pod)
    summary = lines[-1]
    assert summary["event"] == "shadow.succeeded", summary
    assert (summary["run_id"], summary["exit_code"]) == (job, 0)
    assert summary["shadow"]["outcome"] == "scored"
    assert summary["shadow"]["comparison"]["spearman"] == champion["comparison"]["spearman"]
    assert [line["event"] for line in lines].count("run.succeeded") == 2  # champion, shadow
