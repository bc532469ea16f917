"""What one ``python -m benchmarks`` invocation measures: the command line's choices, frozen,
with every default resolved (``benchmarks.cli`` builds it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.fixtures import Case
from benchmarks.types import Lever

QUICK_ROWS = 100_000
QUICK_TRAIN_ROWS = 4_000
TRAIN_ROWS = 20_000


@dataclass(frozen=True)
class Config:
    """The sizes, cases and extras to measure, and how often."""

    sizes: tuple[int, ...]
    """Rows scored, ascending; one sitting (cluster, registry) per size."""
    cases: tuple[Case, ...]
    repeat: int
    """Runs per measurement."""
    stage_repeat: int
    naive_repeats: tuple[int, ...]
    """Runs of the naive pipeline, one per size (in the order of ``sizes``)."""
    quick: bool = False
    """Models trained on fewer rows; no ``scorer check`` runs and no import profile."""
    before: str | None = None
    """A commit whose scorer runs too, interleaved."""
    json: Path | None = None
    shards: tuple[int, ...] = ()
    """Shard counts of the numeric case (1 among them), or none."""
    only_shards: bool = False
    levers: tuple[Lever, ...] = ()
    only_levers: bool = False
    image: str | None = None
    """An image to run the scorer in too (docker)."""

    @property
    def only(self) -> bool:
        """Measure the shards or levers asked for and nothing else."""
        return self.only_shards or self.only_levers

    @property
    def train_rows(self) -> int:
        """Rows every model is trained on."""
        return QUICK_TRAIN_ROWS if self.quick else TRAIN_ROWS

    def naive_repeat(self, rows: int) -> int:
        """Runs of the naive pipeline at ``rows`` rows."""
        return dict(zip(self.sizes, self.naive_repeats, strict=True)).get(rows, self.repeat)
