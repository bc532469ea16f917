"""CI guard: the ``--quick`` benchmark, asserting ratios only (never an absolute time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import REPO

pytestmark = pytest.mark.benchmark


def test_quick_benchmark_guard(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (figures,) = json.loads(out.read_text())
    ratios = figures["ratios"]
    # The scorer must not be slower than the naive pipeline at the same size.
    assert ratios["scorer_over_naive"] > 1.0, result.stdout
    # Memory must not grow with N: 4x the rows, at most 1.5x the peak RSS.
    assert ratios["rss_n_over_rss_quarter"] <= 1.5, result.stdout
