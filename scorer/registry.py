"""Resolve a registered model to one version, then load it for probability scoring."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from scorer import cpus
from scorer.errors import (
    ModelNotFoundError,
    PermanentError,
    PromotionGateError,
    RetryableError,
    SchemaMismatchError,
)

if TYPE_CHECKING:
    from scorer.config import RunSettings

# MLflow error codes that no retry can cure.
_PERMANENT_CODES = frozenset(
    {
        "RESOURCE_DOES_NOT_EXIST",
        "INVALID_PARAMETER_VALUE",
        "NOT_FOUND",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "BAD_REQUEST",
    }
)

Scores = npt.NDArray[np.float64]
Features = npt.NDArray[np.float32]


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

    @property
    def uri(self) -> str:
        """The exact version's URI: an alias moved mid-run does not change it."""
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score: its input columns in order and a probability function."""

    flavor: str
    feature_names: tuple[str, ...]
    predict: Callable[[Features], Scores]
    signature: list[dict[str, Any]]
    threads: int | None = None  # the native booster's predict threads (pyfunc: its own)


@contextmanager
def registry_errors(what: str) -> Iterator[None]:
    """Translate MLflow and HTTP failures into exit-code errors."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415 - keep start-up light

    try:
        yield
    except MlflowException as exc:
        message = f"{what}: {exc.message}"
        if exc.error_code in _PERMANENT_CODES:
            raise ModelNotFoundError(message) from None
        raise RetryableError(message) from None
    except OSError as exc:  # requests' ConnectionError and timeouts derive from OSError
        raise RetryableError(f"{what}: registry unreachable: {exc}") from None


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


def load(resolved: ResolvedModel, tracking_uri: str | None) -> LoadedModel:
    """Download the resolved version and load it: native xgboost if possible, else pyfunc."""
    import mlflow  # noqa: PLC0415 - keep start-up light
    from mlflow.models import Model  # noqa: PLC0415

    workdir = tempfile.mkdtemp(prefix="scorer-model-")
    with registry_errors(f"downloading {resolved.uri}"):
        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
            mlflow.set_registry_uri(tracking_uri)
        path = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=resolved.uri, dst_path=workdir)
        )
    meta = Model.load(str(path))
    names = _signature_names(meta)
    if "xgboost" in meta.flavors:
        threads = cpus.available()
        booster = _load_booster(path, meta.flavors["xgboost"], threads)
        names = names or tuple(booster.feature_names or ())
        if not names:
            raise SchemaMismatchError(f"{resolved.uri} has neither a signature nor feature names")
        return LoadedModel(
            "xgboost", names, _booster_scores(booster), _signature(meta, names), threads
        )
    if not names:
        raise SchemaMismatchError(f"{resolved.uri} has no input signature with column names")
    pyfunc = mlflow.pyfunc.load_model(str(path))
    return LoadedModel(
        "python_function", names, _pyfunc_scores(pyfunc, names), _signature(meta, names)
    )


def _signature(meta: Any, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The input signature as recorded in ``scoring_runs.model_signature``."""
    if meta.signature is not None:
        return list(meta.signature.inputs.to_dict())
    return [{"name": name} for name in names]


def _signature_names(meta: Any) -> tuple[str, ...]:
    signature = meta.signature
    if signature is None or not signature.inputs.has_input_names():
        return ()
    return tuple(str(name) for name in signature.inputs.input_names())


def _load_booster(path: Path, flavor: dict[str, Any], threads: int) -> Any:
    import xgboost  # noqa: PLC0415 - keep start-up light

    booster = xgboost.Booster()
    booster.load_model(str(path / flavor["data"]))
    booster.set_param({"nthread": threads})
    return booster


def _booster_scores(booster: Any) -> Callable[[Features], Scores]:
    def predict(features: Features) -> Scores:
        out = np.asarray(booster.inplace_predict(features, validate_features=False))
        return _positive_class(out)

    return predict


def _pyfunc_scores(model: Any, names: tuple[str, ...]) -> Callable[[Features], Scores]:
    import pandas as pd  # noqa: PLC0415 - only the pyfunc path needs pandas

    def predict(features: Features) -> Scores:
        frame = pd.DataFrame(features.astype(np.float64), columns=list(names))
        return _positive_class(np.asarray(model.predict(frame), dtype=np.float64))

    return predict


def _positive_class(out: npt.NDArray[Any]) -> Scores:
    """Scores of the positive class: a vector as is, the last column of a 2-column matrix."""
    if out.ndim == 2 and out.shape[1] == 2:
        out = out[:, 1]
    if out.ndim != 1:
        raise PermanentError(f"model output has shape {out.shape}; a binary score is needed")
    return out.astype(np.float64, copy=False)
