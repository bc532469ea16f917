"""What both e2e installs put in their namespace before ``helm install``."""

from __future__ import annotations

from collections.abc import Callable

from tests import services

DATABASE_SECRET = "scorer-database"
"""The chart's ``database.existingSecret``: key ``url``, the test database as pods reach it."""


def create_database_secret(
    kubectl: Callable[..., object], namespace: str, database_url: str, host: str
) -> None:
    """The Secret with the URL of ``database_url``'s database on ``host`` (the kind gateway)."""
    database = database_url.rsplit("/", 1)[1]
    pod_url = services.with_database(services.admin_url(), database, host=host)
    kubectl(
        "create",
        "secret",
        "generic",
        DATABASE_SECRET,
        "-n",
        namespace,
        f"--from-literal=url={pod_url}",
    )
