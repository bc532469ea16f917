"""``python -m benchmarks.reasons [--rows N] [--repeat R] [--k K] [--method M] [--case NAME ...]``:
what the reasons cost (``SCORER_REASONS``).

Each case (``benchmarks.fixtures``: numeric, 200 trees of depth 6 over 20 float8 columns;
telco-xgboost, the same over 3 categorical and 17 numeric columns) scored end to end without
reasons and with ``SCORER_REASONS=K`` by ``SCORER_REASONS_METHOD=M`` (default ``path``),
interleaved run by run, each over N rows and over the
case's N/4 table. CPU is the client's (all threads) plus the benchmark's own PostgreSQL's.
Printed per case, medians of R: CPU per row of the whole run, CPU per row at the margin
(``(CPU(N) - CPU(N/4)) / (3N/4)``: start-up, the same in both runs, cancels out), and the
ratios with / without, whose budget is 2. ``--library``: the
xgboost calls alone, in process (``library``), to show where the cost is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import fixtures
from benchmarks.bench import Bench
from benchmarks.cluster import Cluster
from benchmarks.progress import progress
from benchmarks.report import per_row_and_margin
from benchmarks.types import Sample


def _cpu(sample: Sample) -> float:
    return sample.client_cpu + sample.server_cpu


def library(rows: int, repeat: int) -> None:
    """The library calls alone, in process, on one thread: CPU µs per row of the numeric
    case's booster (200 trees of depth 6 over 20 columns, as ``fixtures``) predicting, giving
    its TreeSHAP contributions and its approximate (Saabas) ones, and the scorer's path
    contributions (the compiled walk of a matrix; ``pred_leaf`` and the per-leaf table of a
    DataFrame), with and without the top K's jsonb; medians of R."""
    import numpy as np  # noqa: PLC0415 - the end-to-end runs need none of these
    import pandas as pd  # noqa: PLC0415
    import xgboost  # noqa: PLC0415

    from scorer.model import reasons  # noqa: PLC0415

    rng = np.random.default_rng(0)
    train = rng.random((20_000, 20))
    booster = fixtures._booster(xgboost.DMatrix(train, label=fixtures._labels(train, rng)))
    data = rng.random((rows, 20)).astype(np.float32)
    path = reasons.native("xgboost", booster, 1, None, "path")
    assert path is not None
    names = tuple(booster.feature_names or (f"f{i}" for i in range(20)))
    frame = pd.DataFrame(data, columns=list(names))

    def encoded(data: object) -> object:
        found, _ = path(data)
        return reasons.encode(names, found, 3)

    calls: dict[str, Callable[[], object]] = {
        "inplace_predict": lambda: booster.inplace_predict(data),
        "predict(pred_contribs=True)": lambda: booster.predict(
            xgboost.DMatrix(data, nthread=1), pred_contribs=True
        ),
        "predict(pred_contribs=True, approx_contribs=True)": lambda: booster.predict(
            xgboost.DMatrix(data, nthread=1), pred_contribs=True, approx_contribs=True
        ),
        "path of a DataFrame: pred_leaf + the per-leaf table": lambda: path(frame),
        "path of a matrix: the compiled walk (SCORER_REASONS_METHOD=path)": lambda: path(data),
        "the walk, then the top 3 and their jsonb": lambda: encoded(data),
    }
    print(f"\n| xgboost call, 1 thread, {rows:,} rows | CPU µs per row | ÷ inplace_predict |")
    print("|---|---|---|")
    base = 0.0
    for name, call in calls.items():
        times = []
        for _ in range(repeat):
            start = time.process_time()
            call()
            times.append((time.process_time() - start) / rows * 1e6)
        figure = statistics.median(times)
        base = base or figure
        print(f"| {name} | {figure:,.1f} | {figure / base:,.1f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reasons", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000, help="rows scored (N)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--k", type=int, default=3, help="SCORER_REASONS of the runs with reasons")
    parser.add_argument(
        "--method", default="path", choices=["path", "shapley"], help="SCORER_REASONS_METHOD"
    )
    parser.add_argument(
        "--case",
        nargs="+",
        default=["numeric", "telco-xgboost"],
        choices=["numeric", "telco-xgboost"],
    )
    parser.add_argument(
        "--library", action="store_true", help="only the library calls, in process (no runs)"
    )
    args = parser.parse_args(argv)
    if args.library:
        library(args.rows, args.repeat)
        return 0
    cases = [fixtures.CASES[name] for name in args.case]
    quarter = max(args.rows // 4, 1)
    variants = {
        "without": {},
        "with": {"SCORER_REASONS": str(args.k), "SCORER_REASONS_METHOD": args.method},
    }
    found: dict[tuple[str, str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="scorer-reasons-") as tmp:
        cluster = Cluster.start()
        try:
            bench = Bench(cluster, Path(tmp))
            bench.setup(args.rows, cases, 20_000)
            load = [os.getloadavg()]
            for attempt in range(args.repeat):
                for case in cases:
                    for variant, extra in variants.items():
                        for rows, table in ((args.rows, case.table), (quarter, case.quarter)):
                            settings = {**extra, "SCORER_FEATURES_TABLE": table}
                            sample = bench.scorer(case, rows, attempt, extra=settings)
                            found.setdefault((case.name, variant, rows), []).append(_cpu(sample))
                            progress(
                                f"[{case.name} {variant} {rows:,}] {sample.wall:.1f}s wall,"
                                f" {_cpu(sample):.2f} CPU-s ({sample.client_cpu:.2f} client,"
                                f" {sample.server_cpu:.2f} server)"
                            )
            load.append(os.getloadavg())
        finally:
            cluster.stop()
    print(
        f"\nload average {load[0]} before, {load[1]} after; medians of {args.repeat};"
        f" K={args.k}, method {args.method}\n"
    )
    print(
        "| case | reasons | CPU µs per row, whole run | CPU µs per row, at the margin |"
        "\n|---|---|---|---|"
    )
    figures: dict[tuple[str, str], tuple[float, float]] = {}
    for case in cases:
        for variant in variants:
            whole = statistics.median(found[case.name, variant, args.rows])
            small = statistics.median(found[case.name, variant, quarter])
            per_row, margin = per_row_and_margin(whole, small, args.rows, quarter)
            figures[case.name, variant] = (per_row, margin)
            print(f"| {case.name} | {variant} | {per_row:,.1f} | {margin:,.1f} |")
    print("\n| case | with ÷ without, whole run | with ÷ without, at the margin |\n|---|---|---|")
    for case in cases:
        (whole_with, margin_with), (whole_without, margin_without) = (
            figures[case.name, "with"],
            figures[case.name, "without"],
        )
        print(
            f"| {case.name} | {whole_with / whole_without:.2f} |"
            f" {margin_with / margin_without:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
