"""What the e2e installs share: the cluster with the image loaded, a namespace, its services.

``Cluster.deploy`` is the one set-up every e2e module opens with: an MLflow server and a fresh
database on the host (where pods reach them), the customers and the model seeded, a namespace
with the database Secret; ``Deployment.install`` helm-installs the release into it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import yaml

from tests.support import services
from tests.support.fixtures import load_features, register_versions, synthetic_customers
from tests.support.helm import ENV_VALUES, merged

RELEASE = "scorer"
CRONJOB = "scorer"  # the chart's fullname for release "scorer"
IMAGE_REPOSITORY = "scorer"
IMAGE_TAG = "e2e"
IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
"""The image every e2e install runs: built once by ``build_and_load_image``, pulled never."""
JOB_TIMEOUT_S = 300
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

CHART = services.REPO / "charts" / "scorer"
EVERY_MINUTE = {"schedule": "* * * * *", "timeZone": "Etc/UTC", "startingDeadlineSeconds": 300}
"""The values of a CronJob that fires every minute (and still fires 5 minutes late)."""
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


@dataclass(frozen=True)
class Cluster:
    """The e2e kind cluster, the scorer image loaded into it, helm: where a module deploys."""

    kind: Any  # pytest_kind.KindCluster
    helm_path: Path
    host: str
    """The docker host's address as pods see it: the services the tests run bind to it."""

    def kube(self, namespace: str) -> Kube:
        return Kube(
            Path(self.kind.kubectl_path), self.helm_path, Path(self.kind.kubeconfig_path), namespace
        )

    @contextmanager
    def namespace(self, name: str, *, restricted: bool = False) -> Iterator[Kube]:
        """A namespace of the module's own (``restricted``: Pod Security enforced), deleted
        after it."""
        kube = self.kube(name)
        kube.kubectl("create", "namespace", name)
        try:
            if restricted:
                kube.kubectl(
                    "label", "namespace", name,
                    "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/enforce-version=latest",
                )  # fmt: skip
            yield kube
        finally:
            kube.kubectl("delete", "namespace", name, "--wait=false", check=False)

    @contextmanager
    def deploy(
        self,
        namespace: str,
        work: Path,
        *,
        model: str,
        customers: int,
        seed: int,
        versions: int = 1,
        restricted: bool = False,
        database_secret: bool = True,
    ) -> Iterator[Deployment]:
        """Services on the host (MLflow, a fresh database named after ``namespace``) with
        ``customers`` rows of ``features.customers`` and ``versions`` of ``model`` (alias
        champion on the last), and a namespace with the database Secret (unless not
        ``database_secret``). Nothing is installed yet: ``Deployment.install`` does that."""
        with (
            services.mlflow_server(work / "mlflow", host=self.host) as mlflow_uri,
            services.fresh_database(namespace.replace("-", "_")) as database_url,
        ):
            frame = synthetic_customers(customers, seed=seed)
            load_features(database_url, "features.customers", frame)
            with warnings.catch_warnings():  # MLflow's own notes while logging a model
                warnings.simplefilter("ignore")
                registered = register_versions(
                    mlflow_uri, model, synthetic_customers(2_000, seed=4), versions=versions
                )
            with self.namespace(namespace, restricted=restricted) as kube:
                if database_secret:
                    create_database_secret(kube.kubectl, namespace, database_url, self.host)
                yield Deployment(
                    kube, database_url, mlflow_uri, self.host, model, tuple(registered), work
                )


@dataclass
class Deployment:
    """One module's install: kubectl and helm in its namespace, its database and MLflow."""

    kube: Kube
    database_url: str
    mlflow_uri: str
    host: str
    model: str
    versions: tuple[int, ...]
    work: Path

    def values(self) -> dict[str, Any]:
        """The values every install starts from: the e2e image, the seeded model and table,
        the host's MLflow, the database Secret, JSON logs."""
        return {
            "model": {"name": self.model, "alias": "champion"},
            "features": {"table": "features.customers", "entityColumn": "customer_id"},
            "log": {"format": "json", "level": "INFO"},
            "mlflow": {"trackingUri": self.mlflow_uri},
            "database": {"existingSecret": DATABASE_SECRET},
            "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"},
        }

    def network_policy(self, **others: str) -> dict[str, Any]:
        """The ``networkPolicy`` values: egress to this host's PostgreSQL and MLflow only (and
        the cluster DNS), and to each of ``others`` (its values key: its URL on this host)."""
        host = [{"ipBlock": {"cidr": f"{self.host}/32"}}]

        def on_host(url: str) -> dict[str, Any]:
            return {"to": host, "ports": [{"port": int(url.rsplit(":", 1)[1]), "protocol": "TCP"}]}

        return {
            "enabled": True,
            "database": {"to": host, "ports": [{"port": 5432, "protocol": "TCP"}]},
            "mlflow": on_host(self.mlflow_uri),
            **{key: on_host(url) for key, url in others.items()},
        }

    def install(
        self, values: Mapping[str, Any], *, dev: bool = True, check: bool = True
    ) -> CompletedProcess[str]:
        """`helm upgrade --install --wait` of the chart with the dev environment's values
        (unless not ``dev``), then ``values()`` deep-merged with ``values``."""
        path = self.work / "values.yaml"
        path.write_text(yaml.safe_dump(merged(self.values(), values)))
        files = ("-f", str(ENV_VALUES["dev"])) if dev else ()
        return self.kube.helm(
            "upgrade", "--install", RELEASE, str(CHART), *files, "-f", str(path),
            "--wait", "--timeout", "5m",
            check=check,
        )  # fmt: skip

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        """The run's ``scoring_runs`` row, as JSON, if there is one."""
        rows = services.query(
            self.database_url,
            "SELECT row_to_json(r) FROM scoring.scoring_runs r WHERE run_id = %s",
            (run_id,),
        )
        return None if not rows else dict(rows[0][0])


class OnDeployment:
    """A module's own view of its ``Deployment`` (its release, say): the deployment's kubectl,
    database and MLflow by their names, beside what the module adds."""

    deployment: Deployment

    @property
    def kube(self) -> Kube:
        return self.deployment.kube

    @property
    def database_url(self) -> str:
        return self.deployment.database_url

    @property
    def mlflow_uri(self) -> str:
        return self.deployment.mlflow_uri
