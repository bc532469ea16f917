"""Progress lines on stdout, each with the time since the benchmark started."""

from __future__ import annotations

import time

_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """A progress line on stdout, with the time since the benchmark started."""
    print(f"# [{time.perf_counter() - _STARTED:6.0f}s] {message}", flush=True)
