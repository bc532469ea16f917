"""One size's figures as markdown (per case a table of the medians, its start-up and its ratios;
the shards; the levers) and as JSON, with the ratios the CI guard checks."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict
from typing import Any

from benchmarks import fixtures
from benchmarks.fixtures import CASES
from benchmarks.types import BASELINE, CaseResult, Figure, Lever, SizeResult

SHAPES = {
    "numeric": "bench.features: bigint id, 20 float8 features; no snapshot column",
    "telco": (
        "bench.telco: text ids like 7590-VHVEG, 3 categorical text + 17 numeric (2 integer, "
        "15 float8) features, 3 snapshots in snapshot_date (indexed; primary key "
        "(customer_id, snapshot_date)); the run scores the newest, so the table holds 3 times N"
    ),
}
MODELS = {
    "numeric": f"XGBoost booster, {fixtures.TREES} trees depth {fixtures.DEPTH}",
    "telco-xgboost": (
        f"XGBoost booster with enable_categorical, {fixtures.TREES} trees depth "
        f"{fixtures.DEPTH}; signature: categories as string"
    ),
    "telco-sklearn": (
        "scikit-learn Pipeline: ColumnTransformer(OneHotEncoder, StandardScaler) + "
        "LogisticRegression (mlflow.sklearn)"
    ),
}
BARE = ("read-raw", "predict-model", "write-narrow")
"""The least each step costs: plain COPY out, the library's predict, narrow COPY in."""
OWN = ("read-parse", "predict-scorer", "write-scorer")
"""The scorer's own steps: its reader, its predict call, its partition write (key, attach)."""


def per_row_and_margin(whole: float, small: float, rows: int, quarter: int) -> tuple[float, float]:
    """µs per row of a run over ``rows`` costing ``whole``, and at the margin against a run over
    ``quarter`` rows costing ``small`` (start-up, the same in both, cancels out)."""
    return whole / rows * 1e6, (whole - small) / (rows - quarter) * 1e6


def ratios(result: CaseResult) -> dict[str, float]:
    """The ratios the budgets name, and the CI guard checks."""
    scorer = result["scorer"]
    stages = result["stages"]
    startup = result["to_model_loaded"]
    bare_wall = _sum(stages, BARE, "wall")
    out = {
        "rss_n_over_rss_quarter": _rss(scorer) / _rss(result["scorer_quarter"]),
        "e2e_wall_over_bare_stage_wall": scorer.wall / bare_wall,
        "e2e_wall_minus_startup_over_bare_stage_wall": (scorer.wall - startup) / bare_wall,
        "e2e_wall_over_own_stage_wall": scorer.wall / _sum(stages, OWN, "wall"),
        "e2e_cpu_over_bare_stage_cpu": scorer.cpu_per_m / _sum(stages, BARE, "cpu_per_m"),
        "e2e_cpu_over_own_stage_cpu": scorer.cpu_per_m / _sum(stages, OWN, "cpu_per_m"),
        "e2e_wall_over_cpu_per_core": _wall_over_cpu_per_core(scorer),
    }
    if "parse" in stages and "parse-no-evidence" in stages:
        # What the quality gate's evidence (NULL/empty counts per input) adds to a whole run.
        evidence = stages["parse"].cpu_per_m - stages["parse-no-evidence"].cpu_per_m
        out["gate_evidence_cpu_per_m"] = evidence
        out["gate_evidence_share_of_e2e_cpu"] = evidence / scorer.cpu_per_m
    if "naive" in result:
        out["scorer_over_naive"] = scorer.rows_per_s / result["naive"].rows_per_s
    if "startup" in result:
        startup_cpu_per_m = result["startup"]["check_cpu"] * 1e6 / scorer.rows
        out["e2e_cpu_minus_startup_over_own_stage_cpu"] = (
            scorer.cpu_per_m - startup_cpu_per_m
        ) / _sum(stages, OWN, "cpu_per_m")
    if "before" in result:
        before = result["before"]
        out["after_over_before_rows_per_s"] = scorer.rows_per_s / before.rows_per_s
        out["after_over_before_cpu"] = scorer.cpu_per_m / before.cpu_per_m
    if "image_scorer" in result:
        image = result["image_scorer"]
        out["image_rss_n_over_rss_quarter"] = _rss(image) / _rss(result["image_quarter"])
        if "naive" in result:
            out["image_over_naive"] = image.rows_per_s / result["naive"].rows_per_s
    return out


def _sum(stages: dict[str, Figure], names: tuple[str, ...], attribute: str) -> float:
    return sum(float(getattr(stages[name], attribute)) for name in names)


def _rss(f: Figure) -> float:
    assert f.max_rss_mb is not None
    return f.max_rss_mb


def _wall_over_cpu_per_core(f: Figure) -> float:
    return f.wall / (f.cpu_per_m * f.rows / 1e6 / (os.cpu_count() or 1))


def _row(f: Figure) -> str:
    rss = f"{f.max_rss_mb:.0f}" if f.max_rss_mb else "—"
    return (
        f"| {f.name} | {f.runs} | {f.wall:.2f} | {f.rows_per_s:,.0f} | {rss} | "
        f"{f.client_cpu_per_m:.2f} + {f.server_cpu_per_m:.2f} = {f.cpu_per_m:.2f} |"
    )


def report_case(result: CaseResult) -> list[str]:
    """One case's table of medians, its start-up and its ratios."""
    case = CASES[result["case"]]
    lines = [
        f"### {case.name}: {MODELS[case.name]}",
        "",
        f"Table: {SHAPES[case.shape]}. Feature query plan: `{result['explain']}`.",
        "",
        "| measurement | runs | wall s | rows/s | peak RSS MB "
        "| CPU s per 1M rows: client + server = total |",
        "|---|---|---|---|---|---|",
    ]
    runs = (
        result.get("scorer"),
        result.get("before"),
        result.get("scorer_quarter"),
        result.get("image_scorer"),
        result.get("image_quarter"),
        result.get("naive"),
    )
    figures = [f for f in runs if f is not None]
    figures += [*result["stages"].values(), *result.get("before_stages", {}).values()]
    lines += [_row(f) for f in figures]
    lines += [
        "",
        f"process start → model loaded (in the runs, median): {result['to_model_loaded']:.2f}s",
    ]
    if "before_to_model_loaded" in result:
        lines[-1] += f"; before: {result['before_to_model_loaded']:.2f}s"
    if "startup" in result:
        s = result["startup"]
        lines.append(
            f"`scorer check` (median): {s['check_wall']:.2f}s wall, {s['check_cpu']:.2f}s CPU, "
            f"{s['check_rss_mb']:.0f} MB"
        )
    if "image_startup" in result:
        lines.append(
            f"in image {result.get('image')}: start → model loaded {result['image_startup']:.2f}s"
        )
    if result["imports"]:
        lines.append(
            "import time (cumulative, -X importtime): "
            + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in result["imports"])
        )
    lines += ["", *[f"- {name}: {value:.2f}" for name, value in ratios(result).items()], ""]
    return lines


def report_shards(
    rows: int, figures: dict[str, dict[int, Figure]], startup: dict[str, float]
) -> str:
    """The shards table: CPU per million rows, client + server, against one shard; and the
    same with each extra (joining) shard's fixed start-up taken out."""
    lines = [
        f"shards over the same {rows:,} rows (numeric case), concurrent processes on this machine",
        "(N shards: each N-th of the CPUs, as pods requesting that share; 1 shard: all of them)",
        "",
        "| lever | shards | wall s | client CPU s per 1M | server CPU s per 1M"
        " | CPU s per 1M rows | vs 1 shard | start-up CPU s per joining shard"
        " | vs 1 shard, extra start-ups aside |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, counts in figures.items():
        one = counts[min(counts)]
        for count, found in sorted(counts.items()):
            extra = (count - min(counts)) * startup[name] * 1e6 / rows
            lines.append(
                f"| {name} | {count} | {found.wall:.2f} | {found.client_cpu_per_m:.2f}"
                f" | {found.server_cpu_per_m:.2f} | {found.cpu_per_m:.2f}"
                f" | {found.cpu_per_m / one.cpu_per_m - 1:+.1%} | {startup[name]:.2f}"
                f" | {(found.cpu_per_m - extra) / one.cpu_per_m - 1:+.1%} |"
            )
    return "\n".join(lines)


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


def report(result: SizeResult) -> str:
    """Markdown: per case, a table of the medians, then the ratios; the shards; the levers."""
    load = result["load"]
    lines = [
        f"## {result['rows']:,} rows scored — {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, load average {load[0][0]:.1f} before "
        f"/ {load[1][0]:.1f} after",
        "",
    ]
    for case_result in result["cases"].values():
        lines += report_case(case_result)
    if result["shards"]:
        lines += ["", report_shards(result["rows"], result["shards"], result["shard_startup"])]
    if result["levers"]:
        lines += ["", report_levers(result["rows"], result["levers"], result["lever_settings"])]
    return "\n".join(lines)


def jsonable(result: SizeResult) -> dict[str, Any]:
    """The size's figures for ``--json``: figures as objects, each case with its ratios."""
    cases: dict[str, Any] = {}
    for name, case_result in result["cases"].items():
        out: dict[str, Any] = {
            key: asdict(value) if isinstance(value, Figure) else value
            for key, value in case_result.items()
        }
        for key in ("stages", "before_stages"):
            if key in out:
                out[key] = {stage: asdict(f) for stage, f in out[key].items()}
        out["ratios"] = ratios(case_result)
        cases[name] = out
    shards = {
        name: {str(count): asdict(found) for count, found in counts.items()}
        for name, counts in result["shards"].items()
    }
    levers = {
        case: {name: asdict(found) for name, found in figures.items()}
        for case, figures in (result["levers"] or {}).items()
    }
    settings = {lever.name: lever.env for lever in result["lever_settings"]}
    return {
        **result,
        "cases": cases,
        "shards": shards,
        "levers": levers,
        "lever_settings": settings,
    }
