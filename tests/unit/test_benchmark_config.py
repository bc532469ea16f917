"""``python -m benchmarks``'s command line as its frozen configuration: defaults resolved,
contradictions refused with argparse's usage error (exit 2)."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks.cli import parse_config
from benchmarks.config import QUICK_ROWS, QUICK_TRAIN_ROWS, TRAIN_ROWS
from benchmarks.fixtures import CASES, NUMERIC
from benchmarks.types import Lever


def test_quick_measures_one_size_once_every_case() -> None:
    config = parse_config(["--quick", "--rows", "5000"])
    assert config.sizes == (QUICK_ROWS,)
    assert config.cases == tuple(CASES.values())
    assert (config.repeat, config.stage_repeat, config.naive_repeat(QUICK_ROWS)) == (1, 1, 1)
    assert config.train_rows == QUICK_TRAIN_ROWS
    assert not config.only


def test_sizes_ascend_and_naive_repeats_follow_them() -> None:
    config = parse_config(["--rows", "400", "100", "--naive-repeat", "5", "2", "--repeat", "4"])
    assert config.sizes == (100, 400)
    assert (config.naive_repeat(100), config.naive_repeat(400)) == (5, 2)
    assert config.stage_repeat == 4
    assert config.train_rows == TRAIN_ROWS


def test_one_naive_repeat_serves_every_size_and_none_means_repeat() -> None:
    assert parse_config(["--rows", "1", "2", "--naive-repeat", "7"]).naive_repeats == (7, 7)
    assert parse_config(["--rows", "1", "2"]).naive_repeats == (3, 3)


def test_levers_shards_and_only() -> None:
    lever = ["--lever", "t1:SCORER_PREDICT_THREADS=1", "--only-levers"]
    config = parse_config(["--case", "numeric", *lever, "--shards", "1", "2"])
    assert config.cases == (NUMERIC,)
    assert config.levers == (Lever("t1", {"SCORER_PREDICT_THREADS": "1"}),)
    assert config.shards == (1, 2)
    assert config.only


def test_the_configuration_is_frozen() -> None:
    config = parse_config(["--quick"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.repeat = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--only-shards"], "--only-shards needs --shards"),
        (["--only-levers"], "--only-levers needs --lever"),
        (["--shards", "2", "4"], "--shards compares with one shard: include 1"),
        (["--rows", "1", "2", "3", "--naive-repeat", "1", "2"], "--naive-repeat takes one"),
        (["--lever", "threads1=1"], "NAME:SCORER_VAR=VALUE"),
        (["--lever", "baseline:SCORER_PREDICT_THREADS=1"], "NAME:SCORER_VAR=VALUE"),
        (["--lever", "t:PREDICT_THREADS=1"], "is not SCORER_VAR=VALUE"),
    ],
)
def test_a_contradiction_is_a_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_config(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
