"""How many CPUs the job may use, to size the predict thread pool.

``os.cpu_count()`` is the node's count; in a container with a CPU limit that many threads
would be throttled. The answer is the affinity mask, capped by the cgroup's CPU quota
(cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), rounded up.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def available(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may use: affinity, capped by the cgroup quota, at least 1."""
    count = len(os.sched_getaffinity(0))
    quota = _quota(cgroup_root)
    return count if quota is None else max(1, min(count, math.ceil(quota)))


def _quota(root: Path) -> float | None:
    """The cgroup's CPU quota in CPUs, or None when unlimited or unknown."""
    try:
        if (root / "cpu.max").exists():
            limit, period = (root / "cpu.max").read_text().split()
        else:
            limit = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        if limit in {"max", "-1"}:
            return None
        return int(limit) / int(period)
    except (OSError, ValueError):
        return None
