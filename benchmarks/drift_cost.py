"""``python -m benchmarks.drift_cost [--rows N] [--repeat R] [--case NAME ...]``: what the
per-feature drift evidence (``scorer.run.drift``) costs a whole run.

Each case (``benchmarks.fixtures``: numeric, 200 trees of depth 6 over 20 float8 columns;
telco-xgboost, the same over 3 categorical and 17 numeric columns) scored end to end with the
evidence (``python -m scorer run``) and without it (``python -m benchmarks.no_drift run``: the
same command line, no collector), interleaved run by run (which goes first alternates), each
over N rows and over the case's N/4 table. Before each measured run, a published run of the
same table (not measured) is the reference, so a run with the evidence counts its features
into the reference's bins as well as sampling them; the runs without it have the same
reference. CPU is the client's (all threads) plus the benchmark's own PostgreSQL's. Printed
per case, medians of R: CPU per row of the whole run and at the margin
(``(CPU(N) - CPU(N/4)) / (3N/4)``: start-up, the same in both runs, cancels out), the ratios
with / without, and the evidence's share of a run's CPU, whose budget is 3%; the same
from paired differences (each attempt's run with less its run without, then the median); and
the machine's load average (1 minute) over the sitting.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks import fixtures
from benchmarks.bench import Bench
from benchmarks.cluster import Cluster
from benchmarks.fixtures import Case
from benchmarks.progress import progress
from benchmarks.report import per_row_and_margin
from benchmarks.types import Sample

VARIANTS = {"with": "scorer", "without": "benchmarks.no_drift"}  # the module each runs


def _cpu(sample: Sample) -> float:
    return sample.client_cpu + sample.server_cpu


def _client(sample: Sample) -> float:
    return sample.client_cpu


def _server(sample: Sample) -> float:
    return sample.server_cpu


def _require_variant(variant: str, sample: Sample) -> None:
    """A run with the evidence had a reference and checked every feature; one without checked
    none."""
    unchecked = '"quality.feature_psi_unchecked"' in sample.stdout
    if '"quality.no_reference"' in sample.stdout or unchecked != (variant == "without"):
        raise RuntimeError(f"the run {variant} the evidence was not one:\n{sample.stdout[-3000:]}")


Found = dict[tuple[str, str, int], list[Sample]]  # by case, variant and rows


def measure(bench: Bench, cases: list[Case], rows: int, repeat: int) -> tuple[Found, list[float]]:
    """The samples of each case, variant and size, and the load average around each run."""
    quarter = max(rows // 4, 1)
    found: Found = {}
    load = [os.getloadavg()[0]]
    for attempt in range(repeat):
        order = list(VARIANTS) if attempt % 2 == 0 else list(reversed(VARIANTS))
        for case in cases:
            for size, table in ((rows, case.table), (quarter, case.quarter)):
                for variant in order:
                    sample = bench.scorer(
                        case,
                        size,
                        attempt,
                        extra={"SCORER_FEATURES_TABLE": table},
                        module=VARIANTS[variant],
                        reference=True,
                    )
                    _require_variant(variant, sample)
                    found.setdefault((case.name, variant, size), []).append(sample)
                    load.append(os.getloadavg()[0])
                    progress(
                        f"[{case.name} {variant} {size:,}] {sample.wall:.1f}s wall,"
                        f" {_cpu(sample):.2f} CPU-s ({sample.client_cpu:.2f} client),"
                        f" load {load[-1]:.1f}"
                    )
    return found, load


def _median(samples: list[Sample], cpu: Callable[[Sample], float] = _cpu) -> float:
    return statistics.median(cpu(sample) for sample in samples)


def report(found: Found, cases: list[Case], rows: int, repeat: int) -> None:
    """The sitting's tables (markdown)."""
    quarter = max(rows // 4, 1)
    print(
        "\n| case | drift evidence | CPU µs per row, whole run (client + server) |"
        " CPU µs per row, at the margin (client) |\n|---|---|---|---|"
    )
    figures: dict[tuple[str, str], tuple[float, float]] = {}
    for case in cases:
        for variant in VARIANTS:
            big, small = found[case.name, variant, rows], found[case.name, variant, quarter]
            per_row, margin = per_row_and_margin(_median(big), _median(small), rows, quarter)
            client, client_margin = per_row_and_margin(
                _median(big, _client), _median(small, _client), rows, quarter
            )
            server = _median(big, _server) / rows * 1e6
            figures[case.name, variant] = (per_row, margin)
            print(
                f"| {case.name} | {variant} | {per_row:,.2f} ({client:,.2f} + {server:,.2f}) |"
                f" {margin:,.2f} ({client_margin:,.2f}) |"
            )
    print(
        f"\nmedians of {repeat}\n\n| case | with ÷ without, whole run | with ÷ without, at the"
        " margin | the evidence's share of a run, whole / at the margin |\n|---|---|---|---|"
    )
    for case in cases:
        (whole_with, margin_with) = figures[case.name, "with"]
        (whole_without, margin_without) = figures[case.name, "without"]
        print(
            f"| {case.name} | {whole_with / whole_without:.3f} |"
            f" {margin_with / margin_without:.3f} |"
            f" {1 - whole_without / whole_with:.1%} / {1 - margin_without / margin_with:.1%} |"
        )
    print(
        "\npaired: each attempt's run with the evidence less its run without, same size, then"
        " the median over attempts (load that drifts between attempts cancels)\n\n| case |"
        " evidence, CPU µs per row, whole run | its share of a run without | evidence, CPU µs"
        " per row, at the margin | its share at the margin |\n|---|---|---|---|---|"
    )
    for case in cases:
        paired = {size: _paired(found, case, size) for size in (rows, quarter)}
        whole = statistics.median(paired[rows])
        margin = statistics.median(
            (big - small) / (rows - quarter)
            for big, small in zip(paired[rows], paired[quarter], strict=True)
        )
        without = figures[case.name, "without"]
        print(
            f"| {case.name} | {whole / rows * 1e6:,.2f} |"
            f" {whole / rows * 1e6 / without[0]:.1%} | {margin * 1e6:,.2f} |"
            f" {margin * 1e6 / without[1]:.1%} |"
        )


def _paired(found: Found, case: Case, size: int) -> list[float]:
    """CPU seconds with the evidence less without, attempt by attempt."""
    return [
        _cpu(with_) - _cpu(without)
        for with_, without in zip(
            found[case.name, "with", size], found[case.name, "without", size], strict=True
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift_cost", description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000, help="rows scored (N)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--case",
        nargs="+",
        default=["numeric", "telco-xgboost"],
        choices=["numeric", "telco-xgboost"],
    )
    args = parser.parse_args(argv)
    cases = [fixtures.CASES[name] for name in args.case]
    with tempfile.TemporaryDirectory(prefix="scorer-drift-cost-") as tmp:
        cluster = Cluster.start()
        try:
            bench = Bench(cluster, Path(tmp))
            bench.setup(args.rows, cases, 20_000)
            found, load = measure(bench, cases, args.rows, args.repeat)
        finally:
            cluster.stop()
    print(
        f"\nload average (1 minute) over the sitting: median {statistics.median(load):.1f},"
        f" min {min(load):.1f}, max {max(load):.1f} ({os.cpu_count()} CPUs)"
    )
    report(found, cases, args.rows, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
