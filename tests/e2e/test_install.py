"""A production install on kind, from an empty database, with nothing but helm and kubectl:
`helm install` migrates the schema (the pre-install hook), the CronJob's first scheduled run
publishes, and a `helm upgrade` to an image that carries a new migration applies it (the
pre-upgrade hook) before that image runs. A migration that fails does so at once, stays for its
logs and does not block the next upgrade; without hooks, a plain Job migrates.

"A new migration" is simulated honestly: the upgrade's image is the e2e image with one more
migration appended to ``scorer.postgres.schema`` (a table of its own), so that image refuses to run
(``not_migrated``) until the schema has it. Everything the tests read from the database they
read; nothing is migrated from the test host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scorer.postgres.schema import SCHEMA_VERSION
from tests.support import services
from tests.support.kube import (
    CRONJOB,
    EVERY_MINUTE,
    IMAGE,
    IMAGE_REPOSITORY,
    IMAGE_TAG,
    RELEASE,
    Cluster,
    Deployment,
    OnDeployment,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "scorer-e2e-install"
MODEL = "churn-install"
CUSTOMERS = 1_000
NEXT_TAG = f"{IMAGE_TAG}-next-migration"
NEXT_IMAGE = f"{IMAGE_REPOSITORY}:{NEXT_TAG}"
MARKER = "e2e_next_migration"
"""The table the upgrade's extra migration creates."""
NEXT = {"repository": IMAGE_REPOSITORY, "tag": NEXT_TAG, "pullPolicy": "Never"}
"""The ``image`` values of ``NEXT_IMAGE``."""
HOOK_JOB = f"{CRONJOB}-migrate"
BAD_SECRET = "scorer-migration-wrong-password"


def build_next_image(cluster: Any, work: Path) -> None:
    """``IMAGE`` plus one migration file, as ``NEXT_IMAGE``, loaded into the cluster."""
    name = f"{SCHEMA_VERSION + 1:04d}_{MARKER}.sql"
    context = work / "next-image"
    context.mkdir()
    (context / name).write_text(f"CREATE TABLE {{s}}.{MARKER} (note text);\n")
    (context / "Dockerfile").write_text(
        f"FROM {IMAGE}\nUSER 0:0\nCOPY {name} /tmp/{name}\n"
        'RUN python -c "import pathlib, shutil, scorer.postgres.schema as s; shutil.copy('
        f"'/tmp/{name}', pathlib.Path(s.__file__).parent / 'migrations')\" && rm /tmp/{name}\n"
        "USER 10001:10001\n"
    )
    docker = shutil.which("docker") or "docker"
    env = dict(os.environ)
    if subprocess.run([docker, "buildx", "version"], capture_output=True, check=False).returncode:
        env.setdefault("DOCKER_BUILDKIT", "0")  # the classic builder, as hack/image.sh does
    build = subprocess.run(
        [docker, "build", "--tag", NEXT_IMAGE, str(context)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    cluster.load_docker_image(NEXT_IMAGE)


@dataclass
class Release(OnDeployment):
    """The install under test: its deployment (kubectl, helm, its database) and values."""

    deployment: Deployment

    def upgrade(self, *, check: bool = True, **override: Any) -> subprocess.CompletedProcess[str]:
        """`helm upgrade --install --wait` with the dev values and the e2e ones (+ override)."""
        values = {
            **EVERY_MINUTE,
            "successfulJobsHistoryLimit": 20,
            "failedJobsHistoryLimit": 20,
            "backoffLimit": 2,
            "suspend": False,
            "mlflow": {"recordRuns": False},
            **override,
        }
        return self.deployment.install(values, check=check)

    def migrations(self) -> list[int]:
        rows = services.query(
            self.database_url,
            "SELECT version FROM scoring.schema_migrations ORDER BY version"
            if self.has_schema()
            else "SELECT 1 WHERE false",
        )
        return [int(version) for (version,) in rows]

    def has_schema(self) -> bool:
        ((found,),) = services.query(
            self.database_url, "SELECT to_regclass('scoring.schema_migrations') IS NOT NULL"
        )
        return bool(found)

    def run_row(self, run_id: str) -> dict[str, Any]:
        row = self.deployment.run_row(run_id)
        assert row is not None, f"no scoring_runs row for {run_id}"
        return row

    def exists(self, kind: str, name: str) -> bool:
        return self.kube.kubectl("get", kind, name, check=False).returncode == 0

    def next_scheduled_job(self, after: list[str], timeout: float = 180) -> str:
        """The first Job the CronJob creates that is not in ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if new := [job for job in self.kube.scheduled_jobs() if job not in after]:
                return new[0]
            time.sleep(3)
        raise AssertionError(f"the CronJob created no new Job within {timeout:.0f} s")


@pytest.fixture(scope="module")
def release(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    work = tmp_path_factory.mktemp("e2e-install")
    build_next_image(cluster.kind, work)
    with cluster.deploy(
        NAMESPACE, work, model=MODEL, customers=CUSTOMERS, seed=5, restricted=True
    ) as deployment:
        yield Release(deployment)


def test_helm_install_migrates_the_empty_database(release: Release) -> None:
    assert not release.has_schema()
    release.upgrade()
    assert release.migrations() == list(range(1, SCHEMA_VERSION + 1))
    # The hook and what it needed were deleted once it succeeded; the release's own stay.
    for kind in ("job", "serviceaccount"):
        assert not release.exists(kind, HOOK_JOB), kind
    assert release.exists("serviceaccount", CRONJOB)
    # `helm test`: `scorer check` in the release's pod, the schema version included.
    checked = release.kube.helm("test", RELEASE, "--logs")
    assert "check.passed" in checked.stdout, checked.stdout


def test_the_first_scheduled_run_publishes(release: Release) -> None:
    job = release.kube.first_scheduled_job(timeout=150)
    release.kube.wait_job(job, "complete")
    row = release.run_row(job)
    assert (row["status"], row["trigger"], row["image"]) == ("succeeded", "scheduled", IMAGE)
    assert row["rows_scored"] == CUSTOMERS
    release.upgrade(suspend=True)  # quiet until the upgrade below
    for other in release.kube.scheduled_jobs():
        release.kube.wait_job(other, "complete")


def test_an_upgrade_applies_its_new_migration_before_its_image_runs(release: Release) -> None:
    before = release.kube.scheduled_jobs()
    release.upgrade(image=NEXT)
    assert release.migrations() == list(range(1, SCHEMA_VERSION + 2))
    ((marker,),) = services.query(
        release.database_url, "SELECT to_regclass(%s) IS NOT NULL", (f"scoring.{MARKER}",)
    )
    assert marker
    job = release.next_scheduled_job(after=before)
    release.kube.wait_job(job, "complete")  # the new image needs the new migration
    row = release.run_row(job)
    assert (row["status"], row["image"]) == ("succeeded", NEXT_IMAGE)
    release.upgrade(suspend=True, image=NEXT)  # quiet for the scenarios below
    for other in release.kube.scheduled_jobs():
        release.kube.wait_job(other, "complete")


def test_a_failed_migration_fails_at_once_and_the_next_upgrade_replaces_it(
    release: Release, host_address_for_pods: str
) -> None:
    good = services.with_database(
        services.admin_url(), release.database_url.rsplit("/", 1)[1], host=host_address_for_pods
    )
    parts = services.urlsplit(good)
    password = parts.password
    assert password
    bad = good.replace(f":{password}@", ":not-the-password@")
    release.kube.kubectl("create", "secret", "generic", BAD_SECRET, f"--from-literal=url={bad}")
    failed = release.upgrade(
        check=False,
        suspend=True,
        image=NEXT,
        migrate={"database": {"existingSecret": BAD_SECRET}},
    )
    assert failed.returncode != 0, failed.stdout
    job = release.kube.kubectl_json("get", "job", HOOK_JOB)
    reasons = {c["reason"] for c in job["status"]["conditions"] if c["type"] == "Failed"}
    assert reasons == {"PodFailurePolicy"}  # exit 2: no retry
    assert len(release.kube.pods_of(HOOK_JOB)) == 1
    (pod,) = release.kube.pods_of(HOOK_JOB)
    (last,) = [line for line in release.kube.pod_log_lines(pod) if line.get("level") == "error"]
    assert (last["kind"], last["exit_code"]) == ("database_auth", 2)
    assert "not-the-password" not in json.dumps(last)
    # The failed hook Job does not block the next upgrade: before-hook-creation replaces it.
    release.upgrade(suspend=True, image=NEXT)
    assert not release.exists("job", HOOK_JOB)


def test_without_hooks_a_plain_job_migrates(release: Release) -> None:
    release.upgrade(suspend=True, image=NEXT, migrate={"useHelmHooks": False})
    jobs = release.kube.kubectl_json("get", "jobs", "-l", "app.kubernetes.io/component=migrate")
    (name,) = [job["metadata"]["name"] for job in jobs["items"]]
    assert name.startswith(f"{HOOK_JOB}-")
    release.kube.wait_job(name, "complete")
    (pod,) = release.kube.pods_of(name)
    (done,) = [line for line in release.kube.pod_log_lines(pod) if line["event"] == "migrate.done"]
    assert (done["applied"], done["version"]) == ([], SCHEMA_VERSION + 1)
