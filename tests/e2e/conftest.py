"""Session fixtures for end-to-end tests on a kind cluster built offline.

The tooling (kind, kubectl, a node image and a small probe image) is built by
``hack/kind/build.sh``, which writes ``~/.cache/scorer/kind.env``. Without that
file the e2e tests are skipped; CI always builds it first, so there they run.

Fixtures:

``kind_env``
    the parsed env file (``KIND_BIN``, ``KUBECTL_BIN``, ``KIND_NODE_IMAGE``, ...).
``kind_cluster``
    a ``pytest_kind.KindCluster`` created from the offline node image, with the
    node Ready, the ``default`` ServiceAccount present and cluster DNS
    (coredns) available; deleted at the end of
    the session unless ``--keep-cluster``. A cluster of the same name that already
    exists (another session's run) fails the session and is left alone, unless
    ``--keep-cluster`` asks to reuse it.
``host_address_for_pods``
    the IPv4 gateway of the kind docker network: the docker host's address as
    seen from pods. Services the tests run on the host (PostgreSQL, MLflow) bind
    to it so that pods reach them.
``probe_image``
    a small Debian image (bash, getent, iproute2) loaded into the cluster; pods
    use it with ``imagePullPolicy: Never``.
``cluster``
    ``tests.support.kube.Cluster``: the kind cluster with the scorer image built and loaded
    (once per session) and helm. A module deploys with it, in a module-scoped fixture::

        with cluster.deploy(NAMESPACE, tmp_path_factory.mktemp("e2e-x"), model=MODEL,
                            customers=CUSTOMERS, seed=5) as deployment:
            deployment.install({"schedule": "* * * * *"})
            yield deployment
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.helm import find_helm
from tests.support.kube import IMAGE, Cluster, build_and_load_image
from tests.support.services import CACHE

KIND_ENV_FILE = Path(os.environ.get("SCORER_KIND_ENV") or CACHE / "kind.env")
KIND_NETWORK = "kind"  # the docker network kind puts its nodes on
READY_TIMEOUT_S = 300
NODE_READY_JSONPATH = (
    'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}'
)

KIND_CLUSTER_CONFIG = """\
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
# One node: the offline node image carries a static single-node CNI config
# (kindnetd cannot be built from the Go module proxy).
networking:
  podSubnet: 10.244.0.0/16
nodes:
  - role: control-plane
"""


def read_kind_env(path: Path = KIND_ENV_FILE) -> dict[str, str]:
    """Parse the KEY=VALUE env file written by hack/kind/build.sh."""
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    # The process environment wins, so CI can point at other builds.
    for key in ("KIND_BIN", "KUBECTL_BIN", "KIND_NODE_IMAGE", "E2E_PROBE_IMAGE"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    return env


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    docker = shutil.which("docker") or "docker"
    return subprocess.run([docker, *args], check=False, text=True, capture_output=True)


def _ensure_docker_image(image: str, tar: str | None, *, rootfs: bool = False) -> None:
    """Make sure docker has `image`, reloading it from the build cache if needed."""
    if _docker("image", "inspect", image).returncode == 0:
        return
    if not tar or not Path(tar).is_file():
        pytest.fail(f"docker image {image} is missing and no cached tar: run hack/kind/build.sh")
    cmd = ["import", "--change", 'CMD ["/bin/bash"]', tar, image] if rootfs else ["load", "-i", tar]
    proc = _docker(*cmd)
    if proc.returncode != 0:
        pytest.fail(f"could not restore {image} from {tar}: {proc.stderr}")


def kind_network_gateway(network: str = KIND_NETWORK) -> str:
    """The IPv4 gateway of a docker network (the host, as seen from containers on it)."""
    proc = _docker("network", "inspect", network, "--format", "{{json .IPAM.Config}}")
    if proc.returncode != 0:
        raise RuntimeError(f"docker network inspect {network} failed: {proc.stderr.strip()}")
    for cfg in json.loads(proc.stdout) or []:
        subnet = cfg.get("Subnet", "")
        if ":" in subnet:  # IPv6
            continue
        if cfg.get("Gateway"):
            return str(cfg["Gateway"])
        # docker picks the first host address when no gateway was given
        base, _, _ = subnet.partition("/")
        octets = base.split(".")
        return ".".join([*octets[:3], str(int(octets[3]) + 1)])
    raise RuntimeError(f"docker network {network} has no IPv4 subnet")


@pytest.fixture(scope="session")
def kind_env() -> dict[str, str]:
    if not KIND_ENV_FILE.is_file():
        pytest.skip(
            f"kind tooling not built ({KIND_ENV_FILE} missing): run hack/kind/build.sh"
            " (CI always builds it before the e2e tests)"
        )
    env = read_kind_env()
    for key in ("KIND_BIN", "KUBECTL_BIN"):
        if not Path(env.get(key, "")).is_file():
            pytest.skip(
                f"{key}={env.get(key)!r} from {KIND_ENV_FILE} does not exist:"
                " rerun hack/kind/build.sh"
            )
    if _docker("info").returncode != 0:
        pytest.fail("docker engine not reachable: run hack/docker-engine.sh")
    _ensure_docker_image(env["KIND_NODE_IMAGE"], env.get("KIND_NODE_IMAGE_TAR"))
    return env


def _wait_for(
    what: str, check: Callable[[], tuple[bool, str]], timeout: float = READY_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}: {last}")


@pytest.fixture(scope="session")
def kind_cluster(
    request: pytest.FixtureRequest,
    kind_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[object]:
    from pytest_kind import KindCluster

    name = request.config.getoption("cluster_name")
    keep = request.config.getoption("keep_cluster")
    config_file = tmp_path_factory.mktemp("kind") / "cluster.yaml"
    config_file.write_text(KIND_CLUSTER_CONFIG)

    cluster = KindCluster(
        name,
        image=kind_env["KIND_NODE_IMAGE"],
        kind_path=Path(kind_env["KIND_BIN"]),
        kubectl_path=Path(kind_env["KUBECTL_BIN"]),
    )
    # pytest-kind adopts a cluster of the same name if one exists, and the session deletes it
    # at the end: without this check a run would take over (and then delete) the cluster of
    # another session's run. Only a --keep-cluster run reuses one, on purpose.
    existing = subprocess.run(
        [kind_env["KIND_BIN"], "get", "clusters"], capture_output=True, text=True, check=False
    ).stdout.split()
    if name in existing:
        if not keep:
            pytest.fail(
                f"a kind cluster named {name!r} already exists (another e2e run, or one kept"
                " with --keep-cluster); it is left alone. Wait for that run, delete it with"
                f" `kind delete cluster --name {name}` if it is yours, reuse it with"
                " --keep-cluster, or pass another --cluster-name."
            )
        # Reusing a kept cluster, possibly from another worktree: fetch its kubeconfig.
        kubeconfig = f"--kubeconfig={cluster.kubeconfig_path}"
        subprocess.run(
            [kind_env["KIND_BIN"], "export", "kubeconfig", f"--name={name}", kubeconfig],
            capture_output=True,
            text=True,
            check=True,
        )
    try:
        cluster.create(config_file=config_file)

        def node_ready() -> tuple[bool, str]:
            out = cluster.kubectl(
                "get",
                "nodes",
                "-o",
                NODE_READY_JSONPATH,
            )
            states = out.split()
            return bool(states) and all(s == "True" for s in states), out

        def default_sa() -> tuple[bool, str]:
            proc = subprocess.run(
                [kind_env["KUBECTL_BIN"], "get", "serviceaccount", "default", "-n", "default"],
                env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path)},
                capture_output=True,
                text=True,
                check=False,
            )
            return proc.returncode == 0, proc.stderr

        def coredns_available() -> tuple[bool, str]:
            out = cluster.kubectl(
                "get",
                "deployment",
                "coredns",
                "-n",
                "kube-system",
                "-o",
                "jsonpath={.status.availableReplicas}",
            )
            return out.strip() not in {"", "0"}, f"availableReplicas={out!r}"

        _wait_for("node Ready", node_ready)
        _wait_for("the default ServiceAccount", default_sa)
        _wait_for("cluster DNS (coredns available)", coredns_available)
        yield cluster
    finally:
        if not keep:
            cluster.delete()


@pytest.fixture(scope="session")
def host_address_for_pods(kind_cluster: object) -> str:
    """IPv4 address of the docker host that pods can reach (kind network gateway)."""
    return kind_network_gateway()


@pytest.fixture(scope="session")
def probe_image(kind_env: dict[str, str], kind_cluster: object) -> str:
    image = kind_env["E2E_PROBE_IMAGE"]
    _ensure_docker_image(image, kind_env.get("E2E_PROBE_ROOTFS_TAR"), rootfs=True)
    kind_cluster.load_docker_image(image)  # type: ignore[attr-defined]
    return image


@pytest.fixture(scope="session")
def cluster(kind_cluster: Any, host_address_for_pods: str) -> Cluster:
    """The cluster e2e modules deploy to: the scorer image built and loaded once, helm found."""
    helm = find_helm()
    if helm is None:
        pytest.fail("helm is not built: run hack/helm.sh")
    build_and_load_image(kind_cluster, IMAGE)
    return Cluster(kind_cluster, helm, host_address_for_pods)
