"""``python -m benchmarks --shards ... --image``: the shards as concurrent containers of the
image, as an Indexed Job's pods run them, against the registry over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.services import REPO


def test_shards_run_as_containers_of_the_image(image: str, tmp_path: Path) -> None:
    out = tmp_path / "shards.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--case", "numeric", "--shards", "1",
         "2", "--only-shards", "--image", image, "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (figures,) = json.loads(out.read_text())
    in_image = f"in {image}"
    assert set(figures["shards"]) == {"baseline", in_image}
    for count in ("1", "2"):
        found = figures["shards"][in_image][count]
        assert found["rows"] == figures["rows"]
        assert found["client_cpu_per_m"] > 0
    assert figures["shard_startup"][in_image] > 0
    assert f"| {in_image} | 2 |" in result.stdout
