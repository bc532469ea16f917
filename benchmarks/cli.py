"""``python -m benchmarks [--rows N ...] [--quick] [--before REV] [--case ...] [--json PATH]``.

Sets up a throwaway PostgreSQL cluster and a sqlite MLflow registry per size, then measures
each case (a table shape and the model scoring it: ``numeric``, ``telco-xgboost``,
``telco-sklearn``; see ``benchmarks.fixtures``), each figure the median of R runs in child
processes: the scorer's ``run`` end to end at N rows scored and at N/4 (memory flatness),
the naive pipeline on the same rows, each stage alone (``benchmarks.stages``) and the
start-up. ``--before REV`` also runs the scorer of an older commit on the numeric case,
interleaved with today's (its ``git archive``, imported from a temporary directory), and its
own read and write stages; ``--image`` the scorer in that image (numeric case).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.config import QUICK_ROWS, QUICK_TRAIN_ROWS, Config
from benchmarks.fixtures import CASES
from benchmarks.measurement import measure
from benchmarks.report import jsonable, report
from benchmarks.types import Lever


def _lever(text: str) -> Lever:
    try:
        return Lever.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000], help="rows scored")
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs per measurement (3; --quick: 1)"
    )
    parser.add_argument(
        "--naive-repeat",
        type=int,
        nargs="+",
        default=None,
        help="naive runs (default --repeat); one value, or one per size of --rows (ascending)",
    )
    parser.add_argument(
        "--stage-repeat", type=int, default=None, help="stage runs (default --repeat)"
    )
    parser.add_argument(
        "--case", nargs="+", default=list(CASES), choices=list(CASES), help="cases to measure"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_ROWS:,} rows, models trained on {QUICK_TRAIN_ROWS:,}, no import profile",
    )
    parser.add_argument(
        "--before", metavar="REV", help="also run this commit's scorer, interleaved (every case)"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--shards",
        type=int,
        nargs="+",
        default=None,
        help="also run the numeric case as this many concurrent shards (e.g. 1 2 4)",
    )
    parser.add_argument(
        "--only-shards", action="store_true", help="with --shards: measure nothing else"
    )
    parser.add_argument(
        "--lever",
        dest="levers",
        action="append",
        default=[],
        type=_lever,
        metavar="NAME:SCORER_VAR=VALUE[,...]",
        help="also run each case (and --shards) with these settings, against the scorer as"
        " it is, interleaved (e.g. threads1:SCORER_PREDICT_THREADS=1); repeatable",
    )
    parser.add_argument(
        "--only-levers", action="store_true", help="with --lever: measure nothing else"
    )
    parser.add_argument(
        "--image", help="also measure the scorer in this image (e.g. scorer:dev; needs docker)"
    )
    return parser


def parse_config(argv: list[str] | None = None) -> Config:
    """The command line as a ``Config``; exit 2 (argparse's usage error) on a contradiction."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.only_shards and not args.shards:
        parser.error("--only-shards needs --shards")
    if args.only_levers and not args.levers:
        parser.error("--only-levers needs --lever")
    if args.shards and 1 not in args.shards:
        parser.error("--shards compares with one shard: include 1")
    repeat = args.repeat or (1 if args.quick else 3)
    sizes = (QUICK_ROWS,) if args.quick else tuple(sorted(args.rows))
    naive = args.naive_repeat or []
    if len(naive) not in (0, 1, len(sizes)):
        parser.error("--naive-repeat takes one value or one per size")
    per_size = naive * len(sizes) if len(naive) == 1 else naive or [repeat] * len(sizes)
    return Config(
        sizes=sizes,
        cases=tuple(CASES[name] for name in args.case),
        repeat=repeat,
        stage_repeat=args.stage_repeat or repeat,
        naive_repeats=tuple(per_size),
        quick=args.quick,
        before=args.before,
        json=args.json,
        shards=tuple(args.shards or ()),
        only_shards=args.only_shards,
        levers=tuple(args.levers),
        only_levers=args.only_levers,
        image=args.image,
    )


def main(argv: list[str] | None = None) -> int:
    """Measure every size in turn; print its report, and write the JSON after each size."""
    config = parse_config(argv)
    naive_rss_per_row: dict[str, float] = {}
    results = []
    for rows in config.sizes:
        with tempfile.TemporaryDirectory(prefix="scorer-bench-") as workdir:
            result = measure(rows, Path(workdir), config, naive_rss_per_row)
        print(report(result), flush=True)
        results.append(jsonable(result))
        if config.json:  # after every size: a later failure keeps the earlier figures
            config.json.write_text(json.dumps(results, indent=2))
    return 0
