"""Measured child processes: wall time, their own CPU and peak RSS, and the PostgreSQL
server's CPU around them; their environment; an older commit's tree to run instead."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from benchmarks.cluster import server_cpu
from benchmarks.types import Sample

REPO = Path(__file__).resolve().parents[1]


def run_child(
    args: list[str],
    env: dict[str, str],
    postmaster: int,
    cwd: Path = REPO,
    timeout: float = 7200,
) -> Sample:
    """Run ``args``; wall time, rusage of exactly that child, server CPU around it."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        server = server_cpu(postmaster)
        started = time.time()
        start = time.perf_counter()
        process = subprocess.Popen(args, env=env, stdout=out, stderr=err, cwd=cwd)
        deadline = time.monotonic() + timeout
        peak = 0.0
        while True:  # os.wait4 gives this child's own rusage (CPU of all its threads)
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _high_water_mb(process.pid))
            if time.monotonic() > deadline:
                process.kill()
            time.sleep(0.01)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        time.sleep(0.3)  # the postmaster reaps the child's backends
        server = server_cpu(postmaster) - server
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(
            f"{args} exited {process.returncode}:\n{stdout[-3000:]}\n{stderr[-3000:]}"
        )
    cpu = usage.ru_utime + usage.ru_stime
    return Sample(wall, cpu, server, peak or usage.ru_maxrss / 1024, stdout, started)


def run_children(
    args: list[str], envs: list[dict[str, str]], postmaster: int, timeout: float = 7200
) -> Sample:
    """``run_child`` for processes started at once: wall time until the last has exited, the
    sum of their own rusage, the server's CPU around them; their stdouts concatenated."""
    with ExitStack() as stack:
        outs = [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in envs]
        server = server_cpu(postmaster)
        started = time.time()
        start = time.perf_counter()
        processes = [
            subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
            for env, out in zip(envs, outs, strict=True)
        ]
        cpu, peak = 0.0, 0.0
        codes: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while len(codes) < len(processes):
            for process in processes:
                if process.pid in codes:
                    continue
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    codes[pid] = os.waitstatus_to_exitcode(status)
                    cpu += usage.ru_utime + usage.ru_stime
                else:
                    peak = max(peak, _high_water_mb(process.pid))
                    if time.monotonic() > deadline:
                        process.kill()
            time.sleep(0.01)
        wall = time.perf_counter() - start
        time.sleep(0.3)  # the postmaster reaps the children's backends
        server = server_cpu(postmaster) - server
        stdout = ""
        for out in outs:
            out.seek(0)
            stdout += out.read()
    if any(codes.values()):
        raise RuntimeError(f"{args} exited {sorted(codes.values())}:\n{stdout[-3000:]}")
    return Sample(wall, cpu, server, peak, stdout, started)


def _high_water_mb(pid: int) -> float:
    """The process's peak RSS so far (``VmHWM``), 0 once it has exited.

    Not ``ru_maxrss``: after fork and exec Linux carries the parent's high-water mark into
    the child's, so a child of this (mlflow-importing) process would never report less
    than the parent's ~400 MB.
    """
    try:
        with Path(f"/proc/{pid}/status").open() as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def child_env(extra: dict[str, str], tree: Path = REPO) -> dict[str, str]:
    """A clean environment: no SCORER_*/MLFLOW_* from the shell, ``tree`` importable first."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SCORER_", "MLFLOW_"))}
    return {**base, "PYTHONPATH": str(tree), **extra}


def mem_available_mb() -> float:
    """The memory this machine has available now (``MemAvailable``)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def extract(revision: str, workdir: Path) -> Path:
    """``git archive revision`` of this repository, unpacked under ``workdir``."""
    tree = workdir / f"scorer-{revision}"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", revision],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree
