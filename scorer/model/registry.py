"""Resolve a registered model to one version, then load it for probability scoring."""

from __future__ import annotations

import ssl
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scorer.errors import (
    ModelNotFoundError,
    PromotionGateError,
    RegistryAuthError,
    RegistryTlsError,
    RegistryUnavailableError,
)
from scorer.io import cpus
from scorer.model import flavors, run_copy
from scorer.model.flavors import LoadedModel
from scorer.model.run_copy import ModelFiles

if TYPE_CHECKING:
    from scorer.config import RunSettings

# MLflow error codes that say the model, alias, stage or version is not there: no retry can
# cure them.
_PERMANENT_CODES = frozenset(
    {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND", "BAD_REQUEST"}
)
# The registry refused the credentials (HTTP 401/403): a retry cannot cure it, and it is not
# the model that is missing.
_AUTH_CODES = frozenset({"PERMISSION_DENIED", "UNAUTHENTICATED", "CUSTOMER_UNAUTHORIZED"})

# requests' OSError when the CA bundle it was given (MLFLOW_TRACKING_SERVER_CERT_PATH,
# REQUESTS_CA_BUNDLE) is not a file it can read.
_NO_CA_BUNDLE = "Could not find a suitable TLS CA certificate bundle"
_CA_HINT = (
    "set MLFLOW_TRACKING_SERVER_CERT_PATH to the CA bundle that signed the registry's certificate"
)

_KEPT_DOWNLOADS: list[tempfile.TemporaryDirectory[str]] = []


@dataclass(frozen=True)
class ResolvedModel:
    """One registered model version and the lineage recorded for it."""

    name: str
    version: int
    selector: str
    mlflow_run_id: str | None
    source: str | None
    model_id: str | None
    aliases: tuple[str, ...]
    stage: str | None
    files: ModelFiles | None = None  # a sharded run's copy of the version's files

    @property
    def uri(self) -> str:
        """The exact version's URI: an alias moved mid-run does not change it."""
        return f"models:/{self.name}/{self.version}"


@contextmanager
def registry_errors(what: str) -> Iterator[None]:
    """Translate MLflow and HTTP failures into exit-code errors (the cause stays chained)."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415 - keep start-up light

    try:
        yield
    except (MlflowException, OSError) as exc:
        tls_failure = _tls_failure(exc)
        if tls_failure is not None:
            raise RegistryTlsError(f"{what}: TLS to the registry failed: {tls_failure}") from exc
        if isinstance(exc, OSError):  # requests' ConnectionError and timeouts derive from it
            raise RegistryUnavailableError(f"{what}: registry unreachable: {exc}") from exc
        message = f"{what}: {exc.message}"
        if exc.error_code in _AUTH_CODES:
            raise RegistryAuthError(
                f"{what}: the registry refused the credentials ({exc.error_code}); check "
                "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN"
            ) from exc
        if exc.error_code in _PERMANENT_CODES:
            raise ModelNotFoundError(message) from exc
        raise RegistryUnavailableError(message) from exc


def _tls_failure(exc: BaseException) -> str | None:
    """What failed, when a certificate check is behind ``exc`` (MLflow chains requests' error,
    which chains urllib3's and the ``ssl`` module's); None otherwise. No retry cures these."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"{seen.verify_message or 'certificate verify failed'}: {_CA_HINT}"
        if _NO_CA_BUNDLE in str(seen) and not isinstance(seen, ssl.SSLError):
            return f"the CA bundle cannot be read ({seen}): {_CA_HINT}"
        seen = seen.__cause__ or seen.__context__
    return None


def resolve(settings: RunSettings) -> ResolvedModel:
    """Resolve name + alias/stage/version to one version and apply the promotion gate."""
    from mlflow import MlflowClient  # noqa: PLC0415 - keep start-up light

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    name = settings.model_name
    with registry_errors(f"resolving {name} {settings.selector}"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # stages are deprecated, still served
        if settings.model_alias is not None:
            version = client.get_model_version_by_alias(name, settings.model_alias)
        elif settings.model_stage is not None:
            found = client.get_latest_versions(name, stages=[settings.model_stage])
            if not found:
                raise ModelNotFoundError(
                    f"registered model {name!r} has no version in stage {settings.model_stage!r}"
                )
            version = found[0]
        else:
            version = client.get_model_version(name, str(settings.model_version))
        resolved = ResolvedModel(
            name=name,
            version=int(version.version),
            selector=settings.selector,
            mlflow_run_id=version.run_id or None,
            source=version.source or None,
            model_id=getattr(version, "model_id", None) or _model_id_from(version.source),
            aliases=tuple(version.aliases or ()),
            stage=version.current_stage or None,
        )
        _check_gate(client, settings, resolved)
    return resolved


def _model_id_from(source: str | None) -> str | None:
    if source and source.startswith("models:/m-"):
        return source.removeprefix("models:/").split("/", 1)[0]
    return None


def _check_gate(client: Any, settings: RunSettings, resolved: ResolvedModel) -> None:
    if settings.require_alias is not None:
        # Ask the alias itself: search results may omit aliases (mlflow#9783).
        try:
            holder = int(
                client.get_model_version_by_alias(resolved.name, settings.require_alias).version
            )
        except Exception as exc:
            if getattr(exc, "error_code", None) not in _PERMANENT_CODES:
                raise
            holder = None
        if holder != resolved.version:
            raise PromotionGateError(
                f"promotion gate: {resolved.name} version {resolved.version} does not carry "
                f"alias {settings.require_alias!r}"
                + ("" if holder is None else f" (it points to version {holder})")
            )
    if settings.require_stage is not None and resolved.stage != settings.require_stage:
        raise PromotionGateError(
            f"promotion gate: {resolved.name} version {resolved.version} is in stage "
            f"{resolved.stage!r}, not {settings.require_stage!r}"
        )


def load(
    resolved: ResolvedModel, settings: RunSettings, share: bool = False
) -> tuple[LoadedModel, ModelFiles | None]:
    """Load the resolved version in its own flavor (see ``scorer.model.flavors``): from
    ``resolved.files``, a sharded run's copy (no MLflow call), else downloaded from the
    registry.

    Returns the model, and with ``share`` the downloaded files packed for the run's other
    shards (``scorer.model.run_copy``). The files are removed once a native flavor is in
    memory; a pyfunc model may read them lazily, so its copy goes when the process exits.
    """
    workdir = tempfile.TemporaryDirectory(prefix="scorer-model-")
    path, packed = Path(workdir.name), None
    if resolved.files is not None:
        run_copy.unpack(resolved.files, path)
    else:
        path = _download(resolved, settings, path)
        packed = run_copy.pack(path) if share else None
    model = flavors.load(
        path,
        settings.score_kind,
        settings.positive_class,
        settings.predict_threads or cpus.available(),
        settings.reasons_method if settings.reasons else None,
    )
    if model.flavor == "python_function":
        _KEPT_DOWNLOADS.append(workdir)
    else:
        workdir.cleanup()
    return model, packed


def _download(resolved: ResolvedModel, settings: RunSettings, into: Path) -> Path:
    """The resolved version's files, downloaded from the registry under ``into``."""
    import mlflow  # noqa: PLC0415 - keep start-up light

    with registry_errors(f"downloading {resolved.uri}"):
        if settings.tracking_uri:
            mlflow.set_tracking_uri(settings.tracking_uri)
            mlflow.set_registry_uri(settings.tracking_uri)
        return Path(
            mlflow.artifacts.download_artifacts(artifact_uri=resolved.uri, dst_path=str(into))
        )
