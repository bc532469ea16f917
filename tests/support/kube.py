"""What the e2e installs share: the database Secret, kubectl/helm in one namespace, the image."""

from __future__ import annotations

import json
import os
import subprocess
import time
import warnings
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

from scorer.postgres import db, schema
from tests.support import services
from tests.support.fixtures import load_features, register_versions, synthetic_customers

RELEASE = "scorer"
CRONJOB = "scorer"  # the chart's fullname for release "scorer"
IMAGE_REPOSITORY = "scorer"
IMAGE_TAG = "e2e"
IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
"""The image every e2e install runs: built once by ``build_and_load_image``, pulled never."""
JOB_TIMEOUT_S = 300
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

DATABASE_SECRET = "scorer-database"
"""The chart's ``database.existingSecret``: key ``url``, the test database as pods reach it."""


def create_database_secret(
    kubectl: Callable[..., object], namespace: str, database_url: str, host: str
) -> None:
    """The Secret with the URL of ``database_url``'s database on ``host`` (the kind gateway)."""
    database = database_url.rsplit("/", 1)[1]
    pod_url = services.with_database(services.admin_url(), database, host=host)
    kubectl(
        "create",
        "secret",
        "generic",
        DATABASE_SECRET,
        "-n",
        namespace,
        f"--from-literal=url={pod_url}",
    )


def seed(database_url: str, mlflow_uri: str, model: str, customers: int, seed: int) -> None:
    """What one install scores: the ``scoring`` schema, ``features.customers`` with
    ``customers`` rows, and version 1 of ``model`` (alias champion) in the registry."""
    with closing(db.connect(database_url)) as conn:
        schema.migrate(conn, "scoring")
    load_features(database_url, "features.customers", synthetic_customers(customers, seed=seed))
    with warnings.catch_warnings():  # MLflow's own notes while logging a model
        warnings.simplefilter("ignore")
        register_versions(mlflow_uri, model, synthetic_customers(2_000, seed=4), versions=1)


@dataclass
class Kube:
    """kubectl and helm against the e2e cluster, in one namespace."""

    kubectl_path: Path
    helm_path: Path
    kubeconfig: Path
    namespace: str

    def _run(self, tool: Path, args: tuple[str, ...], check: bool) -> CompletedProcess[str]:
        proc = subprocess.run(
            [str(tool), *args, "-n", self.namespace],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check:
            assert proc.returncode == 0, f"{tool.name} {' '.join(args)}: {proc.stderr}"
        return proc

    def kubectl(self, *args: str, check: bool = True) -> CompletedProcess[str]:
        return self._run(self.kubectl_path, args, check)

    def helm(self, *args: str, check: bool = True) -> CompletedProcess[str]:
        return self._run(self.helm_path, args, check)

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def wait_job(self, name: str, outcome: str) -> dict[str, Any]:
        """Wait for the Job to complete or fail; assert it reached ``outcome``; return it."""
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.kubectl_json("get", "job", name)
            reached = {
                c["type"] for c in job["status"].get("conditions", []) if c["status"] == "True"
            } & {"Complete", "Failed"}
            if reached:
                got = "complete" if "Complete" in reached else "failed"
                assert got == outcome, f"job {name} {got}:\n{self.logs(name)}"
                return job
            time.sleep(2)
        raise AssertionError(f"job {name} did not finish in {JOB_TIMEOUT_S}s:\n{self.logs(name)}")

    def pods_of(self, job: str) -> list[dict[str, Any]]:
        pods = self.kubectl_json("get", "pods", "-l", f"batch.kubernetes.io/job-name={job}")
        return list(pods["items"])

    def logs(self, job: str) -> str:
        return "\n".join(
            self.kubectl("logs", pod["metadata"]["name"], check=False).stdout
            for pod in self.pods_of(job)
        )

    def pod_log_lines(self, pod: dict[str, Any]) -> list[dict[str, Any]]:
        """The pod's JSON log lines (stdout; MLflow may add plain lines)."""
        out = self.kubectl("logs", pod["metadata"]["name"], check=False).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def scheduled_jobs(self) -> list[str]:
        """The Jobs the CronJobs of the namespace created, oldest name first."""
        jobs = self.kubectl_json("get", "jobs")["items"]
        return sorted(
            job["metadata"]["name"]
            for job in jobs
            if any(ref["kind"] == "CronJob" for ref in job["metadata"].get("ownerReferences", []))
        )

    def first_scheduled_job(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if jobs := self.scheduled_jobs():
                return jobs[0]
            time.sleep(3)
        raise AssertionError(f"no CronJob created a Job within {timeout:.0f} s")

    def wait_pod_running(self, job: str, index: int) -> str:
        """The name of the Job's pod of completion ``index`` as soon as it runs."""
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            for pod in self.pods_of(job):
                annotations = pod["metadata"].get("annotations", {})
                if annotations.get(INDEX_ANNOTATION) != str(index):
                    continue
                if pod["status"].get("phase") == "Running":
                    return str(pod["metadata"]["name"])
            time.sleep(0.2)
        raise AssertionError(f"job {job}: pod of index {index} never ran")


def build_and_load_image(cluster: Any, image: str) -> None:
    """``hack/image.sh`` (cached layers: fast after the first e2e module) into the nodes."""
    build = subprocess.run(
        ["bash", str(services.REPO / "hack" / "image.sh"), image],
        capture_output=True,
        text=True,
        timeout=40 * 60,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    cluster.load_docker_image(image)
