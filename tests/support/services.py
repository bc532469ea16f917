"""Real services for the tests: PostgreSQL databases, an MLflow tracking server, a Pushgateway,
the CLI."""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from pytest_postgresql.janitor import DatabaseJanitor

from scorer.postgres.identifiers import quote_identifier

CACHE = Path(os.environ.get("SCORER_CACHE") or Path.home() / ".cache" / "scorer")
"""Where the hack/ scripts cache their builds (binaries under ``CACHE / "bin"``)."""
DEFAULT_ADMIN_URL = "postgresql://scorer:scorer-test-pw@127.0.0.1:5432/postgres"
REPO = Path(__file__).resolve().parents[2]


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


@contextmanager
def mlflow_server(
    workdir: Path, host: str = "127.0.0.1", tls: tuple[Path, Path, Path] | None = None
) -> Iterator[str]:
    """Run ``mlflow server`` (sqlite registry, proxied artifacts); yield its URI.

    With ``tls`` (server certificate, its key, the CA that signed it) it serves HTTPS only.
    """
    port = free_port(host)
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    log = (workdir / "server.log").open("w")
    https: list[str] = []
    context = None
    if tls is not None:
        https = ["--uvicorn-opts", f"--ssl-certfile {tls[0]} --ssl-keyfile {tls[1]}"]
        context = ssl.create_default_context(cafile=str(tls[2]))
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
            *https,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    uri = f"{'https' if tls else 'http'}://{host}:{port}"

    def healthy() -> bool:
        with urllib.request.urlopen(  # noqa: S310
            f"{uri}/health", timeout=2, context=context
        ) as reply:
            return bool(reply.status == 200)

    try:
        wait_until_up(process, healthy, workdir / "server.log", 120)
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_until_up(
    process: subprocess.Popen[bytes], up: Callable[[], bool], log: Path, timeout: float
) -> None:
    """Wait until ``up()`` (an ``OSError`` counts as not yet); fail with ``log`` if the
    process exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited: {log.read_text()}")
        try:
            if up():
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"{process.args!r} not up after {timeout:g} s: {log.read_text()}")
        time.sleep(0.3)


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

        def ready() -> bool:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as reply:  # noqa: S310
                return bool(reply.status == 200)

        wait_until_up(process, ready, workdir / "pushgateway.log", 30)
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


@contextmanager
def pgbouncer(workdir: Path, pool_mode: str) -> Iterator[str]:
    """Run a real PgBouncer (Debian's package) on loopback in front of the test server, in
    ``pool_mode`` (session, transaction or statement); yield ``admin_url()`` through it."""
    parts = urlsplit(admin_url())
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    users = workdir / "userlist.txt"
    users.write_text(f'"{parts.username}" "{parts.password}"\n')
    config = workdir / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={parts.hostname} port={parts.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = scram-sha-256\nauth_file = {users}\npool_mode = {pool_mode}\n"
    )
    users.chmod(0o600)
    # PgBouncer refuses to run as root: as root, it reads its files and then becomes postgres.
    as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
    log = (workdir / "pgbouncer.log").open("w")
    process = subprocess.Popen(
        ["pgbouncer", *as_user, str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    url = urlunsplit(parts._replace(netloc=f"{parts.netloc.rpartition('@')[0]}@127.0.0.1:{port}"))

    def listening() -> bool:
        with closing(socket.create_connection(("127.0.0.1", port), timeout=1)):
            return True

    try:
        wait_until_up(process, listening, workdir / "pgbouncer.log", 30)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()
