"""``python -m benchmarks.chunk_sizes [--rows N] [--sizes 1 100 50000] [--repeat R]
[--before REV --before-rows M]``: what a chunk costs.

The numeric case (``benchmarks.fixtures``) scored end to end at each ``SCORER_CHUNK_ROWS``,
sizes interleaved run by run, medians of R. Per size: the wall time, rows/s end to end, and
rows/s of the scoring step alone (``timings.score`` of the run's summary line: read, predict
and write, without start-up). ``--before REV`` runs that commit's scorer the same way,
interleaved; at sizes under ``SMALL`` on a table of its own of ``--before-rows`` rows (an old
scorer at 1-row chunks may take hours over N).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from benchmarks import fixtures
from benchmarks.cli import Bench, Sample, extract, progress
from benchmarks.cluster import Cluster
from benchmarks.fixtures import NUMERIC

BEFORE_TABLE = fixtures.TABLE + "_before"
SMALL = 100


def _score_seconds(sample: Sample) -> float:
    for line in sample.stdout.splitlines():
        if '"run.succeeded"' in line:
            return float(json.loads(line)["timings"]["score"])
    raise RuntimeError("no run.succeeded line")


def _rows(tree: str, size: int, args: argparse.Namespace) -> int:
    return args.before_rows if tree == "before" and size < SMALL else int(args.rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chunk_sizes", description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000, help="rows scored")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 50_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", metavar="REV", help="also run this commit's scorer")
    parser.add_argument(
        "--before-rows", type=int, default=2_000, help=f"rows it scores at sizes under {SMALL}"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="scorer-chunks-") as tmp:
        workdir = Path(tmp)
        cluster = Cluster.start()
        try:
            before = extract(args.before, workdir) if args.before else None
            bench = Bench(cluster, workdir, before)
            bench.setup(args.rows, [NUMERIC], 20_000)
            trees = ["after"]
            if before is not None:
                fixtures.create_features(bench.db_url, args.before_rows, BEFORE_TABLE)
                trees.append("before")
            load = [os.getloadavg()]
            found: dict[tuple[str, int], list[tuple[float, float]]] = {}
            for attempt in range(args.repeat):
                for tree in trees:
                    for size in args.sizes:
                        rows = _rows(tree, size, args)
                        extra = {"SCORER_CHUNK_ROWS": str(size)}
                        if rows != args.rows:
                            extra["SCORER_FEATURES_TABLE"] = BEFORE_TABLE
                        sample = bench.scorer(
                            NUMERIC, rows, attempt, before=tree == "before", extra=extra
                        )
                        score = _score_seconds(sample)
                        found.setdefault((tree, size), []).append((sample.wall, score))
                        progress(
                            f"[{tree} {rows:,} chunk {size}] {sample.wall:.1f}s, score {score}s"
                        )
            load.append(os.getloadavg())
        finally:
            cluster.stop()
    print(f"\nload average {load[0]} before, {load[1]} after; medians of {args.repeat}\n")
    print("| scorer | rows | SCORER_CHUNK_ROWS | wall s | rows/s end to end | rows/s scoring |")
    print("|---|---|---|---|---|---|")
    for (tree, size), samples in found.items():
        rows = _rows(tree, size, args)
        wall = statistics.median(wall for wall, _ in samples)
        score = statistics.median(score for _, score in samples)
        print(
            f"| {tree} | {rows:,} | {size:,} | {wall:.1f} | {rows / wall:,.0f}"
            f" | {rows / score:,.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
