# scorer batch job image.
#
# Two ways to build, one Dockerfile:
#   * Online (registry and PyPI reachable):  docker build -t scorer .
#     FROM pulls python:3.11-slim-bookworm and pip installs from PyPI.
#   * Offline (no registry; PyPI reachable from the host only):  bash hack/image.sh
#     hack/python-base-image.sh makes a local image tagged python:3.11-slim-bookworm (debootstrap
#     minbase + Debian's python3.11, cached), hack/wheels.sh downloads cp311 manylinux wheels
#     of every runtime dependency (and setuptools, the build backend) into ./wheels/, and this
#     file then installs with `pip --no-index --find-links wheels` (taken whenever ./wheels/
#     holds wheels, pinned by wheels/constraints.txt). Nothing is pulled, nothing is fetched.
# Build args: VERSION, REVISION, SOURCE (OCI labels); EXTRA_PACKAGES, the model's own libraries
# (space-separated requirement specifiers, e.g. "scikit-learn==1.9.1 lightgbm"): empty for the
# lean default (xgboost only); `hack/image.sh --extra "..."` or `--requirements FILE` sets it and
# downloads their wheels. Run it with a read-only root filesystem and a writable /tmp
# (tmpfs / emptyDir): HOME, caches and temporary files all live in /tmp.

# The runtime base, and the builder's: the same base, optionally with binutils and a C compiler
# preinstalled (hack/python-base-image.sh makes such an image for offline builds; otherwise
# apt-get adds them). The compiler builds the package's C (scorer._native: see setup.py).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG BUILDER_IMAGE=python:3.11-slim-bookworm

FROM ${BUILDER_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN { command -v strip && command -v gcc; } >/dev/null 2>&1 || { \
        apt-get update -qq && apt-get install -y -qq --no-install-recommends binutils gcc libc6-dev \
        && rm -rf /var/lib/apt/lists/*; }
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first (their own layer, cached until pyproject.toml or wheels/ change).
# `wheel[s]` is a glob so the COPY also works when ./wheels/ does not exist (online path);
# pyproject.toml rides along only so the COPY always has a source.
COPY pyproject.toml /src/
COPY pyproject.toml wheel[s] /src/wheels/
ARG EXTRA_PACKAGES=""
RUN set -eu; \
    python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt; \
    set -f; for package in $EXTRA_PACKAGES; do echo "$package" >> /tmp/requirements.txt; done; set +f; \
    if ls wheels/*.whl >/dev/null 2>&1; then \
        echo "installing from ./wheels (offline)"; \
        pip install --no-index --find-links wheels -c wheels/constraints.txt -r /tmp/requirements.txt; \
    else \
        echo "installing from the package index"; \
        pip install -r /tmp/requirements.txt; \
    fi

# Trimmed so the image stays under 400 MB (each cut is exercised by tests/image, which imports
# and runs the image against real services); nothing here is used by the job:
#  * google-auth and its crypto stack (cryptography, cffi, pyasn1*, rsa; ~20 MB): pulled by
#    databricks-sdk (an mlflow-skinny dependency) for Google-Cloud auth to Databricks only;
#    neither `import mlflow` nor the registry client, pyfunc or the xgboost flavor loads them.
#    (databricks-sdk itself stays: `import mlflow` looks up the `databricks` namespace.)
#  * test suites shipped inside wheels (pandas/tests alone is ~46 MB), C/Cython sources,
#    headers, type stubs, and numpy.distutils (a build tool).
#  * scipy (~60 MB of it): xgboost imports scipy.sparse (its data types) and, through
#    xgboost.sklearn, scipy.special at import time, so scipy stays, reduced to that import
#    closure: _lib, sparse (without sparse.linalg and sparse.csgraph), special. Removed:
#    linalg, fft, optimize, stats, signal, spatial, io, interpolate, integrate, ndimage, ...
#    The image therefore has no scipy.linalg; nothing in the job (xgboost Booster load and
#    predict, MLflow's xgboost/pyfunc flavors, the reasons' sparse product in
#    scorer.model.tree_paths) uses it.
#  * symbol tables of the extension modules (strip --strip-unneeded, ~18 MB). The libraries
#    vendored by auditwheel (*.libs/) are left alone: patchelf-edited ELF files break if stripped.
#    An identical libgfortran vendored by both numpy and scipy is kept once (symlink).
#  * pip and setuptools of the venv itself (removed below; the runtime installs nothing).
# With EXTRA_PACKAGES the scipy cut is skipped (scikit-learn, lightgbm and most model libraries
# import linalg, optimize, stats, ...); every other cut applies to the extras too.
RUN set -eu; \
    pip uninstall -y -q google-auth cryptography cffi pycparser pyasn1 pyasn1-modules rsa \
        2>&1 | grep -v "not installed" || true; \
    sp=/opt/venv/lib/python3.11/site-packages; \
    find "$sp" -type d -name tests -prune -exec rm -rf {} +; \
    find "$sp" -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.c' \
        -o -name '*.cpp' -o -name '*.h' -o -name '*.hpp' -o -name '*.pyi' \) -delete; \
    rm -rf "$sp/numpy/distutils" "$sp/numpy/_core/include"; \
    if [ -z "$EXTRA_PACKAGES" ]; then \
        (cd "$sp/scipy" && rm -rf cluster constants datasets differentiate fft fftpack integrate \
            interpolate io linalg misc ndimage odr optimize signal spatial stats \
            special/_precompute sparse/linalg sparse/csgraph); \
    fi; \
    find "$sp" -name '*.so*' -type f -not -path '*.libs/*' -exec strip --strip-unneeded {} +; \
    for f in "$sp"/scipy.libs/*; do \
        n="$sp/numpy.libs/${f##*/}"; \
        if [ -f "$n" ] && cmp -s "$f" "$n"; then ln -sf "../numpy.libs/${f##*/}" "$f"; fi; \
    done

# The package itself, built from the source in this context (offline: setuptools from wheels/),
# its C compiled for the generic x86-64 (no -march): the image runs on any node. The import
# check runs from / so that it loads the installed package, not the source in /src.
COPY pyproject.toml setup.py README.m[d] /src/
COPY scorer/ /src/scorer/
RUN set -eu; \
    if ls wheels/*.whl >/dev/null 2>&1; then \
        pip install --no-index --find-links wheels --no-deps /src; \
    else \
        pip install --no-deps /src; \
    fi; \
    pip uninstall -y -q pip setuptools wheel 2>/dev/null || true; \
    python -m compileall -q -j 0 /opt/venv; \
    cd / && python -c 'import xgboost, xgboost.sklearn, scipy.sparse, scipy.special, mlflow.xgboost, mlflow.pyfunc, pandas, scorer, scorer.model.tree_paths; from scorer import compiled; compiled.library()'

FROM ${PYTHON_IMAGE}
# A passwd entry for 10001, so getpass.getuser() (MLflow's user tag) works; HOME is /tmp so
# nothing (MLflow, xgboost, Python) tries to write to the read-only root filesystem.
RUN groupadd --gid 10001 scorer \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin scorer
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    TMPDIR=/tmp
WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["python", "-m", "scorer"]
CMD ["run"]
# Metadata last, so a new revision does not rebuild (or re-push) the venv layer.
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG SOURCE=unknown
ARG EXTRA_PACKAGES=""
LABEL io.scorer.extra-packages="${EXTRA_PACKAGES}" \
      org.opencontainers.image.title="scorer" \
      org.opencontainers.image.description="Batch-score an MLflow registry model over PostgreSQL features" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
