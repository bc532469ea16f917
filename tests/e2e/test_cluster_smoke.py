"""Smoke test of the offline kind cluster: a pod from a locally loaded image
runs, resolves cluster DNS, reaches a Service, and reaches the docker host."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.e2e

POD_TIMEOUT_S = 180


@pytest.fixture
def host_tcp_server(host_address_for_pods: str) -> Iterator[tuple[str, int, str]]:
    """A TCP server on the docker host, bound to the address pods use for it.

    Every connection gets one line with a random token, then is closed.
    """
    token = uuid.uuid4().hex
    srv = socket.create_server((host_address_for_pods, 0))
    srv.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.sendall(f"{token}\n".encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield host_address_for_pods, srv.getsockname()[1], token
    finally:
        stop.set()
        thread.join(timeout=5)
        srv.close()


PROBE_SCRIPT = r"""
set -u
echo "probe: started"
for _ in $(seq 1 15); do
  addr="$(getent hosts kubernetes.default.svc.cluster.local | awk '{print $1}')"
  [ -n "$addr" ] && break
  sleep 2
done
echo "probe: dns $addr"
if exec 3<>/dev/tcp/kubernetes.default.svc/443; then echo "probe: service-tcp ok"; exec 3>&-; fi
if exec 4<>/dev/tcp/$HOST_ADDR/$HOST_PORT; then read -r -t 10 line <&4; echo "probe: host $line"; fi
"""


def _pod_manifest(name: str, image: str, host: str, port: int) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "e2e-probe"}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/bash", "-c", PROBE_SCRIPT],
                    "env": [
                        {"name": "HOST_ADDR", "value": host},
                        {"name": "HOST_PORT", "value": str(port)},
                    ],
                }
            ],
        },
    }


def test_node_is_ready_and_runs_the_offline_build(kind_cluster, kind_env) -> None:
    nodes = json.loads(kind_cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    assert len(nodes) == 1
    info = nodes[0]["status"]["nodeInfo"]
    assert info["kubeletVersion"] == kind_env["K8S_VERSION"]
    ready = {c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]}
    assert ready["Ready"] == "True"


def test_pod_runs_resolves_dns_and_reaches_service_and_host(
    kind_cluster, probe_image, host_tcp_server
) -> None:
    host, port, token = host_tcp_server
    name = f"probe-{uuid.uuid4().hex[:8]}"
    kind_cluster.kubectl(
        "apply", "-f", "-", input=json.dumps(_pod_manifest(name, probe_image, host, port))
    )
    try:
        deadline = time.monotonic() + POD_TIMEOUT_S
        phase = ""
        while time.monotonic() < deadline:
            phase = kind_cluster.kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}")
            if phase in {"Succeeded", "Failed"}:
                break
            time.sleep(2)
        logs = kind_cluster.kubectl("logs", name)
        assert phase == "Succeeded", f"pod phase {phase!r}; logs:\n{logs}\n" + kind_cluster.kubectl(
            "describe", "pod", name
        )
        lines = logs.splitlines()
        assert "probe: started" in lines
        cluster_ip = kind_cluster.kubectl(
            "get", "service", "kubernetes", "-n", "default", "-o", "jsonpath={.spec.clusterIP}"
        )
        assert f"probe: dns {cluster_ip}" in lines, logs
        assert "probe: service-tcp ok" in lines, logs
        assert f"probe: host {token}" in lines, logs
    finally:
        kind_cluster.kubectl("delete", "pod", name, "--wait=false", "--ignore-not-found")
