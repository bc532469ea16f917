"""Run the helm binary that hack/helm.sh builds, and parse what it renders."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.services import CACHE

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "scorer"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
ENV_VALUES = {env: ROOT / "deploy" / "values" / f"{env}.yaml" for env in ("dev", "staging", "prod")}

# The smallest valid set of values: everything else is the chart's defaults.
BASE_VALUES: dict[str, Any] = {
    "model": {"name": "churn", "alias": "champion"},
    "features": {"table": "features.customers", "entityColumn": "customer_id"},
    "mlflow": {"trackingUri": "http://mlflow.mlflow.svc:5000"},
    "database": {"existingSecret": "scorer-database"},
}


def find_tool(name: str) -> Path | None:
    """``$<NAME>_BIN`` if set, else the binary hack/helm.sh builds; None when neither exists."""
    variable = name.upper().replace("-", "_") + "_BIN"
    candidate = Path(os.environ.get(variable) or CACHE / "bin" / name)
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def require_tool(name: str) -> Path:
    """The tool's binary, or a test failure (never a skip: CI must not pass without it)."""
    binary = find_tool(name)
    if binary is None:
        variable = name.upper().replace("-", "_") + "_BIN"
        pytest.fail(f"{name} not found: run `bash hack/helm.sh` (or set {variable})", pytrace=False)
    return binary


def find_helm() -> Path | None:
    """``$HELM_BIN`` if set, else the binary hack/helm.sh builds; None when neither exists."""
    return find_tool("helm")


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """A deep merge of two values trees (override wins), as helm merges values files."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class HelmError(Exception):
    """helm exited non-zero; the message is its stderr."""


@dataclass
class Rendered:
    """The documents of one `helm template`, with lookups by kind."""

    docs: list[dict[str, Any]]

    def kinds(self) -> list[str]:
        return sorted(doc["kind"] for doc in self.docs)

    def all(self, kind: str) -> list[dict[str, Any]]:
        """The release's own objects of ``kind`` (the `helm test` pod too), not the migration's
        ``pre-install,pre-upgrade`` hooks (``hooks``)."""
        return [doc for doc in self.docs if doc["kind"] == kind and not _migration_hook(doc)]

    def hooks(self, kind: str) -> list[dict[str, Any]]:
        """The ``pre-install,pre-upgrade`` hooks of ``kind``: the migration and what it needs."""
        return [doc for doc in self.docs if doc["kind"] == kind and _migration_hook(doc)]

    @property
    def migrate_job(self) -> dict[str, Any]:
        """The migration Job, hook or plain."""
        (job,) = [job for job in self.docs if job["kind"] == "Job" and _component(job) == "migrate"]
        return job

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}: {self.kinds()}"
        return found[0]

    @property
    def cronjob(self) -> dict[str, Any]:
        """The scoring CronJob."""
        (scoring,) = [
            job for job in self.all("CronJob") if _component(job) not in ("prune", "evaluate")
        ]
        return scoring

    @property
    def prune_cronjob(self) -> dict[str, Any] | None:
        """The retention CronJob, if retention is on."""
        found = [job for job in self.all("CronJob") if _component(job) == "prune"]
        assert len(found) <= 1
        return found[0] if found else None

    @property
    def evaluation_cronjob(self) -> dict[str, Any] | None:
        """The evaluation CronJob, if evaluation is on."""
        found = [job for job in self.all("CronJob") if _component(job) == "evaluate"]
        assert len(found) <= 1
        return found[0] if found else None

    @property
    def backfill(self) -> dict[str, Any]:
        """The one-off backfill Job."""
        (job,) = [job for job in self.all("Job") if _component(job) != "migrate"]
        return job

    @property
    def job_spec(self) -> dict[str, Any]:
        return self.cronjob["spec"]["jobTemplate"]["spec"]

    @property
    def pod(self) -> dict[str, Any]:
        """The pod template (metadata and spec)."""
        return self.job_spec["template"]

    @property
    def container(self) -> dict[str, Any]:
        containers = self.pod["spec"]["containers"]
        assert len(containers) == 1
        return containers[0]

    @property
    def env(self) -> dict[str, dict[str, Any]]:
        """The container's env entries by name (the last one wins, as in Kubernetes)."""
        return {entry["name"]: entry for entry in self.container["env"]}

    def env_value(self, name: str) -> str | None:
        entry = self.env.get(name)
        return None if entry is None else entry.get("value")


class Helm:
    """A helm binary run with its own, empty, config/cache/data homes."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.home = home
        self._values_count = 0
        self.env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
            "KUBECONFIG": str(home / "no-kubeconfig"),
        }

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        proc = subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise HelmError(f"{proc.stdout.strip()}\n{proc.stderr.strip()}".strip())
        return proc.stdout

    def values_file(self, values: Mapping[str, Any]) -> Path:
        """Write values to a file: a file keeps YAML types that --set would turn into strings."""
        self._values_count += 1
        path = self.home / f"values-{self._values_count}.yaml"
        path.write_text(yaml.safe_dump(dict(values), sort_keys=False))
        return path

    def _value_args(
        self,
        files: Sequence[Path],
        values: Mapping[str, Any] | None,
        sets: Sequence[str],
    ) -> list[str]:
        args: list[str] = []
        for path in files:
            args += ["-f", str(path)]
        if values is not None:
            args += ["-f", str(self.values_file(values))]
        for item in sets:
            args += ["--set", item]
        return args

    def template(
        self,
        *files: Path,
        values: Mapping[str, Any] | None = None,
        sets: Sequence[str] = (),
        release: str = "scorer",
        namespace: str = "ml",
        extra: Sequence[str] = (),
    ) -> Rendered:
        out = self.run(
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            *self._value_args(files, values, sets),
            *extra,
        )
        docs = [doc for doc in yaml.safe_load_all(out) if doc]
        return Rendered(docs)

    def lint(self, *files: Path, values: Mapping[str, Any] | None = None) -> str:
        return self.run("lint", "--strict", str(CHART), *self._value_args(files, values, ()))

    def notes(
        self,
        kubeconfig: Path,
        *files: Path,
        values: Mapping[str, Any] | None = None,
        release: str = "scorer",
        namespace: str = "ml",
    ) -> str:
        """NOTES.txt as `helm install --dry-run=client` prints it.

        helm 3 checks that a cluster answers even for a client-side dry run, so the caller
        passes the kubeconfig of `fake_discovery_server`; the memory driver keeps release
        bookkeeping off the (absent) cluster.
        """
        empty = self.home / "memory-driver.yaml"
        empty.touch()
        out = self.run(
            "install",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--dry-run=client",
            "--disable-openapi-validation",
            *self._value_args(files, values, ()),
            env={
                "KUBECONFIG": str(kubeconfig),
                "HELM_DRIVER": "memory",
                "HELM_MEMORY_DRIVER_DATA": str(empty),
            },
        )
        assert "\nNOTES:\n" in out, out
        return out.split("\nNOTES:\n", 1)[1]


def _resource_list(group_version: str, *resources: tuple[str, str]) -> dict[str, Any]:
    """A discovery APIResourceList of namespaced (plural name, kind) resources."""
    return {
        "kind": "APIResourceList",
        "groupVersion": group_version,
        "resources": [
            {
                "name": name,
                "singularName": kind.lower(),
                "namespaced": True,
                "kind": kind,
                "verbs": ["get", "list", "create"],
            }
            for name, kind in resources
        ],
    }


# What `helm install --dry-run=client` asks a cluster: its version and API discovery.
_DISCOVERY: dict[str, Any] = {
    "/version": {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"},
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": "batch",
                "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"},
            }
        ],
    },
    "/api/v1": _resource_list("v1", ("secrets", "Secret"), ("serviceaccounts", "ServiceAccount")),
    "/apis/batch/v1": _resource_list("batch/v1", ("cronjobs", "CronJob"), ("jobs", "Job")),
}


class _DiscoveryHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = _DISCOVERY.get(self.path.split("?", 1)[0])
        status = 200
        if body is None:
            status = 404
            body = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "NotFound",
                "code": 404,
            }
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def fake_discovery_server(directory: Path) -> Iterator[Path]:
    """A loopback HTTP server answering Kubernetes discovery; yields a kubeconfig for it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DiscoveryHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        kubeconfig = directory / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": f"http://{host}:{port}"}}],
                    "users": [{"name": "fake", "user": {}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                    "current-context": "fake",
                }
            )
        )
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _component(doc: dict[str, Any]) -> str | None:
    return doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def _migration_hook(doc: dict[str, Any]) -> bool:
    hook = doc["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    return "pre-install" in hook.split(",")
