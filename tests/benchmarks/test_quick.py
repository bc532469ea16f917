"""CI guard: the ``--quick`` benchmark, asserting ratios only (never an absolute time).

One run of every case (the numeric table and the telco table with text ids, categories and
snapshots, scored by an xgboost categorical model and an sklearn pipeline), each against
the naive pipeline on the same rows in the same run. Timing goals are in the printed
figures (``python -m benchmarks``), not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import REPO

pytestmark = pytest.mark.benchmark

CASES = ("numeric", "telco-xgboost", "telco-sklearn")


def benchmark(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m benchmarks ARGS`` in the checkout, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("benchmark") / "quick.json"
    result = benchmark("--quick", "--json", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (figures,) = json.loads(Path(out).read_text())
    return figures, result.stdout


@pytest.mark.parametrize("case", CASES)
def test_scorer_is_faster_than_naive(quick: tuple[dict[str, Any], str], case: str) -> None:
    figures, stdout = quick
    ratios = figures["cases"][case]["ratios"]
    assert ratios["scorer_over_naive"] > 1.0, stdout


@pytest.mark.parametrize("case", CASES)
def test_memory_is_flat(quick: tuple[dict[str, Any], str], case: str) -> None:
    figures, stdout = quick
    # 4x the rows, at most 1.5x the peak RSS.
    assert figures["cases"][case]["ratios"]["rss_n_over_rss_quarter"] <= 1.5, stdout


def test_every_case_scored_the_rows_and_measured_its_stages(
    quick: tuple[dict[str, Any], str],
) -> None:
    figures, _ = quick
    assert set(figures["cases"]) == set(CASES)
    for case in CASES:
        result = figures["cases"][case]
        assert result["scorer"]["rows"] == figures["rows"]
        assert set(result["stages"]) >= {"read-raw", "predict-model", "write-narrow", "parse"}
        # The quality gate's evidence measured on its own (parse with and without it).
        assert "gate_evidence_share_of_e2e_cpu" in result["ratios"]
    for case in ("telco-xgboost", "telco-sklearn"):  # one snapshot read through its index
        assert "telco_snapshot_date_idx" in figures["cases"][case]["explain"]


def test_a_lever_is_measured_against_the_baseline_and_on_shards(tmp_path: Path) -> None:
    """``--lever`` runs the case and the shard counts as they are and with its settings."""
    out = tmp_path / "levers.json"
    lever = "threads1:SCORER_PREDICT_THREADS=1"
    result = benchmark(
        "--quick",
        "--case",
        "numeric",
        "--lever",
        lever,
        "--only-levers",
        "--shards",
        "1",
        "2",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (figures,) = json.loads(out.read_text())
    assert figures["cases"] == {}  # --only-levers: nothing else
    levers = figures["levers"]["numeric"]
    assert set(levers) == {"baseline", "threads1"}
    assert {found["rows"] for found in levers.values()} == {figures["rows"]}
    assert figures["lever_settings"] == {"threads1": {"SCORER_PREDICT_THREADS": "1"}}
    assert set(figures["shards"]) == {"baseline", "threads1"}
    assert set(figures["shards"]["threads1"]) == {"1", "2"}
    # A joining shard's fixed start-up (it loads the run's copy of the model, and the
    # benchmark refuses one that did not), taken out in the last column.
    assert set(figures["shard_startup"]) == {"baseline", "threads1"}
    assert all(seconds > 0 for seconds in figures["shard_startup"].values())
    assert "start-up CPU s per joining shard" in result.stdout
    assert "vs 1 shard, extra start-ups aside" in result.stdout
    assert "| numeric | threads1 (SCORER_PREDICT_THREADS=1) |" in result.stdout


def test_a_malformed_lever_is_refused() -> None:
    result = benchmark("--quick", "--lever", "threads1=1")
    assert result.returncode == 2
    assert "NAME:SCORER_VAR=VALUE" in result.stderr
