"""The chart on a real kind cluster: the CronJob fires, pods pull the model from a real MLflow
server and write to a real PostgreSQL, both reached over the network through the chart's
Secret wiring. The scenarios run in order against one install."""

from __future__ import annotations

import json
import os
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from scorer import db, schema
from tests import services
from tests.chart.helm import ENV_VALUES, find_helm
from tests.fixtures import load_features, register_versions, synthetic_customers

pytestmark = pytest.mark.e2e

NAMESPACE = "scorer-e2e"
RELEASE = "scorer"
CRONJOB = "scorer"  # the chart's fullname for release "scorer"
IMAGE_REPOSITORY = "scorer"
IMAGE_TAG = "e2e"
MODEL = "churn-e2e"
CUSTOMERS = 3_000
JOB_TIMEOUT_S = 240


@dataclass
class Deployment:
    """Everything the scenarios share: the cluster, the services and the install."""

    cluster: Any
    kubeconfig: Path
    helm: Path
    database_url: str
    mlflow_uri: str
    values_dir: Path
    versions: tuple[int, ...]

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.cluster.kubectl_path), *args],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            capture_output=True,
            text=True,
            timeout=JOB_TIMEOUT_S,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def helm_install(self, **model: str) -> None:
        """`helm upgrade --install` with the dev environment's values plus the e2e overrides."""
        values = {
            "schedule": "* * * * *",
            "timeZone": "Etc/UTC",
            "startingDeadlineSeconds": 300,
            "activeDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 20,
            "failedJobsHistoryLimit": 20,
            "backoffLimit": 3,
            "suspend": model.pop("suspend", "false") == "true",
            "model": {"name": MODEL, "alias": "", "stage": "", "version": "", **model},
            "features": {"table": "features.customers", "entityColumn": "customer_id"},
            "log": {"format": "json", "level": "INFO"},
            "mlflow": {"trackingUri": self.mlflow_uri},
            "database": {"existingSecret": "scorer-database"},
            "image": {
                "repository": IMAGE_REPOSITORY,
                "tag": IMAGE_TAG,
                "pullPolicy": "Never",
            },
        }
        path = self.values_dir / "e2e-values.yaml"
        path.write_text(yaml.safe_dump(values))
        proc = subprocess.run(
            [
                str(self.helm),
                "upgrade",
                "--install",
                RELEASE,
                str(services.REPO / "charts" / "scorer"),
                "-n",
                NAMESPACE,
                "-f",
                str(ENV_VALUES["dev"]),
                "-f",
                str(path),
                "--wait",
            ],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr

    def run_manual_job(self, name: str, outcome: str = "complete") -> dict[str, Any]:
        """`kubectl create job --from=cronjob/...` and wait for ``outcome``; return the Job."""
        self.kubectl("create", "job", f"--from=cronjob/{CRONJOB}", name, "-n", NAMESPACE)
        self.wait_job(name, outcome)
        return dict(self.kubectl_json("get", "job", name, "-n", NAMESPACE))

    def wait_job(self, name: str, outcome: str) -> None:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            job = self.kubectl_json("get", "job", name, "-n", NAMESPACE)
            conditions = {
                c["type"]: c for c in job["status"].get("conditions", []) if c["status"] == "True"
            }
            if "Complete" in conditions or "Failed" in conditions:
                reached = "complete" if "Complete" in conditions else "failed"
                assert reached == outcome, f"job {name} {reached}:\n{self.logs(name)}"
                return
            time.sleep(2)
        raise AssertionError(f"job {name} did not finish in {JOB_TIMEOUT_S}s:\n{self.logs(name)}")

    def pods_of(self, job: str) -> list[dict[str, Any]]:
        pods = self.kubectl_json(
            "get", "pods", "-n", NAMESPACE, "-l", f"batch.kubernetes.io/job-name={job}"
        )
        return list(pods["items"])

    def logs(self, job: str) -> str:
        return self.kubectl("logs", f"job/{job}", "-n", NAMESPACE, check=False).stdout

    def log_lines(self, job: str) -> list[dict[str, Any]]:
        """The pod's JSON log lines (stdout; MLflow may add plain lines on stderr)."""
        return [json.loads(line) for line in self.logs(job).splitlines() if line.startswith("{")]

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        rows = services.query(
            self.database_url,
            "SELECT row_to_json(r) FROM scoring.scoring_runs r WHERE run_id = %s",
            (run_id,),
        )
        return None if not rows else dict(rows[0][0])

    def prediction_versions(self, run_id: str) -> list[tuple[int, int]]:
        return [
            (int(version), int(count))
            for version, count in services.query(
                self.database_url,
                "SELECT model_version, count(*) FROM scoring.predictions WHERE run_id = %s"
                " GROUP BY 1",
                (run_id,),
            )
        ]

    def latest_versions(self) -> list[tuple[str, int]]:
        return [
            (str(run), int(version))
            for run, version in services.query(
                self.database_url,
                "SELECT DISTINCT run_id, model_version FROM scoring.latest_predictions"
                " WHERE model_name = %s",
                (MODEL,),
            )
        ]


@pytest.fixture(scope="module")
def deployment(
    kind_cluster: Any,
    host_address_for_pods: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    helm = find_helm()
    if helm is None:
        pytest.fail("helm is not built: run hack/helm.sh")
    work = tmp_path_factory.mktemp("e2e")

    image = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
    build = subprocess.run(
        ["bash", str(services.REPO / "hack" / "image.sh"), image],
        capture_output=True,
        text=True,
        timeout=40 * 60,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    kind_cluster.load_docker_image(image)

    with (
        services.mlflow_server(work / "mlflow", host=host_address_for_pods) as mlflow_uri,
        services.fresh_database("scorer_e2e") as database_url,
    ):
        with closing(db.connect(database_url)) as conn:
            schema.migrate(conn, "scoring")
        load_features(database_url, "features.customers", synthetic_customers(CUSTOMERS, seed=21))
        with warnings.catch_warnings():  # MLflow's own notes while logging a model
            warnings.simplefilter("ignore")
            customers = synthetic_customers(2_000, seed=4)
            versions = tuple(register_versions(mlflow_uri, MODEL, customers))
        MlflowClient(mlflow_uri).set_registered_model_alias(MODEL, "champion", str(versions[0]))

        deployment = Deployment(
            cluster=kind_cluster,
            kubeconfig=Path(kind_cluster.kubeconfig_path),
            helm=helm,
            database_url=database_url,
            mlflow_uri=mlflow_uri,
            values_dir=work,
            versions=versions,
        )
        deployment.kubectl("create", "namespace", NAMESPACE)
        deployment.kubectl(
            "label",
            "namespace",
            NAMESPACE,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        )
        pod_url = services.with_database(
            services.admin_url(), database_url.rsplit("/", 1)[1], host=host_address_for_pods
        )
        deployment.kubectl(
            "create",
            "secret",
            "generic",
            "scorer-database",
            "-n",
            NAMESPACE,
            f"--from-literal=url={pod_url}",
        )
        deployment.helm_install(alias="champion")
        try:
            yield deployment
        finally:
            deployment.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def assert_succeeded_run(
    deployment: Deployment, job: str, version: int, trigger: str
) -> dict[str, Any]:
    row = deployment.run_row(job)
    assert row is not None, deployment.logs(job)
    assert row["status"] == "succeeded"
    assert row["model_version"] == version
    assert row["trigger"] == trigger
    assert row["rows_scored"] == CUSTOMERS
    assert row["k8s_namespace"] == NAMESPACE
    assert row["k8s_job"] == job
    assert row["k8s_cronjob"] == CRONJOB
    assert str(row["k8s_pod"]).startswith(f"{job}-")
    assert row["k8s_node"]
    assert row["image"] == f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
    assert deployment.prediction_versions(job) == [(version, CUSTOMERS)]
    lines = deployment.log_lines(job)
    events = [line["event"] for line in lines]
    for step in ("model.resolved", "features.checked", "batch.scored", "run.published"):
        assert step in events
    assert events[-1] == "run.succeeded"
    assert all(line["run_id"] == job for line in lines)
    assert lines[-1]["rows_scored"] == CUSTOMERS
    return row


def test_cronjob_fires_on_its_schedule(deployment: Deployment) -> None:
    deadline = time.monotonic() + 150
    scheduled: list[str] = []
    while time.monotonic() < deadline and not scheduled:
        jobs = deployment.kubectl_json("get", "jobs", "-n", NAMESPACE)["items"]
        scheduled = [
            job["metadata"]["name"]
            for job in jobs
            if any(ref["kind"] == "CronJob" for ref in job["metadata"].get("ownerReferences", []))
        ]
        time.sleep(3)
    assert scheduled, "the CronJob created no Job within 150 s"
    job = sorted(scheduled)[0]
    deployment.wait_job(job, "complete")
    # Stop further ticks so the next scenarios own the (model, snapshot) lock.
    deployment.helm_install(alias="champion", suspend="true")
    for other in scheduled[1:]:
        deployment.wait_job(other, "complete")
    assert_succeeded_run(deployment, job, deployment.versions[0], "scheduled")


def test_manual_run_from_the_cronjob(deployment: Deployment) -> None:
    job = f"{CRONJOB}-manual-{int(time.time())}"
    created = deployment.run_manual_job(job)
    assert created["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert_succeeded_run(deployment, job, deployment.versions[0], "manual")


def test_gitops_promotion_by_version_bump(deployment: Deployment) -> None:
    before = deployment.latest_versions()
    earlier_runs = {run for run, _ in before}
    deployment.helm_install(version=str(deployment.versions[1]), suspend="true")
    job = f"{CRONJOB}-promoted-{int(time.time())}"
    deployment.run_manual_job(job)
    row = assert_succeeded_run(deployment, job, deployment.versions[1], "manual")
    assert row["model_selector"] == f"version:{deployment.versions[1]}"
    assert deployment.latest_versions() == [(job, deployment.versions[1])]
    for run in earlier_runs:  # the earlier run's rows are untouched
        assert deployment.prediction_versions(run) == [(deployment.versions[0], CUSTOMERS)]


def test_alias_moved_in_mlflow_is_followed(deployment: Deployment) -> None:
    deployment.helm_install(alias="champion", suspend="true")
    client = MlflowClient(deployment.mlflow_uri)
    client.set_registered_model_alias(MODEL, "champion", str(deployment.versions[0]))
    first = f"{CRONJOB}-alias-a-{int(time.time())}"
    deployment.run_manual_job(first)
    assert_succeeded_run(deployment, first, deployment.versions[0], "manual")

    client.set_registered_model_alias(MODEL, "champion", str(deployment.versions[1]))
    second = f"{CRONJOB}-alias-b-{int(time.time())}"
    deployment.run_manual_job(second)
    row = assert_succeeded_run(deployment, second, deployment.versions[1], "manual")
    assert row["model_selector"] == "alias:champion"


def test_missing_model_fails_the_job_without_retries(deployment: Deployment) -> None:
    deployment.helm_install(alias="champion", name="no-such-model", suspend="true")
    job = f"{CRONJOB}-missing-{int(time.time())}"
    status = deployment.run_manual_job(job, outcome="failed")["status"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PodFailurePolicy"
    assert len(deployment.pods_of(job)) == 1  # no retry despite backoffLimit 3
    last = deployment.log_lines(job)[-1]
    assert last["event"] == "run.failed"
    assert last["kind"] == "model_not_found"
    assert last["exit_code"] == 2
    assert "no-such-model" in last["error"]
    assert deployment.run_row(job) is None
    deployment.helm_install(alias="champion", suspend="true")


def test_pods_run_restricted_read_only_as_10001(deployment: Deployment) -> None:
    labels = deployment.kubectl_json("get", "namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    jobs = deployment.kubectl_json("get", "jobs", "-n", NAMESPACE)["items"]
    succeeded = [j["metadata"]["name"] for j in jobs if j["status"].get("succeeded")]
    assert succeeded
    pod = deployment.pods_of(succeeded[0])[0]
    pod_context = pod["spec"]["securityContext"]
    assert pod_context["runAsNonRoot"] is True
    assert pod_context["runAsUser"] == 10001
    assert pod_context["seccompProfile"]["type"] == "RuntimeDefault"
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["status"]["phase"] == "Succeeded"
    # The namespace really enforces the profile: a privileged pod is refused at admission.
    image = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
    privileged = {
        "spec": {
            "containers": [
                {"name": "probe", "image": image, "securityContext": {"privileged": True}}
            ]
        }
    }
    refused = deployment.kubectl(
        "run",
        "probe",
        "-n",
        NAMESPACE,
        f"--image={image}",
        "--image-pull-policy=Never",
        "--restart=Never",
        f"--overrides={json.dumps(privileged)}",
        check=False,
    )
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr
