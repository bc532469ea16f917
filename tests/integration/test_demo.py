"""The README's first set-up command: the demo runs the real scorer on an embedded default."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support import services


def test_the_demo_scores_the_newest_snapshot_and_leaves_nothing_behind(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scorer", "demo", "--rows", "2000"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(services.REPO)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "status=succeeded" in out
    assert "rows_scored=2000" in out  # the newest of three snapshots, not all of them
    top = out.split("latest_predictions, top 5 by score:\n", 1)[1].splitlines()[1:6]
    assert all(re.match(r"^\d{4}-[A-Z]{5} 0\.\d{4} ", line) for line in top), top
    assert list(tmp_path.iterdir()) == []  # no ./mlruns, no database left in the directory
