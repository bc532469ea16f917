"""Fixtures for the chart tests: the helm binary, a scratch home, a fake API for NOTES."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helm import Helm, fake_discovery_server, require_tool

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.chart)


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(require_tool("helm"), tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="session")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with fake_discovery_server(tmp_path_factory.mktemp("fake-api")) as path:
        yield path
