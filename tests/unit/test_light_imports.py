"""The root ``conftest.py`` and the plugins it registers load no heavy library: collecting
and running a unit test never imports MLflow, a model library or the Kubernetes client."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("mlflow", "xgboost", "lightgbm", "catboost", "sklearn", "kubernetes")
PROBE = f"""
import importlib, sys
import tests.conftest as conftest
for plugin in conftest.pytest_plugins:
    importlib.import_module(plugin)
print(",".join(name for name in {HEAVY!r} if name in sys.modules))
"""


def test_the_root_conftest_and_its_plugins_import_nothing_heavy() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "", f"loaded by tests/conftest.py: {result.stdout.strip()}"
