"""``--lever NAME:VAR=VALUE[,VAR=VALUE]``: one throughput lever measured on its own, against the
scorer as it is, in one sitting.

A lever is a set of scorer settings (``SCORER_PREDICT_THREADS=1``, ...). Each case runs as the
baseline and under each lever, interleaved run by run so that drift hits all alike; the table
gives the medians and each lever's ratios to the baseline. With ``--shards`` the shard counts
run under each lever too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from benchmarks.cli import Bench, Figure, Sample, from_samples, progress
from benchmarks.fixtures import Case

BASELINE = "baseline"
_ASSIGNMENT = re.compile(r"^(SCORER_[A-Z_]+)=(.*)$")


@dataclass(frozen=True)
class Lever:
    """A name and the scorer settings it sets."""

    name: str
    env: dict[str, str] = field(default_factory=dict)


def parse(text: str) -> Lever:
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
    return Lever(name, env)


def with_baseline(levers: list[Lever]) -> list[Lever]:
    """The baseline (no settings) first, then ``levers``."""
    return [Lever(BASELINE), *levers]


def measure_levers(
    bench: Bench, case: Case, rows: int, levers: list[Lever], repeat: int
) -> dict[str, Figure]:
    """The case's end-to-end run as the baseline and under each lever, interleaved."""
    samples: dict[str, list[Sample]] = {lever.name: [] for lever in with_baseline(levers)}
    for attempt in range(repeat):
        for lever in with_baseline(levers):
            sample = bench.scorer(case, rows, attempt, extra=lever.env)
            samples[lever.name].append(sample)
            progress(f"[{case.name} {rows:,} {lever.name}] run {attempt + 1}: {sample.wall:.2f}s")
    return {name: from_samples(name, rows, found) for name, found in samples.items()}


def report_levers(rows: int, found: dict[str, dict[str, Figure]], levers: list[Lever]) -> str:
    """Per case, the baseline and each lever: medians, and ratios to the baseline."""
    settings = {lever.name: ", ".join(f"{k}={v}" for k, v in lever.env.items()) for lever in levers}
    cores = os.cpu_count() or 1
    lines = [
        f"levers at {rows:,} rows, each against the baseline in the same sitting",
        "",
        "| case | lever | wall s | rows/s | client CPU s per 1M | server CPU s per 1M"
        " | total | CPU vs baseline | rows/s vs baseline | wall ÷ (CPU ÷ cores) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case, figures in found.items():
        base = figures[BASELINE]
        for name, f in figures.items():
            label = name if name == BASELINE else f"{name} ({settings[name]})"
            utilisation = f.wall / (f.cpu_per_m * rows / 1e6 / cores)
            lines.append(
                f"| {case} | {label} | {f.wall:.2f} | {f.rows_per_s:,.0f}"
                f" | {f.client_cpu_per_m:.2f} | {f.server_cpu_per_m:.2f} | {f.cpu_per_m:.2f}"
                f" | {f.cpu_per_m / base.cpu_per_m:.3f} | {f.rows_per_s / base.rows_per_s:.3f}"
                f" | {utilisation:.2f} |"
            )
    return "\n".join(lines)
