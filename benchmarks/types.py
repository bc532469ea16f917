"""The benchmark's data: a measured child process, the median figure of several, a lever, and
what one size's measurement gives. No behaviour beyond building and reading them."""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Required, TypedDict

BASELINE = "baseline"
"""The lever name of the scorer as it is (no settings)."""
_ASSIGNMENT = re.compile(r"^(SCORER_[A-Z_]+)=(.*)$")


@dataclass
class Sample:
    """One measured child process."""

    wall: float
    client_cpu: float
    server_cpu: float
    max_rss_mb: float
    stdout: str
    started: float  # epoch seconds just before the child was started


@dataclass
class Figure:
    """The median of a measurement's samples."""

    name: str
    rows: int
    runs: int
    wall: float
    rows_per_s: float
    max_rss_mb: float | None
    client_cpu_per_m: float
    server_cpu_per_m: float

    @property
    def cpu_per_m(self) -> float:
        """Client + server CPU seconds per million rows."""
        return self.client_cpu_per_m + self.server_cpu_per_m


def figure(
    name: str, rows: int, runs: Iterable[tuple[float, float, float, float | None]]
) -> Figure:
    """Medians of (wall, client CPU, server CPU, peak RSS MB) samples; the highest peak RSS."""
    runs = list(runs)
    wall = statistics.median(run[0] for run in runs)
    per_m = 1e6 / rows
    rss = [run[3] for run in runs if run[3] is not None]
    return Figure(
        name,
        rows,
        len(runs),
        wall,
        rows / wall,
        max(rss) if rss else None,
        statistics.median(run[1] for run in runs) * per_m,
        statistics.median(run[2] for run in runs) * per_m,
    )


def from_samples(name: str, rows: int, samples: list[Sample]) -> Figure:
    """The figure of measured child processes."""
    return figure(name, rows, ((s.wall, s.client_cpu, s.server_cpu, s.max_rss_mb) for s in samples))


@dataclass(frozen=True)
class Lever:
    """``--lever NAME:VAR=VALUE[,VAR=VALUE]``: a name and the scorer settings it sets.

    Each case runs as the baseline and under each lever, interleaved run by run so that
    drift hits all alike; with ``--shards`` the shard counts run under each lever too.
    """

    name: str
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Lever:
        """``threads1:SCORER_PREDICT_THREADS=1`` (several settings comma-separated)."""
        name, _, assignments = text.partition(":")
        if not name or name == BASELINE or not assignments:
            raise ValueError(f"--lever {text!r}: give NAME:SCORER_VAR=VALUE[,SCORER_VAR=VALUE]")
        env = {}
        for assignment in assignments.split(","):
            found = _ASSIGNMENT.match(assignment)
            if found is None:
                raise ValueError(f"--lever {text!r}: {assignment!r} is not SCORER_VAR=VALUE")
            env[found.group(1)] = found.group(2)
        return cls(name, env)


def with_baseline(levers: Iterable[Lever]) -> list[Lever]:
    """The baseline (no settings) first, then ``levers``."""
    return [Lever(BASELINE), *levers]


class CaseResult(TypedDict, total=False):
    """One case at one size: the figures measured, by the names the JSON keeps."""

    case: Required[str]
    rows: Required[int]
    scorer: Required[Figure]
    scorer_quarter: Required[Figure]
    to_model_loaded: Required[float]  # seconds, process start to ``model.loaded`` (median)
    imports: Required[list[tuple[str, float]]]  # top packages by cumulative import seconds
    naive: Figure
    startup: dict[str, float]  # ``scorer check``: to_model_loaded, check_wall/cpu/rss_mb
    before: Figure
    before_to_model_loaded: float
    before_stages: dict[str, Figure]
    stages: dict[str, Figure]
    explain: str  # the plan of the scorer's feature query
    image: str
    image_startup: float
    image_scorer: Figure
    image_quarter: Figure


class SizeResult(TypedDict):
    """Every case measured at one size, in one sitting."""

    rows: int
    load: list[tuple[float, float, float]]  # load averages before and after
    cases: dict[str, CaseResult]
    shards: dict[str, dict[int, Figure]]  # per lever (or image): per shard count
    shard_startup: dict[str, float]  # per lever (or image): a joining shard's CPU seconds
    levers: dict[str, dict[str, Figure]] | None  # per case: per lever
    lever_settings: list[Lever]


StageRow = dict[str, Any]
"""One stage sample as ``benchmarks.stages`` prints it (stage, attempt, rows, wall, CPU)."""
