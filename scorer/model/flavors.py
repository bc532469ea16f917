"""Load a downloaded MLflow model in its own flavor and score the positive class.

Each flavor's native probability method is used: the xgboost Booster (its objective says
whether the output is a probability), and ``predict_proba`` of lightgbm, scikit-learn
(estimators and pipelines) and catboost models. Numbers reach each model in the dtype its
library computes in (``LoadedModel.dtype``): float32 for xgboost, which converts to it
itself, and float64 for every other flavor, whose libraries compare float64 values with
float64 thresholds (or convert to float32 themselves). Datetimes reach a model as
``datetime64[us]``, at the table's precision. Strings reach xgboost as the category codes
its booster stored at training, matched byte for byte (one float32 matrix, as numbers do),
lightgbm as pandas categoricals, and every other model as Python strings. Other flavors go
through pyfunc, whose output must be a probability: labels, regressors' values and NaN are
refused (``ModelOutputError``, exit 2) unless ``SCORER_SCORE_KIND=raw`` asks for raw scores.
A pyfunc's DataFrame output is read by column name (``SCORER_POSITIVE_CLASS``, else
``probability``), never by position. Errors from a model library are summarised by type and
the columns it names, else the dtypes the model was handed; never by data.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from scorer.errors import ConfigError, ModelOutputError, SchemaMismatchError
from scorer.io.features import Chunk, FeaturePlan, InputKind, ModelInput, Precision
from scorer.model import mlmodel, output, reasons
from scorer.postgres import wire

if TYPE_CHECKING:
    import pandas as pd

ScoreKind = Literal["probability", "raw"]
Scores = npt.NDArray[np.float64]
_LOG_PROBABILITIES = (
    "log it so that it returns probabilities, e.g. mlflow.sklearn.log_model(...) of a "
    'classifier, or mlflow.pyfunc.log_model(..., pyfunc_predict_fn="predict_proba")'
)
_KINDS: dict[str, InputKind] = {
    "double": "number",
    "float": "number",
    "long": "number",
    "integer": "number",
    "boolean": "number",
    "string": "string",
    "datetime": "datetime",
}
_PROBABILITY_OBJECTIVES = ("binary:logistic", "multi:softprob")
_NATIVE = ("xgboost", "lightgbm", "catboost", "sklearn")
_PARALLEL_ROWS = 2_048  # smaller chunks predict on one thread (xgboost, native lightgbm)
_LOG_SIGNATURE = (
    "log it with one: mlflow.<flavor>.log_model(model, name=..., signature="
    "mlflow.models.infer_signature(training_features, model_output)), where training_features "
    "is a DataFrame with the feature relation's column names"
)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score: its inputs in order, and what its score means."""

    flavor: str
    method: str  # e.g. "sklearn predict_proba"
    inputs: tuple[ModelInput, ...]
    predict: Callable[[Chunk, FeaturePlan], Scores]
    signature: list[dict[str, Any]]
    score_kind: ScoreKind
    positive_class: str | None
    threads: int | None = None
    dtype: Precision = np.float64  # the numbers' dtype, the one the model's library computes in
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per string input, the categories the model knows, where it records them (xgboost,
    lightgbm): model metadata, which the drift check counts values by."""
    contributions: Callable[[Chunk, FeaturePlan], reasons.Explained] | None = None
    """The model's own per-row contributions to its margin (``scorer.model.reasons``), if
    reasons were asked for and its flavor gives them."""

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The input column names, in the model's order."""
        return tuple(item.name for item in self.inputs)


@dataclass(frozen=True)
class _Scoring:
    """A flavor's probability function and what it scores."""

    method: str
    output: Callable[[Any], npt.NDArray[Any]]  # model input -> raw output
    classes: tuple[str, ...] | None  # None: the output is already one score per row
    frame: bool  # the model takes a DataFrame (else one float32 matrix, if all numeric)
    categories: bool  # strings as pandas categoricals (else Python strings)
    named: bool = False  # the output names its own columns: the score is read by name


def load(
    path: Path,
    score_kind: ScoreKind,
    positive_class: str | None,
    threads: int,
    reasons_method: reasons.Method | None = None,
) -> LoadedModel:
    """Load the model at ``path`` in the first native flavor it has, else through pyfunc;
    xgboost and native lightgbm predict on ``threads`` threads. An xgboost model loads
    without MLflow; the other flavors load through MLflow's own loaders. With
    ``reasons_method`` it also gives its per-row contributions, if its flavor can."""
    meta = mlmodel.read(path)
    flavor = next((name for name in _NATIVE if name in meta.flavors), "python_function")
    try:
        model = _load_native(flavor, path, meta, threads)
    except ImportError as exc:
        raise ConfigError(
            f"the model is a {flavor} model and this environment lacks {exc.name or flavor}: "
            "install the model's libraries (the image takes them as a build argument)"
        ) from exc
    inputs = _inputs(meta, model if flavor == "xgboost" else None)
    if not inputs:
        raise SchemaMismatchError(
            f"the model has no input signature with column names; {_LOG_SIGNATURE}"
        )
    scoring = _scoring(flavor, model, score_kind, threads, positive_class)
    index, chosen = (
        (None, positive_class) if scoring.named else _positive(scoring.classes, positive_class)
    )
    codes = _training_codes(model, inputs) if flavor == "xgboost" else {}
    numeric = all(item.kind == "number" for item in inputs)
    as_frame = not codes and (scoring.frame or not numeric)
    method = scoring.method

    built: list[tuple[Chunk, Any]] = []  # the last chunk's input: its contributions reuse it

    def model_input(chunk: Chunk, plan: FeaturePlan) -> Any:
        if built and built[0][0] is chunk:
            return built[0][1]
        data: Any
        if as_frame:
            data = _frame(chunk, plan, scoring.categories, pyfunc=flavor == "python_function")
        else:
            data = _coded(chunk, plan, codes, method) if codes else chunk.numbers
        if own is not None:  # only the xgboost and lightgbm libraries, which leave it unchanged
            built[:] = [(chunk, data)]
        return data

    def call(compute: Callable[[Any], Any], chunk: Chunk, plan: FeaturePlan) -> Any:
        data = model_input(chunk, plan)
        try:
            return compute(data)
        except ModelOutputError:
            raise  # the scorer's own refusal of what the model returned
        except Exception as exc:
            raise ModelOutputError(
                f"the model's {method} failed on a chunk of {chunk.ids.size} rows: "
                + output.summary(exc, inputs, data)
            ) from None  # the library's message may quote feature values

    def predict(chunk: Chunk, plan: FeaturePlan) -> Scores:
        return _scores(np.asarray(call(scoring.output, chunk, plan)), index, score_kind, method)

    own = (
        reasons.native(flavor, model, threads, index, reasons_method)
        if reasons_method is not None and not scoring.named
        else None
    )

    def contributions(chunk: Chunk, plan: FeaturePlan) -> reasons.Explained:
        assert own is not None
        explained: reasons.Explained = call(own, chunk, plan)
        return explained

    # xgboost computes in float32, and converts a DataFrame's float64 itself (a datetime
    # input makes it take one: epoch microseconds do not survive float32).
    float32 = flavor == "xgboost" and not any(item.kind == "datetime" for item in inputs)
    return LoadedModel(
        flavor,
        method,
        inputs,
        predict,
        _signature(meta, inputs),
        score_kind,
        chosen,
        threads,
        np.float32 if float32 else np.float64,
        _known_categories(flavor, model, inputs, codes),
        None if own is None else contributions,
    )


def _known_categories(
    flavor: str, model: Any, inputs: tuple[ModelInput, ...], codes: dict[str, _TrainingCodes]
) -> dict[str, tuple[str, ...]]:
    """The categories an xgboost booster or a lightgbm model stored at training, per string
    input (lightgbm's ``pandas_categorical`` lists them in the order of its categorical
    inputs); empty for the other flavors, which record none the scorer can read."""
    if codes:
        return {
            name: tuple(v.decode() for v in found.known.tolist()) for name, found in codes.items()
        }
    strings = [item.name for item in inputs if item.kind == "string"]
    stored = getattr(getattr(model, "booster_", model), "pandas_categorical", None)
    if flavor != "lightgbm" or not stored or len(stored) != len(strings):
        return {}
    return {
        name: tuple(str(value) for value in values)
        for name, values in zip(strings, stored, strict=True)
    }


def _load_native(flavor: str, path: Path, meta: mlmodel.ModelMeta, threads: int) -> Any:
    if flavor == "xgboost":
        import xgboost  # noqa: PLC0415 - only the flavor in use is imported

        booster = xgboost.Booster()
        booster.load_model(str(path / meta.flavors["xgboost"]["data"]))
        booster.set_param({"nthread": threads})
        return booster
    module = "pyfunc" if flavor == "python_function" else flavor
    return importlib.import_module(f"mlflow.{module}").load_model(str(path))


def _inputs(meta: mlmodel.ModelMeta, booster: Any) -> tuple[ModelInput, ...]:
    """The model's inputs from its signature, else (xgboost) from the booster itself."""
    if meta.named_inputs:
        inputs = []
        for spec in meta.inputs or ():
            name, declared = str(spec["name"]), str(spec.get("type"))
            kind = _KINDS.get(declared)
            if kind is None:
                raise SchemaMismatchError(
                    f"signature column {name!r} is {declared}; the scorer reads numbers, "
                    "booleans, strings and datetimes"
                )
            if booster is not None and _booster_categorical(booster, name):
                kind = "string"
            inputs.append(ModelInput(name, kind, declared))
        return tuple(inputs)
    if booster is None:
        return ()
    types = booster.feature_types or ["float"] * len(booster.feature_names or ())
    return tuple(
        ModelInput(name, "string" if kind == "c" else "number", "category" if kind == "c" else kind)
        for name, kind in zip(booster.feature_names or (), types, strict=True)
    )


def _booster_categorical(booster: Any, name: str) -> bool:
    names, types = booster.feature_names or (), booster.feature_types or ()
    return any(n == name and t == "c" for n, t in zip(names, types, strict=False))


def _scoring(
    flavor: str, model: Any, score_kind: ScoreKind, threads: int, positive_class: str | None
) -> _Scoring:
    """How this flavor's model gives a probability (or, for raw, its own prediction); a
    pyfunc's output is read by column name when it names its columns
    (``output.by_name``)."""
    if flavor == "xgboost":
        objective = json.loads(model.save_config())["learner"]["objective"]["name"]
        if objective in _PROBABILITY_OBJECTIVES or score_kind == "raw":
            classes = None if objective != "multi:softprob" else _xgb_classes(model)
            if objective == "binary:logistic":
                classes = ("0", "1")
            return _Scoring(
                "xgboost Booster.inplace_predict",
                _xgboost_predict(model, threads),
                classes if score_kind == "probability" else None,
                frame=False,
                categories=True,
            )
        raise ModelOutputError(
            f"the xgboost model's objective is {objective}, which does not give probabilities; "
            "train a classifier (binary:logistic or multi:softprob), or score raw values "
            "with SCORER_SCORE_KIND=raw"
        )
    proba = getattr(model, "predict_proba", None)
    if flavor != "python_function" and proba is not None and score_kind == "probability":
        classes = tuple(str(c) for c in getattr(model, "classes_", ()))
        return _Scoring(
            f"{flavor} predict_proba", proba, classes or None, True, flavor == "lightgbm"
        )
    if flavor == "lightgbm" and hasattr(model, "num_trees"):  # a native lightgbm Booster
        objective = str(model.params.get("objective", ""))
        if objective in ("binary", "multiclass", "multiclassova") or score_kind == "raw":
            return _Scoring(
                "lightgbm Booster.predict",
                lambda data: model.predict(data, num_threads=_threads_for(len(data), threads)),
                None,
                True,
                True,
            )
    if flavor == "python_function":
        method = "pyfunc predict"
        return _Scoring(
            method,
            lambda data: output.by_name(model.predict(data), positive_class, method),
            None,
            True,
            False,
            named=True,
        )
    if score_kind == "raw":
        return _Scoring(f"{flavor} predict", model.predict, None, True, flavor == "lightgbm")
    raise ModelOutputError(
        f"the {flavor} model has no predict_proba (is it a regressor?); {_LOG_PROBABILITIES}, "
        "or score its raw predictions with SCORER_SCORE_KIND=raw"
    )


def _threads_for(rows: int, threads: int) -> int:
    """One thread for a chunk too small to share: starting a thread team costs more than the
    rows' work, and on a busy machine it waits for every thread to be scheduled."""
    return 1 if rows < _PARALLEL_ROWS else threads


def _xgboost_predict(booster: Any, threads: int) -> Callable[[Any], npt.NDArray[Any]]:
    """``inplace_predict`` on ``threads`` threads, or one for a small chunk (the booster's
    ``nthread`` changes only when the chunk size crosses ``_PARALLEL_ROWS``)."""
    current = [threads]

    def predict(data: Any) -> npt.NDArray[Any]:
        wanted = _threads_for(len(data), threads)
        if wanted != current[0]:
            booster.set_param({"nthread": wanted})
            current[0] = wanted
        return np.asarray(booster.inplace_predict(data, validate_features=False))

    return predict


def _xgb_classes(booster: Any) -> tuple[str, ...]:
    count = int(json.loads(booster.save_config())["learner"]["learner_model_param"]["num_class"])
    return tuple(str(index) for index in range(count))


def _positive(classes: tuple[str, ...] | None, wanted: str | None) -> tuple[int | None, str | None]:
    """The output column of the positive class, and its name."""
    if classes is None:
        if wanted is not None:
            raise ConfigError(
                "SCORER_POSITIVE_CLASS is set, but the model's output names no classes"
            )
        return None, None
    if wanted is None:
        if len(classes) != 2:
            raise ConfigError(
                f"the model has {len(classes)} classes ({', '.join(classes)}): name the one to "
                "score with SCORER_POSITIVE_CLASS"
            )
        return 1, classes[1]
    if wanted not in classes:
        raise ConfigError(
            f"SCORER_POSITIVE_CLASS={wanted!r} is not one of the model's classes: "
            + ", ".join(classes)
        )
    return classes.index(wanted), wanted


def _frame(chunk: Chunk, plan: FeaturePlan, categories: bool, pyfunc: bool) -> pd.DataFrame:
    """The chunk as a DataFrame in the model's column order and types. A ``float`` input
    reaches a pyfunc model as the float32 its enforced signature requires, and a native
    flavor's library, which enforces no signature, as the table's float64."""
    import pandas as pd  # noqa: PLC0415 - only DataFrame models need pandas

    columns: dict[str, Any] = {}
    numbers = {name: index for index, name in enumerate(plan.numbers)}
    for item in plan.inputs:
        if item.kind == "string":
            texts = chunk.strings[item.name]
            columns[item.name] = _categorical(texts) if categories else python_strings(texts)
        elif item.kind == "datetime":
            columns[item.name] = _datetimes(chunk.numbers[:, numbers[item.name]])
        else:
            values64 = chunk.numbers[:, numbers[item.name]].astype(np.float64, copy=False)
            columns[item.name] = _declared(values64, item.declared, pyfunc)
    return pd.DataFrame(columns)


def _datetimes(micros: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.datetime64]:
    """Epoch microseconds (exact integers in float64; NaN where NULL) as ``datetime64[us]``."""
    missing = np.isnan(micros)
    stamps = np.where(missing, 0, micros).astype(np.int64).view("datetime64[us]")
    stamps[missing] = np.datetime64("NaT")
    return stamps


def _distinct(texts: wire.Texts) -> tuple[list[str], npt.NDArray[np.int64]]:
    """The distinct values, decoded and sorted as pandas sorts strings, and each row's index
    into them (-1 where NULL)."""
    present = ~texts.null
    uniques, codes = np.unique(texts.values[present], return_inverse=True)
    every = np.full(texts.values.size, -1, dtype=np.int64)
    every[present] = codes.reshape(-1)
    return [value.decode() for value in uniques.tolist()], every


def python_strings(texts: wire.Texts) -> npt.NDArray[np.object_]:
    """Python strings (None where NULL), decoded once per distinct value."""
    decoded, codes = _distinct(texts)
    return np.array([*decoded, None], dtype=object)[codes]  # -1, NULL, picks the None


def _categorical(texts: wire.Texts) -> pd.Categorical[str]:
    """The values as a pandas categorical of their own sorted categories (NULL is missing),
    which is what ``pd.Categorical`` of the strings gives, without a string per row."""
    import pandas as pd  # noqa: PLC0415 - only DataFrame models need pandas

    decoded, codes = _distinct(texts)
    return pd.Categorical.from_codes(codes, categories=pd.Index(decoded))


@dataclass(frozen=True)
class _TrainingCodes:
    """A categorical input's training categories (sorted, UTF-8) and the code of each."""

    known: npt.NDArray[np.bytes_]
    codes: npt.NDArray[np.float32]

    def of(self, texts: wire.Texts) -> npt.NDArray[np.float32] | None:
        """Each value's training code (NaN where NULL), or None if one was never seen."""
        width = max(self.known.dtype.itemsize, texts.values.dtype.itemsize)
        known = self.known.astype(f"S{width}")
        values = texts.values.astype(f"S{width}", copy=False)
        at = np.minimum(np.searchsorted(known, values), known.size - 1)
        if not ((known[at] == values) | texts.null).all():
            return None
        codes = self.codes[at]
        codes[texts.null] = np.nan
        return codes


def _training_codes(booster: Any, inputs: tuple[ModelInput, ...]) -> dict[str, _TrainingCodes]:
    """The training categories an xgboost (>= 3.1) booster stores in its model, per string
    input (the booster numbers its features in input order). Strings are matched to them
    byte for byte and reach the booster as its own codes in one float32 matrix: xgboost 3.2's
    own re-coding of a DataFrame takes some values it never saw for a training category
    (``"One"`` for ``"One year"``: dmlc/xgboost#12189), and a value the model never saw
    must be refused.

    ``SchemaMismatchError`` when a string input's categories cannot be read back exactly: a
    booster saved before xgboost 3.1 stores none, and xgboost 3.2 stores a non-ASCII category
    cut at its length in characters. Empty when there are no string inputs, or a datetime
    input makes the model take a DataFrame."""
    if not any(item.kind == "string" for item in inputs) or any(
        item.kind == "datetime" for item in inputs
    ):
        return {}
    gradient = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]
    model = gradient.get("model") or gradient.get("gbtree", {}).get("model", {})  # gbtree, dart
    encoded = model.get("cats", {}).get("enc") or [{}] * len(inputs)
    types = booster.feature_types or ["float"] * len(inputs)
    found: dict[str, _TrainingCodes] = {}
    for item, stored, kind in zip(inputs, encoded, types, strict=False):
        if item.kind != "string":
            continue
        offsets, values = stored.get("offsets") or [], stored.get("values") or []
        if kind != "c" or len(offsets) < 2 or offsets[-1] != len(values) or min(values) < 0:
            raise SchemaMismatchError(
                f"the xgboost model's input {item.name!r} is a string, but its booster stores "
                "no categories for it that can be read back exactly (xgboost 3.1 and later "
                "store them; xgboost 3.2 stores non-ASCII ones cut short): train it on a "
                "pandas categorical with ASCII values, with xgboost 3.1 or later"
            )
        raw = bytes(values)
        names = np.array([raw[a:b] for a, b in pairwise(offsets)])
        order = np.argsort(names, kind="stable")
        found[item.name] = _TrainingCodes(names[order], order.astype(np.float32))
    return found


def _coded(
    chunk: Chunk, plan: FeaturePlan, codes: dict[str, _TrainingCodes], method: str
) -> npt.NDArray[np.float32]:
    """The chunk as one float32 matrix in input order, strings as their training codes."""
    matrix = np.empty((chunk.ids.size, len(plan.inputs)), dtype=np.float32)
    numbers = {name: index for index, name in enumerate(plan.numbers)}
    for position, item in enumerate(plan.inputs):
        if item.kind == "string":
            coded = codes[item.name].of(chunk.strings[item.name])
            if coded is None:
                raise ModelOutputError(
                    f"the model's {method} failed on a chunk of {chunk.ids.size} rows: column "
                    f"{item.name} holds a category the model never saw (xgboost refuses it)"
                )
            matrix[:, position] = coded
        else:
            matrix[:, position] = chunk.numbers[:, numbers[item.name]]
    return matrix


def _declared(values: npt.NDArray[np.float64], declared: str, pyfunc: bool) -> npt.NDArray[Any]:
    """Numbers in the type the signature declared, where they hold no missing values (rows
    the type cannot hold exactly were rejected: ``scorer.io.declared``)."""
    if np.isnan(values).any():
        return values
    if declared in ("long", "integer"):
        return values.astype(np.int64 if declared == "long" else np.int32)
    if declared == "boolean":
        return values.astype(bool)
    if declared == "float" and pyfunc:
        return values.astype(np.float32)
    return values


def _scores(out: npt.NDArray[Any], index: int | None, kind: ScoreKind, method: str) -> Scores:
    """One score per row from the model's output, refused if it is not what ``kind`` says."""
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim == 2:
        if index is None:
            index = out.shape[1] - 1 if out.shape[1] == 2 else None
        if index is None:
            raise ModelOutputError(
                f"the model's {method} returned {out.shape[1]} columns per row; name the "
                "class to score with SCORER_POSITIVE_CLASS"
            )
        out = out[:, index]
    elif index == 0:  # one column is the probability of the second of two classes
        out = 1.0 - out
    if out.ndim != 1:
        raise ModelOutputError(f"the model's {method} returned shape {out.shape}")
    if out.dtype.kind not in "fc" and kind == "probability":
        raise ModelOutputError(
            f"the model's {method} returned labels ({out.dtype}), not probabilities; "
            + _LOG_PROBABILITIES
        )
    scores = out.astype(np.float64, copy=False)
    if np.isnan(scores).any():
        raise ModelOutputError(
            f"the model's {method} returned NaN for some rows, not a probability; make it "
            f"return one for every row (missing values included), {_LOG_PROBABILITIES}"
        )
    if kind == "probability" and scores.size and (scores.min() < 0 or scores.max() > 1):
        raise ModelOutputError(
            f"the model's {method} returned scores outside [0, 1] (e.g. a regressor's values), "
            f"not probabilities; {_LOG_PROBABILITIES}, or set SCORER_SCORE_KIND=raw"
        )
    return scores


def _signature(meta: mlmodel.ModelMeta, inputs: tuple[ModelInput, ...]) -> list[dict[str, Any]]:
    """The input signature as recorded in ``scoring_runs.model_signature``."""
    if meta.inputs is not None:
        return list(meta.inputs)
    return [{"name": item.name, "type": item.declared} for item in inputs]
