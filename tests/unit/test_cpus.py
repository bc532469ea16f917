"""Sizing the predict threads by the cgroup CPU quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scorer.io.cpus import available

ALL = len(os.sched_getaffinity(0))


def v2(root: Path, content: str) -> Path:
    (root / "cpu.max").write_text(content)
    return root


def v1(root: Path, quota: str, period: str = "100000") -> Path:
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(period + "\n")
    return root


def test_no_cgroup_files_means_the_affinity_mask(tmp_path: Path) -> None:
    assert available(tmp_path) == ALL


@pytest.mark.parametrize(("content", "expected"), [("max 100000\n", ALL), ("50000 100000\n", 1)])
def test_cgroup_v2_quota_caps_and_rounds_up(tmp_path: Path, content: str, expected: int) -> None:
    assert available(v2(tmp_path, content)) == expected


@pytest.mark.parametrize(("quota", "expected"), [("-1", ALL), ("100000", 1), ("150000", 2)])
def test_cgroup_v1_quota_caps_and_rounds_up(tmp_path: Path, quota: str, expected: int) -> None:
    assert available(v1(tmp_path, quota)) == min(expected, ALL)


def test_a_quota_above_the_affinity_mask_changes_nothing(tmp_path: Path) -> None:
    assert available(v2(tmp_path, f"{(ALL + 3) * 100000} 100000")) == ALL


def test_unreadable_quota_is_ignored(tmp_path: Path) -> None:
    assert available(v2(tmp_path, "garbage")) == ALL
