"""The shadow settings: at most one challenger, unsharded runs only, and the comparison's share."""

from __future__ import annotations

import pytest

from scorer.config import CompareSettings, RunSettings, load
from scorer.errors import ConfigError
from scorer.run.challenger import shadow_run_id
from tests.unit.test_config import VALID, _clean_environment, settings

__all__ = ["_clean_environment"]  # the autouse fixture, imported


def test_a_challenger_by_alias_or_version() -> None:
    assert settings().shadow_selector is None
    assert settings(shadow_alias="challenger").shadow_selector == "alias:challenger"
    assert settings(shadow_version="7").shadow_selector == "version:7"


def test_at_most_one_challenger() -> None:
    with pytest.raises(ConfigError, match="at most one of SCORER_SHADOW_ALIAS, SCORER_SHADOW_VER"):
        settings(shadow_alias="challenger", shadow_version="7")


@pytest.mark.parametrize(
    ("challenger", "named"),
    [
        ({"shadow_alias": "challenger"}, "SCORER_SHADOW_ALIAS"),
        ({"shadow_version": "7"}, "SCORER_SHADOW_VERSION"),
    ],
)
def test_a_sharded_run_refuses_a_shadow_naming_the_setting(
    challenger: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=f"{named} scores a shadow run after an unsharded run"):
        settings(shards="2", shard_index="0", **challenger)


def test_a_bad_challenger_alias_is_refused() -> None:
    with pytest.raises(ConfigError, match="SCORER_SHADOW_ALIAS"):
        settings(shadow_alias="no spaces")


def test_the_top_share_defaults_to_a_tenth_and_lies_in_0_1() -> None:
    assert settings().compare_top_share == 0.1
    url = VALID["database_url"]
    assert (
        load(CompareSettings, database_url=url, compare_top_share="0.25").compare_top_share == 0.25
    )
    for bad in ("0", "1.5", "-0.1"):
        with pytest.raises(ConfigError, match="SCORER_COMPARE_TOP_SHARE"):
            load(CompareSettings, database_url=url, compare_top_share=bad)


def test_the_shadow_settings_copy_marks_the_run() -> None:
    champion = settings(run_id="nightly-1", shadow_alias="challenger")
    shadow = champion.for_shadow("nightly-1", run_id=shadow_run_id("nightly-1"))
    assert (champion.shadow_of, shadow.shadow_of) == (None, "nightly-1")
    assert shadow.run_id == "nightly-1-shadow"
    assert isinstance(shadow, RunSettings)


def test_the_shadow_run_id_stays_a_valid_run_id() -> None:
    long = "j" * 128
    assert shadow_run_id(long) == "j" * 121 + "-shadow"
    assert settings(run_id=shadow_run_id(long)).run_id.endswith("-shadow")
