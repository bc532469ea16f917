"""One size, in one sitting: every case's runs, interleaved (the scorer end to end at N and
N/4 rows, the naive pipeline, an older commit's scorer), then every case's stages; the shard
counts and the levers; and the numeric case in an image. Figures only: ``benchmarks.report``
renders them."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from benchmarks.bench import Bench, to_model_loaded
from benchmarks.children import extract, mem_available_mb
from benchmarks.cluster import Cluster
from benchmarks.config import Config
from benchmarks.fixtures import NUMERIC, Case
from benchmarks.image import measure_image, measure_image_shards
from benchmarks.progress import progress
from benchmarks.types import (
    CaseResult,
    Figure,
    Lever,
    Sample,
    SizeResult,
    StageRow,
    figure,
    from_samples,
    with_baseline,
)


def measure(
    rows: int, workdir: Path, config: Config, naive_rss_per_row: dict[str, float]
) -> SizeResult:
    """Every case for one size, in one sitting (one cluster, one registry).

    ``naive_rss_per_row``: the naive pipeline's peak RSS per row of each case at the sizes
    measured before; a size where it would not fit in memory skips it, and this size's
    figure is added.
    """
    before = extract(config.before, workdir) if config.before else None
    cluster = Cluster.start()
    try:
        bench = Bench(cluster, workdir, before)
        bench.setup(rows, config.cases, config.train_rows)
        load_before = os.getloadavg()
        results: dict[str, CaseResult] = {}
        shards, shard_startup = measure_shards(bench, rows, config) if config.shards else ({}, {})
        levers = None
        if config.levers:
            levers = {
                case.name: measure_levers(bench, case, rows, config.levers, config.repeat)
                for case in config.cases
            }
        if not config.only:
            results = {
                case.name: measure_case(bench, case, rows, config, naive_rss_per_row)
                for case in config.cases
            }
            started = time.perf_counter()
            for name, found in bench.stages(config.cases, rows, config.stage_repeat).items():
                results[name]["stages"] = stage_figures(found["stages"])
                results[name]["explain"] = found["explain"]
            bench.say("stages of every case", started)
        if config.image and NUMERIC in config.cases and not config.only_shards:
            _measure_image(bench, rows, config, results, levers)
        load_after = os.getloadavg()
    finally:
        cluster.stop()
    return {
        "rows": rows,
        "load": [load_before, load_after],
        "cases": results,
        "shards": shards,
        "shard_startup": shard_startup,
        "levers": levers,
        "lever_settings": list(config.levers),
    }


def measure_case(
    bench: Bench, case: Case, rows: int, config: Config, naive_rss_per_row: dict[str, float]
) -> CaseResult:
    """One case at one size: its runs interleaved (the stages come after every case's)."""
    repeat, quick = config.repeat, config.quick
    naive_repeat = config.naive_repeat(rows)
    small = max(rows // 4, 1)
    before = bench.before is not None
    label = f"[{case.name} {rows:,}]"
    estimate = naive_rss_per_row.get(case.name)
    if estimate is not None and estimate * rows * 1.3 > mem_available_mb():
        progress(f"{label} naive skipped: needs ~{estimate * rows:,.0f} MB")
        naive_repeat = 0
    checks = [] if quick else [bench.check(case) for _ in range(repeat)]
    scorer: list[Sample] = []
    older: list[Sample] = []
    quarter: list[Sample] = []
    naive: list[Sample] = []
    for attempt in range(max(repeat, naive_repeat)):  # interleaved: drift hits all alike
        if attempt < repeat:
            scorer.append(bench.scorer(case, rows, attempt))
            note = f"scorer {scorer[-1].wall:.2f}s"
            if before:
                older.append(bench.scorer(case, rows, attempt, before=True))
                note += f", before {older[-1].wall:.2f}s"
            quarter_table = {"SCORER_FEATURES_TABLE": case.quarter}
            quarter.append(bench.scorer(case, small, attempt, extra=quarter_table))
            progress(f"{label} run {attempt + 1}: {note}, N/4 {quarter[-1].wall:.2f}s")
        if attempt < naive_repeat:
            naive.append(bench.naive(case))
            progress(f"{label} naive run {attempt + 1}: {naive[-1].wall:.2f}s")
    if naive:
        naive_rss_per_row[case.name] = max(s.max_rss_mb for s in naive) / rows
    result: CaseResult = {
        "case": case.name,
        "rows": rows,
        "scorer": from_samples("scorer run (end to end)", rows, scorer),
        "scorer_quarter": from_samples("scorer run, N/4 rows", small, quarter),
        "to_model_loaded": statistics.median(to_model_loaded(s) for s in scorer),
        "imports": [] if quick else bench.import_times(case),
    }
    if naive:
        result["naive"] = from_samples(f"naive: read_sql, {case.naive}, to_sql", rows, naive)
    if checks:
        result["startup"] = {key: statistics.median(s[key] for s in checks) for key in checks[0]}
    if before:
        revision = config.before
        result["before"] = from_samples(f"scorer run, before ({revision})", rows, older)
        result["before_to_model_loaded"] = statistics.median(to_model_loaded(s) for s in older)
        if case is NUMERIC:  # the older tree's stages: its own benchmark, numeric only
            result["before_stages"] = stage_figures(
                bench.before_stages(rows, config.stage_repeat), f"before ({revision})"
            )
    return result


def measure_shards(
    bench: Bench, rows: int, config: Config
) -> tuple[dict[str, dict[int, Figure]], dict[str, float]]:
    """The numeric case as 1, 2, 4 ... concurrent shards over the same rows, interleaved; as
    the scorer is, under each ``--lever``, and (with ``--image``) in the image. Also what each
    extra shard pays before its first row: a joining shard's fixed start-up (client CPU)."""
    levers = with_baseline(config.levers)
    samples: dict[tuple[str, int], list[Sample]] = {
        (lever.name, count): [] for lever in levers for count in config.shards
    }
    for attempt in range(config.repeat):
        for lever in levers:
            for count in config.shards:
                found = samples[lever.name, count]
                found.append(bench.sharded(NUMERIC, rows, count, lever.env))
                progress(
                    f"[shards {count} {rows:,} {lever.name}] run {attempt + 1}:"
                    f" {found[-1].wall:.2f}s"
                )
    out: dict[str, dict[int, Figure]] = {}
    for (name, count), found in samples.items():
        out.setdefault(name, {})[count] = from_samples(f"{count} shards", rows, found)
    joins = [bench.joiner_sample(NUMERIC).client_cpu for _ in range(config.repeat)]
    startup = dict.fromkeys(out, statistics.median(joins))
    if config.image:
        image = config.image
        in_image, startup[f"in {image}"] = measure_image_shards(
            image, bench, rows, config.shards, config.repeat
        )
        out[f"in {image}"] = {
            count: from_samples(f"{count} shards in {image}", rows, found)
            for count, found in in_image.items()
        }
    return out, startup


def measure_levers(
    bench: Bench, case: Case, rows: int, levers: tuple[Lever, ...], repeat: int
) -> dict[str, Figure]:
    """The case's end-to-end run as the baseline and under each lever, interleaved."""
    samples: dict[str, list[Sample]] = {lever.name: [] for lever in with_baseline(levers)}
    for attempt in range(repeat):
        for lever in with_baseline(levers):
            sample = bench.scorer(case, rows, attempt, extra=lever.env)
            samples[lever.name].append(sample)
            progress(f"[{case.name} {rows:,} {lever.name}] run {attempt + 1}: {sample.wall:.2f}s")
    return {name: from_samples(name, rows, found) for name, found in samples.items()}


def _measure_image(
    bench: Bench,
    rows: int,
    config: Config,
    results: dict[str, CaseResult],
    levers: dict[str, dict[str, Figure]] | None,
) -> None:
    """The numeric case in ``--image``: into its results, and (with ``--lever``) the levers."""
    image = config.image
    assert image is not None
    found = measure_image(image, bench, rows, config.repeat, config.levers)
    run = from_samples(f"scorer run in {image}", rows, found.run)
    if levers is not None:
        levers[f"{NUMERIC.name} in {image}"] = {
            "baseline": run,
            **{name: from_samples(name, rows, got) for name, got in found.levers.items()},
        }
    if NUMERIC.name in results:
        numeric = results[NUMERIC.name]
        numeric["image"] = image
        numeric["image_startup"] = found.to_model_loaded
        numeric["image_scorer"] = run
        numeric["image_quarter"] = from_samples(
            f"scorer run in {image}, N/4 rows", rows // 4, found.quarter
        )


def stage_figures(rows: list[StageRow], prefix: str = "stage") -> dict[str, Figure]:
    """The stages' samples as one figure per stage, in the order they ran."""
    out: dict[str, Figure] = {}
    for name in dict.fromkeys(row["stage"] for row in rows):
        mine = [row for row in rows if row["stage"] == name]
        out[name] = figure(
            f"{prefix}: {name}",
            mine[0]["rows"],
            [(r["wall"], r["client_cpu"], r["server_cpu"], None) for r in mine],
        )
    return out
