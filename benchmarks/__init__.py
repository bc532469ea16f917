"""``python -m benchmarks``: the scorer against the naive pipeline and the per-stage limits.

One sitting, one throwaway PostgreSQL cluster, one local (sqlite) MLflow registry; every
figure is the median of repeated runs measured in child processes (wall time, peak RSS,
CPU of the client and of the PostgreSQL server process tree).
"""
