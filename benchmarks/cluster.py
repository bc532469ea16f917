"""A throwaway PostgreSQL cluster (Debian's binaries) and the CPU its processes use."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{data}'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
max_wal_size = 8GB
checkpoint_timeout = 1h
autovacuum = off
"""


def pg_bin() -> Path:
    """The newest installed PostgreSQL binaries directory."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError(
            "no PostgreSQL binaries under /usr/lib/postgresql (apt install postgresql)"
        )
    return found[-1].parent


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.getuid() == 0 else args


@dataclass
class Cluster:
    """One PostgreSQL cluster in a temporary data directory, stopped and removed on exit."""

    data: Path
    port: int
    bin: Path

    @classmethod
    def start(cls) -> Cluster:
        """initdb + start on a free loopback port (trust auth, durability off, like CI's)."""
        data = Path(tempfile.mkdtemp(prefix="scorer-bench-pg-", dir="/var/tmp"))
        if os.getuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        cluster = cls(data, _free_port(), pg_bin())
        subprocess.run(
            _as_postgres(
                [
                    str(cluster.bin / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "bench",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            check=True,
            capture_output=True,
        )
        conf = data / "postgresql.conf"
        text = conf.read_text() + _CONF.format(port=cluster.port, data=data)
        conf.write_text(text)
        subprocess.run(
            _as_postgres(
                [
                    str(cluster.bin / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(data / "server.log"),
                    "-w",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        return cluster

    @property
    def url(self) -> str:
        """Admin URL of the ``postgres`` database."""
        return f"postgresql://bench@127.0.0.1:{self.port}/postgres"

    @property
    def postmaster(self) -> int:
        """The postmaster's pid."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        """Stop the server (fast) and remove the data directory."""
        subprocess.run(
            _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.data, ignore_errors=True)


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def server_cpu(postmaster: int) -> float:
    """CPU seconds (user+sys) of the server: live processes plus every backend reaped so far.

    The postmaster reaps its backends, so their CPU lands in its cutime/cstime when they exit.
    """
    total = 0
    fields = _stat(postmaster)
    if fields is None:
        return 0.0
    total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == postmaster:
            continue
        child = _stat(int(entry.name))
        if child is not None and int(child[1]) == postmaster:  # ppid
            total += int(child[11]) + int(child[12])
    return total / _CLOCK_TICKS
