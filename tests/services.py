"""Real services for the tests: PostgreSQL databases, an MLflow tracking server, a Pushgateway,
the CLI."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from pytest_postgresql.janitor import DatabaseJanitor

from scorer.identifiers import quote_identifier

CACHE = Path(os.environ.get("SCORER_CACHE") or Path.home() / ".cache" / "scorer")
"""Where the hack/ scripts cache their builds (binaries under ``CACHE / "bin"``)."""
DEFAULT_ADMIN_URL = "postgresql://scorer:scorer-test-pw@127.0.0.1:5432/postgres"
REPO = Path(__file__).resolve().parents[1]


def admin_url() -> str:
    """The maintenance URL of the test PostgreSQL server (``hack/postgres.sh`` starts one)."""
    return os.environ.get("SCORER_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)


def with_database(url: str, dbname: str, host: str | None = None) -> str:
    """``url`` pointing at ``dbname`` (and optionally another host)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if host is not None:
        credentials, _, hostport = netloc.rpartition("@")
        port = hostport.rsplit(":", 1)[1] if ":" in hostport else "5432"
        netloc = f"{credentials}@{host}:{port}"
    return urlunsplit((parts.scheme, netloc, f"/{dbname}", parts.query, parts.fragment))


@contextmanager
def fresh_database(prefix: str = "scorer_test") -> Iterator[str]:
    """Create a throwaway database and drop it afterwards (warehouse's janitor pattern)."""
    parts = urlsplit(admin_url())
    dbname = f"{prefix}_{secrets.token_hex(4)}"
    janitor = DatabaseJanitor(
        user=parts.username or "postgres",
        password=parts.password,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        dbname=dbname,
    )
    with janitor:
        yield with_database(admin_url(), dbname)


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on ``host``."""
    with closing(socket.socket()) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path, seconds: float) -> None:
    """Wait until ``url`` answers 200; fail with the server's log if it exits first."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited: {log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:  # noqa: S310
                if reply.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@contextmanager
def mlflow_server(workdir: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Run ``mlflow server`` (sqlite registry, proxied artifacts); yield its URI."""
    port = free_port(host)
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    log = (workdir / "server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination",
            str(workdir / "artifacts"),
            "--serve-artifacts",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    uri = f"http://{host}:{port}"
    try:
        wait_ready(process, f"{uri}/health", workdir / "server.log", 120)
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def pushgateway_binary() -> Path:
    """The Pushgateway ``hack/prometheus.sh`` builds (``$PUSHGATEWAY_BIN`` wins)."""
    return Path(os.environ.get("PUSHGATEWAY_BIN") or CACHE / "bin" / "pushgateway")


@contextmanager
def pushgateway(workdir: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Run the real Pushgateway on loopback; yield its URL."""
    binary = pushgateway_binary()
    if not os.access(binary, os.X_OK):
        raise FileNotFoundError(f"{binary}: run `bash hack/prometheus.sh` (or set PUSHGATEWAY_BIN)")
    port = free_port(host)
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / "pushgateway.log").open("w")
    process = subprocess.Popen(
        [str(binary), f"--web.listen-address={host}:{port}", "--log.level=warn"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://{host}:{port}"
    try:
        wait_ready(process, f"{url}/-/ready", workdir / "pushgateway.log", 30)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def scrape(url: str) -> list[Metric]:
    """The metric families a Pushgateway (or any target) exposes on ``/metrics``, parsed."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:  # noqa: S310
        return list(text_string_to_metric_families(reply.read().decode()))


def run_scorer(
    env: Mapping[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m scorer ARGS`` as a real process with exactly ``env`` on top of PATH."""
    return subprocess.run(
        [sys.executable, "-m", "scorer", *args],
        env=scorer_process_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )


def start_scorer(env: Mapping[str, str], *args: str) -> subprocess.Popen[str]:
    """Start ``python -m scorer ARGS`` like ``run_scorer``, its stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "scorer", *args],
        env=scorer_process_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def scorer_process_env(env: Mapping[str, str]) -> dict[str, str]:
    """A clean environment for a scorer process: no SCORER_* leaking in from the shell."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SCORER_", "MLFLOW_"))
    }
    base["PYTHONPATH"] = str(REPO)
    return {**base, **env}


def json_lines(text: str) -> list[dict[str, Any]]:
    """Parse every stdout line as JSON; fail loudly on anything else."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def events(text: str) -> list[str]:
    """The event names of a JSON log."""
    return [line["event"] for line in json_lines(text)]


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one query and return all rows."""
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(sql, params or None)
        return list(cur.fetchall()) if cur.description else []


def execute(url: str, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run one statement and commit."""
    with closing(psycopg2.connect(url)) as conn:
        with conn.cursor() as cur:
            cur.execute(sql, params or None)
        conn.commit()


def shard_env(env: dict[str, str], run_id: str, count: int, index: int) -> dict[str, str]:
    """A shard's environment as the chart renders it: the index from the Indexed Job."""
    return {
        **env,
        "SCORER_RUN_ID": run_id,
        "SCORER_SHARDS": str(count),
        "JOB_COMPLETION_INDEX": str(index),
    }


def finish_scorer(process: subprocess.Popen[str]) -> tuple[int, list[dict[str, Any]], str]:
    """Wait for a started scorer: its exit code, its JSON log lines, its stderr."""
    out, err = process.communicate(timeout=300)
    return process.returncode, json_lines(out), err


def shard_rows(url: str, target: str, run_id: str) -> list[tuple[Any, ...]]:
    """A sharded run's ``scoring_run_shards`` rows, by shard."""
    return query(
        url,
        "SELECT shard, status, attempts, rows_read, rows_scored, staging_table, error"
        f" FROM {quote_identifier(target)}.scoring_run_shards WHERE run_id = %s ORDER BY shard",
        (run_id,),
    )
