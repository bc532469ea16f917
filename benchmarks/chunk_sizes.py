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
from dataclasses import dataclass
from pathlib import Path

from benchmarks import fixtures
from benchmarks.bench import Bench
from benchmarks.children import extract
from benchmarks.cluster import Cluster
from benchmarks.config import TRAIN_ROWS
from benchmarks.fixtures import NUMERIC
from benchmarks.progress import progress
from benchmarks.types import Sample

BEFORE_TABLE = fixtures.TABLE + "_before"
SMALL = 100


@dataclass(frozen=True)
class ChunkSizes:
    """The command line: rows, chunk sizes, runs per size, and the older commit if any."""

    rows: int
    sizes: tuple[int, ...]
    repeat: int
    before: str | None
    before_rows: int

    def rows_scored(self, tree: str, size: int) -> int:
        """Rows the ``tree`` (after or before) scores at chunk ``size``."""
        return self.before_rows if tree == "before" and size < SMALL else self.rows


def _score_seconds(sample: Sample) -> float:
    for line in sample.stdout.splitlines():
        if '"run.succeeded"' in line:
            return float(json.loads(line)["timings"]["score"])
    raise RuntimeError("no run.succeeded line")


def parse_config(argv: list[str] | None = None) -> ChunkSizes:
    """The command line as a ``ChunkSizes``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chunk_sizes", description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000, help="rows scored")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 50_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", metavar="REV", help="also run this commit's scorer")
    parser.add_argument(
        "--before-rows", type=int, default=2_000, help=f"rows it scores at sizes under {SMALL}"
    )
    args = parser.parse_args(argv)
    return ChunkSizes(args.rows, tuple(args.sizes), args.repeat, args.before, args.before_rows)


def main(argv: list[str] | None = None) -> int:
    """Score the numeric case at every chunk size, interleaved; print the medians."""
    config = parse_config(argv)
    with tempfile.TemporaryDirectory(prefix="scorer-chunks-") as tmp:
        workdir = Path(tmp)
        cluster = Cluster.start()
        try:
            before = extract(config.before, workdir) if config.before else None
            bench = Bench(cluster, workdir, before)
            bench.setup(config.rows, [NUMERIC], TRAIN_ROWS)
            trees = ["after"]
            if before is not None:
                fixtures.create_features(bench.db_url, config.before_rows, BEFORE_TABLE)
                trees.append("before")
            load = [os.getloadavg()]
            found: dict[tuple[str, int], list[tuple[float, float]]] = {}
            for attempt in range(config.repeat):
                for tree in trees:
                    for size in config.sizes:
                        rows = config.rows_scored(tree, size)
                        extra = {"SCORER_CHUNK_ROWS": str(size)}
                        if rows != config.rows:
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
    print(f"\nload average {load[0]} before, {load[1]} after; medians of {config.repeat}\n")
    print("| scorer | rows | SCORER_CHUNK_ROWS | wall s | rows/s end to end | rows/s scoring |")
    print("|---|---|---|---|---|---|")
    for (tree, size), samples in found.items():
        rows = config.rows_scored(tree, size)
        wall = statistics.median(wall for wall, _ in samples)
        score = statistics.median(score for _, score in samples)
        print(
            f"| {tree} | {rows:,} | {size:,} | {wall:.1f} | {rows / wall:,.0f}"
            f" | {rows / score:,.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
