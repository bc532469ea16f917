"""``python -m benchmarks``: the scorer against the naive pipeline and the per-stage limits.

One sitting, one throwaway PostgreSQL cluster, one local (sqlite) MLflow registry; every
figure is the median of repeated runs measured in child processes (wall time, peak RSS,
CPU of the client and of the PostgreSQL server process tree).

Layers, each importing only those below it (``[tool.importlinter]`` in ``pyproject.toml``):

- command lines: ``cli`` (``python -m benchmarks``), ``chunk_sizes``, ``key_build``,
  ``dtype_parse``, ``feature_drift``, ``reasons``, ``drift_cost``;
- ``report``: markdown and JSON of one size's figures, and their ratios;
- ``measurement``: one size in one sitting (cases, stages, shards, levers, the image);
- ``image``: the scorer's runs in a container image;
- ``bench``: the sitting's harness (cluster, registry, tables, the runs as children);
  ``config``: the frozen configuration of ``python -m benchmarks``;
- ``children``: measured child processes; ``stages``, ``naive`` and ``no_drift``: the child
  programs;
- ``cluster``, ``fixtures`` (tables, models, cases), ``progress``;
- ``types``: samples, figures, levers, results.
"""
