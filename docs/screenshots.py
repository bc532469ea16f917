"""Make docs/lineage.md's MLflow UI screenshots from real scoring runs, in headless Chromium.

Seven nightly runs of a churn model (one snapshot each, the charges drifting up, one rough
night) are scored by the real scorer into a throwaway MLflow server and PostgreSQL database
(the test services: ``SCORER_TEST_DATABASE_URL``, as ``hack/postgres.sh`` prints it); then
Chromium (Debian's ``chromium`` package) loads the MLflow UI and is driven over the DevTools
protocol (standard library only: a minimal WebSocket client) to filter the experiment's metric
charts to ``score_mean``, and to open one run::

    python docs/screenshots.py    # writes docs/mlflow-score-mean.png, docs/mlflow-scoring-run.png
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from contextlib import closing
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scorer.postgres import db, schema  # noqa: E402
from tests.support import services  # noqa: E402
from tests.support.fixtures import (  # noqa: E402
    NUMERIC_FEATURES,
    load_table,
    register_versions,
    synthetic_customers,
)

NIGHTS = pd.date_range("2026-11-20", periods=7, freq="D")
WIDTH, HEIGHT = 1500, 1000
SETTLE_SECONDS = 25  # the UI loads its charts lazily; a busy machine needs the time


def score_nights(mlflow_uri: str, url: str) -> None:
    """Register the model, load seven snapshots, score each as the CronJob would."""
    with closing(db.connect(url)) as conn:
        schema.migrate(conn, "scoring")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        register_versions(mlflow_uri, "churn", synthetic_customers(2000, seed=3))
    frames = []
    for index, night in enumerate(NIGHTS):
        frame = synthetic_customers(4000, seed=100 + index)
        frame["support_calls"] += int(index % 4 == 3)  # a rough night
        frame["monthly_charges"] += 2.0 * index
        frame["as_of"] = night.date().isoformat()
        frames.append(frame)
    types = {"customer_id": "bigint", "as_of": "date"}
    types |= dict.fromkeys(NUMERIC_FEATURES, "double precision")
    load_table(url, "features.nightly", pd.concat(frames), types, ("customer_id", "as_of"))
    for night in NIGHTS:
        day = night.date().isoformat()
        job = f"scorer-{int(pd.Timestamp(f'{day}T03:00Z').timestamp() // 60)}"
        env = {
            "MLFLOW_TRACKING_URI": mlflow_uri,
            "SCORER_DATABASE_URL": url,
            "SCORER_MODEL_NAME": "churn",
            "SCORER_MODEL_ALIAS": "champion",
            "SCORER_FEATURES_TABLE": "features.nightly",
            "SCORER_ENTITY_COLUMN": "customer_id",
            "SCORER_SNAPSHOT_COLUMN": "as_of",
            "SCORER_SNAPSHOT": day,
            "SCORER_RUN_ID": job,
            "SCORER_K8S_JOB": job,
            "SCORER_K8S_CRONJOB": "scorer",
            "SCORER_K8S_NAMESPACE": "ml",
            "SCORER_TRIGGER": "scheduled",
            "SCORER_QUALITY_OVERRIDE": "demo data drifts on purpose",
        }
        result = services.run_scorer(env, "run")
        if result.returncode != 0:
            raise RuntimeError(result.stdout + result.stderr)


class DevTools:
    """One Chromium page over the DevTools protocol (a WebSocket; text frames only)."""

    def __init__(self, url: str) -> None:
        authority, path = url.removeprefix("ws://").split("/", 1)
        host, port = authority.split(":")
        self.sock = socket.create_connection((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /{path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += self.sock.recv(4096)
        head, self.pending = buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"no WebSocket: {head[:200]!r}")
        self.calls = 0

    def _read(self, size: int) -> bytes:
        while len(self.pending) < size:
            self.pending += self.sock.recv(1 << 20)
        out, self.pending = self.pending[:size], self.pending[size:]
        return out

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode()
        size = len(data)
        if size < 126:
            head = bytes([0x81, 0x80 | size])
        elif size < 1 << 16:
            head = bytes([0x81, 0x80 | 126]) + struct.pack(">H", size)
        else:
            head = bytes([0x81, 0x80 | 127]) + struct.pack(">Q", size)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _receive(self) -> dict[str, Any]:
        message = b""
        while True:
            first, second = self._read(2)
            size = second & 0x7F
            if size == 126:
                size = struct.unpack(">H", self._read(2))[0]
            elif size == 127:
                size = struct.unpack(">Q", self._read(8))[0]
            message += self._read(size)
            if first & 0x80:
                return dict(json.loads(message))

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.calls += 1
        self._send({"id": self.calls, "method": method, "params": params})
        while True:
            reply = self._receive()
            if reply.get("id") == self.calls:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def capture(self, url: str, out: Path, search: str = "", crop: tuple[int, ...] = ()) -> None:
        self.call("Page.navigate", url=url)
        time.sleep(SETTLE_SECONDS)
        # The assistant side panel takes a third of the page: close it.
        self.evaluate(
            "[...document.querySelectorAll('button')].filter(b => /close/i.test("
            "b.getAttribute('aria-label') || '')).forEach(b => b.click())"
        )
        if search:  # type into "Search metric charts", as React sees typing
            self.evaluate(
                "(() => { const i = [...document.querySelectorAll('input')].find(i => "
                "/Search metric charts/i.test(i.placeholder || ''));"
                " Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value')"
                f".set.call(i, {json.dumps(search)});"
                " i.dispatchEvent(new Event('input', {bubbles: true})); })()"
            )
        time.sleep(8)
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        out.write_bytes(png)
        if crop:
            Image.open(out).crop(crop).save(out, optimize=True)
        print("wrote", out.relative_to(ROOT))


def screenshots(mlflow_uri: str) -> None:
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("scoring/churn")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    base = f"{mlflow_uri}/#/experiments/{experiment.experiment_id}"
    port = services.free_port()
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        browser = subprocess.Popen(  # noqa: S603 - a fixed command line
            [  # noqa: S607 - Debian's chromium, found on PATH
                "chromium",
                "--headless=new",
                "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
                "--disable-gpu",
                "--hide-scrollbars",
                f"--remote-debugging-port={port}",
                f"--user-data-dir={profile}",
                f"--window-size={WIDTH},{HEIGHT}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            page = _page(port)
            tools = DevTools(page)
            tools.call("Page.enable")
            tools.call(
                "Emulation.setDeviceMetricsOverride",
                width=WIDTH,
                height=HEIGHT,
                deviceScaleFactor=1,
                mobile=False,
            )
            tools.capture(
                f"{base}/runs?compareRunsMode=CHART",
                ROOT / "docs" / "mlflow-score-mean.png",
                search="score_mean",
                crop=(200, 0, 850, 710),
            )
            tools.capture(
                f"{base}/runs/{runs[0].info.run_id}",
                ROOT / "docs" / "mlflow-scoring-run.png",
                crop=(200, 0, WIDTH, 720),
            )
        finally:
            browser.terminate()
            browser.wait(20)


def _page(port: int) -> str:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as reply:
                targets = json.load(reply)
            return str(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
        except (OSError, StopIteration):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="mlflow-shots-") as work,
        services.mlflow_server(Path(work) / "mlflow") as mlflow_uri,
        services.fresh_database("scorer_shots") as url,
    ):
        score_nights(mlflow_uri, url)
        screenshots(mlflow_uri)


if __name__ == "__main__":
    main()
