"""Saving a fitted model to a ``.pth`` file and loading it back without running code.

A model file holds plain data only: the architecture spec of the grown network, its
state dict (tensors), the hyperparameters, the target and input standardization, the
history of the fit and a format version. :func:`~sktlag.load_model` reads it with
``torch.load(..., weights_only=True)``, which refuses every pickled object that is not
a tensor or a plain container, so opening a ``.pth`` file can never execute code.

Models that can be saved: a fitted :class:`~sktlag.TLAGRegressor` or
:class:`~sktlag.TLAGEnsemble` (its members, seeds and calibration), and a fitted
:class:`~sklearn.pipeline.Pipeline` whose last step is one of them and whose other steps
are :class:`~sklearn.preprocessing.StandardScaler` instances (the usual way to
standardize the inputs). :func:`~sktlag.load_model` gives back the same kind of object.
Anything else in a pipeline is code, not data: use :func:`joblib.dump` for such models.

A loaded model can be trained further (``warm_start=True``), like the fitted one it was
saved from. A file written before some hyperparameters existed lacks them: they are
read as the values that reproduce how that version trained, not as today's defaults.
User ``callbacks`` are code and are never stored: a loaded estimator has none.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from skorch.history import History

from ._training import build_net, check_device
from ._version import __version__
from .ensemble import TLAGEnsemble, member_template
from .estimator import TLAGRegressor
from .io import atomic_write
from .model import GrowingLSTM

__all__ = [
    "FORMAT_VERSION", "ModelFileError", "load_model", "model_payload", "save_model", "to_plain",
]

FORMAT = "sktlag-model"
#: Version of the layout of the ``.pth`` files written by :func:`~sktlag.save_model`: 2 added
#: ensembles (a regressor's entries are those of version 1); 3 the ensembles' calibration
#: (the scale of its scores, the blocks, the lowest value, the adaptive band's error
#: correction), which a reader of version 2 would take for spread-scaled scores of the
#: validation windows without a limit.
FORMAT_VERSION = 3
#: The version of a regressor's file: its entries are those of version 1, so readers of
#: version 2 still load it.
_REGRESSOR_FORMAT_VERSION = 2

_REQUIRED = (
    "params", "spec", "state_dict", "n_features_in", "n_outputs", "y_ndim",
    "target_mean", "target_scale", "padding_values",
)


class ModelFileError(ValueError):
    """A model file that cannot be loaded: unreadable, truncated, unsafe or not a model.

    The message names the file.
    """


# ---------------------------------------------------------------------- plain data
def to_plain(value: Any) -> Any:
    """Convert ``value`` to plain Python data (None, bool, int, float, str, list, dict).

    NumPy scalars and arrays, tuples, timestamps and tensors are converted, dates and
    durations to ISO 8601 text (a missing one to None); dict keys become strings. Any
    other object becomes its ``repr`` text, so the result never holds code.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, (np.ndarray, torch.Tensor, pd.Index, pd.Series)):
        array = np.asarray(value)
        if array.dtype.kind in "mM":
            # NumPy lists nanosecond datetimes and durations as integer counts.
            stamps = pd.Series(array.ravel()).astype(object)
            return to_plain(np.array(stamps, dtype=object).reshape(array.shape).tolist())
        return to_plain(array.tolist())
    if value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, (pd.Timedelta, np.timedelta64)):
        return pd.Timedelta(value).isoformat()
    return repr(value)


def _plain_params(estimator: TLAGRegressor) -> dict[str, Any]:
    params = {}
    for name, value in estimator.get_params(deep=False).items():
        if name == "random_state" and not (value is None or isinstance(value, Integral)):
            value = None  # a RandomState instance is state, not a setting
        if name == "callbacks":
            value = None  # callbacks are code; their repr could not be loaded back
        params[name] = to_plain(value)
    return params


def _history_rows(history) -> list[dict[str, Any]]:
    # Per-batch records are dropped: they are bulky and no plot or report reads them.
    return [to_plain({k: v for k, v in row.items() if k != "batches"}) for row in history]


def _frame_to_plain(frame: pd.DataFrame) -> dict[str, Any]:
    return {
        "columns": [str(c) for c in frame.columns],
        "dtypes": [str(dtype) for dtype in frame.dtypes],
        "rows": to_plain(frame.astype(object).where(frame.notna(), None).to_numpy().tolist()),
    }


def _frame_from_plain(data: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame(data["rows"], columns=data["columns"]).infer_objects()
    # A column missing in every row came back as None alone: its stored type says it
    # held numbers (NaN). Files written before the types were stored keep the guess.
    for column, dtype in zip(data["columns"], data.get("dtypes", ()), strict=False):
        if dtype.startswith("float") and frame[column].dtype == object:
            frame[column] = frame[column].astype(dtype)
    return frame


# ---------------------------------------------------------------------- saving
def _split_model(model) -> tuple[list[tuple[str, StandardScaler]], str | None, Any]:
    """The scaler steps, the final step's name and the final step (regressor or ensemble)."""
    steps = model.steps[:-1] if isinstance(model, Pipeline) else []
    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    if not isinstance(final, (TLAGRegressor, TLAGEnsemble)):
        raise TypeError(
            "model must be a fitted TLAGRegressor or TLAGEnsemble, or a Pipeline of "
            f"StandardScaler steps ending in one, got {type(final).__name__}"
        )
    for name, step in steps:
        if not isinstance(step, StandardScaler):
            raise TypeError(
                f"pipeline step {name!r} is a {type(step).__name__}; a .pth model file "
                "stores StandardScaler steps only (save other pipelines with joblib)"
            )
    check_is_fitted(final, "estimators_" if isinstance(final, TLAGEnsemble) else "net_")
    name = model.steps[-1][0] if isinstance(model, Pipeline) else None
    return list(steps), name, final


def _scaler_payload(name: str, scaler: StandardScaler) -> dict[str, Any]:
    check_is_fitted(scaler)
    return {
        "name": name,
        "with_mean": bool(scaler.with_mean),
        "with_std": bool(scaler.with_std),
        "mean": to_plain(scaler.mean_),
        "var": to_plain(scaler.var_),
        "scale": to_plain(scaler.scale_),
        "n_samples_seen": to_plain(scaler.n_samples_seen_),
        "n_features_in": int(scaler.n_features_in_),
        "feature_names_in": to_plain(getattr(scaler, "feature_names_in_", None)),
    }


def _warmup_payload(estimator: TLAGRegressor) -> dict[str, Any] | None:
    """The last training rows and the index value a continuing frame starts at."""
    rows = getattr(estimator, "warmup_rows_", None)
    if rows is None:
        return None
    expected = getattr(estimator, "warmup_index_", None)
    if isinstance(expected, pd.Timestamp):
        expected = {"kind": "datetime", "value": expected.isoformat()}
    elif isinstance(expected, pd.Timedelta):
        expected = {"kind": "timedelta", "value": expected.isoformat()}
    elif isinstance(expected, pd.Period):
        expected = {"kind": "period", "value": str(expected), "freq": expected.freqstr}
    elif isinstance(expected, Integral) and not isinstance(expected, bool):
        expected = {"kind": "integer", "value": int(expected)}
    elif isinstance(expected, Real) and not isinstance(expected, bool):
        expected = {"kind": "float", "value": float(expected)}
    else:
        expected = None
    return {"rows": torch.from_numpy(np.array(rows, dtype=np.float64)), "next_index": expected}


def model_payload(model) -> dict[str, Any]:
    """The content of a model file for ``model``, as plain data and tensors.

    Parameters
    ----------
    model : TLAGRegressor, TLAGEnsemble or Pipeline
        A fitted regressor or ensemble, or a fitted pipeline of ``StandardScaler`` steps
        ending in one.

    Returns
    -------
    dict
        What :func:`~sktlag.save_model` writes (see the module notes).
    """
    scalers, step_name, final = _split_model(model)
    if isinstance(final, TLAGEnsemble):
        body, version = {"ensemble": _ensemble_payload(final)}, FORMAT_VERSION
    else:
        body, version = _regressor_payload(final), _REGRESSOR_FORMAT_VERSION
    return {
        "format": FORMAT,
        "format_version": version,
        "sktlag_version": __version__,
        **body,
        "pipeline": None if step_name is None else {
            "regressor_name": step_name,
            "scalers": [_scaler_payload(name, scaler) for name, scaler in scalers],
        },
    }


def _regressor_payload(est: TLAGRegressor) -> dict[str, Any]:
    module = est.net_.module_
    feature_names = getattr(est, "feature_names_in_", None)
    return {
        "params": _plain_params(est),
        "lookback": int(est.lookback),
        "spec": to_plain(module.get_spec()),
        "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
        "n_features_in": int(est.n_features_in_),
        "feature_names_in": None if feature_names is None else to_plain(feature_names),
        "n_outputs": int(est.n_outputs_),
        "y_ndim": int(est._y_ndim),
        "target_mean": to_plain(est.target_mean_),
        "target_scale": to_plain(est.target_scale_),
        "padding_values": to_plain(est.padding_values_),
        "warmup": _warmup_payload(est),
        "n_layers": int(est.n_layers_),
        "batch_size": int(est.batch_size_),
        "interrupted": bool(getattr(est, "interrupted_", False)),
        "best_epoch": to_plain(getattr(est, "best_epoch_", None)),
        "best_score": to_plain(getattr(est, "best_score_", None)),
        "growth_stop_rule": to_plain(getattr(est, "growth_stop_rule_", None)),
        "fit_time": to_plain(getattr(est, "fit_time_", None)),
        "n_threads": to_plain(getattr(est, "n_threads_", None)),
        "n_masked_targets": to_plain(getattr(est, "n_masked_targets_", 0)),
        "history": _history_rows(est.history_),
        "growth_history": to_plain(est.growth_history_),
        "derivative_history": _frame_to_plain(est.derivative_history_),
    }


def _ensemble_payload(ensemble: TLAGEnsemble) -> dict[str, Any]:
    random_state = ensemble.random_state
    template = member_template(ensemble)
    return {
        # The members fitted, not the parameter: set_params(n_members=...) after the
        # fit changes no member, and a file that disagreed would not load.
        "n_members": len(ensemble.estimators_),
        "n_jobs": to_plain(ensemble.n_jobs),
        # A RandomState instance is state, not a setting.
        "random_state": int(random_state) if isinstance(random_state, Integral) else None,
        "seeds": to_plain(ensemble.seeds_),
        "calibration_scores": torch.from_numpy(
            np.array(ensemble.calibration_scores_, dtype=np.float64)
        ),
        "spread_offset": to_plain(ensemble.spread_offset_),
        "calibration": ensemble.calibration_,
        "scale": ensemble.scale_,
        "flow_level": to_plain(ensemble.flow_level_),
        "high_flow_threshold": to_plain(ensemble.high_flow_threshold_),
        "min_value": to_plain(ensemble.min_value),
        "lowest_values": to_plain(ensemble.min_value_),
        "error_correction": ensemble.error_correction_,
        "band_classes": ensemble.band_classes_,
        "error_coefficient": to_plain(ensemble.error_coefficient_),
        "corrected_scores": torch.from_numpy(
            np.array(ensemble.corrected_scores_, dtype=np.float64)
        ),
        **_lead_calibration_payload(ensemble),
        # With calibration="blocks" the members' split settings differ from the
        # template's: these two are the template's own.
        "template": {name: to_plain(getattr(template, name))
                     for name in ("validation_fraction", "missing_target")}
        | {"random_state": _plain_params(template)["random_state"]},
        "members": [_regressor_payload(member) for member in ensemble.estimators_],
    }


def save_model(model, path: str | os.PathLike[str], *, metadata: dict | None = None) -> Path:
    """Write a fitted model to a ``.pth`` file that :func:`~sktlag.load_model` reads safely.

    The file holds the architecture spec and state dict of the grown network, the
    hyperparameters, the target and input standardization, the padding values and the
    last training rows (real history for a test period that follows the training
    period), the feature names, the fit history and the sktlag version: plain data and
    tensors only. The file is written atomically.

    Parameters
    ----------
    model : TLAGRegressor, TLAGEnsemble or Pipeline
        A fitted :class:`~sktlag.TLAGRegressor` or :class:`~sktlag.TLAGEnsemble`, or a
        fitted pipeline of :class:`~sklearn.preprocessing.StandardScaler` steps ending
        in one.
    path : str or path-like
        The file to write (by convention ending in ``.pth``); its directory must exist.
    metadata : dict, optional
        Extra information stored with the model (for example the target names or the
        data source); converted to plain data. ``load_model(path, return_metadata=True)``
        returns it.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    TypeError
        If ``model`` is neither kind of model, or ``metadata`` is not a dict.
    sklearn.exceptions.NotFittedError
        If it is not fitted.
    """
    # (A list or a string would be written, and the file then refused by load_model,
    # which reads metadata as a mapping.)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    payload = model_payload(model)
    payload["metadata"] = to_plain(metadata or {})
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        torch.save(payload, handle)
    return path


# ---------------------------------------------------------------------- loading
def _read_payload(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"No such model file: '{path}'.")
    if not path.is_file():
        raise ModelFileError(f"'{path}' is not a file.")
    try:
        with path.open("rb") as handle:
            head = handle.read(2)
    except OSError as exc:  # no permission, a device error
        raise ModelFileError(f"'{path}': cannot be read: {exc.strerror or exc}") from exc
    # A pickle of protocol 4 or newer: torch writes protocol 2 in its legacy format,
    # pickle and joblib write these (joblib.dump of a model is the usual slip). Said
    # before torch reads it, which would warn about the protocol and then fail.
    if head[:1] == b"\x80" and len(head) == 2 and head[1] >= 4:
        raise ModelFileError(
            f"'{path}': cannot be loaded as an sktlag model file: it is a pickle (written "
            "by pickle or joblib?), not a file of save_model; read such a file with "
            "joblib.load, and only from a source you trust"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged or unsafe files
        # torch.save writes a zip archive (or, in its legacy format, a pickle); torch
        # reads anything else as a pickle too and blames its weights_only rules.
        if head and not head.startswith((b"PK", b"\x80")):
            reason = "it is not a file written by PyTorch (text or CSV renamed?)"
        # (torch words every refusal of its safe unpickler "Weights only load failed",
        # an unknown opcode of a damaged file too; only a global is an unsafe object.)
        elif any(word in str(exc).lower() for word in ("unsupported global",
                                                        "allowed global")):
            reason = ("it holds pickled objects other than tensors and plain data, which "
                      "are never loaded")
        else:
            reason = f"the file is truncated, damaged or not a model file ({type(exc).__name__})"
        raise ModelFileError(
            f"'{path}': cannot be loaded as an sktlag model file: {reason}"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"'{path}': not an sktlag model file (written by save_model).")
    version = payload.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(
            f"'{path}': the model file has no valid format version ({version!r}): it "
            "was not written by save_model, or was edited."
        )
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"'{path}': model file format version {version!r} is not supported by this "
            f"sktlag (it reads versions up to {FORMAT_VERSION}); upgrade sktlag."
        )
    ensemble = payload.get("ensemble")
    regressors = payload["ensemble"].get("members", []) if isinstance(ensemble, dict) else [
        payload]
    if not regressors:
        raise ModelFileError(f"'{path}': the model file holds an ensemble without members.")
    for regressor in regressors:
        missing = [key for key in _REQUIRED if key not in regressor]
        if missing:
            raise ModelFileError(f"'{path}': the model file lacks the entries {missing}.")
    return payload


def _restore_warmup(est: TLAGRegressor, warmup: dict[str, Any] | None) -> None:
    est.warmup_index_ = None
    if warmup is None:
        return
    est.warmup_rows_ = warmup["rows"].numpy().astype(np.float64)
    est.warmup_index_ = _index_value(warmup.get("next_index"))


def _index_value(stored: dict[str, Any] | None):
    """The index value :func:`_warmup_payload` stored (None: none was)."""
    if stored is None:
        return None
    kind, value = stored["kind"], stored["value"]
    if kind == "datetime":
        return pd.Timestamp(value)
    if kind == "timedelta":
        return pd.Timedelta(value)
    if kind == "period":
        return pd.Period(value, freq=stored["freq"])
    if kind == "integer":
        return int(value)
    if kind == "float":
        return float(value)
    raise ValueError(f"unknown kind of index value {kind!r}")


#: Hyperparameters that files written by earlier versions lack, with the value that
#: reproduces how those versions trained (not today's default, which would contradict
#: the stored network or change how it continues training). ``output_dropout`` is
#: taken from the stored architecture instead.
_LEGACY_PARAMS: dict[str, Any] = {
    # Added with the NeuralHydrology training recipe; before it, the forget-gate bias
    # started at zero, the rate was constant and gradients were not clipped.
    "initial_forget_bias": 0.0,
    "lr_schedule": None,
    "clip_gradient_norm": None,
    # Added with the validation stop rule: before it, the raw derivative decided, no
    # validation margin ended growth, the best single epoch was kept and Adam was
    # re-created after an insertion.
    "derivative_criterion": "raw",
    "min_improvement": -math.inf,
    "select_by": "epoch",
    "growth_optimizer": "fresh",
    # Added after 0.2.0, whose decisions took exact products by double backward and
    # solved each position to a relative tolerance of 1e-3.
    "eigensolver_tol": 1e-3,
    "hessian_products": "exact",
}


def _lr_schedule(value, params: dict[str, Any]):
    """The stored ``lr_schedule`` in the form the estimator was given it."""
    if isinstance(value, dict):
        schedule = {int(epoch): float(factor) for epoch, factor in value.items()}
    elif isinstance(value, list):
        schedule = tuple((int(epoch), float(factor)) for epoch, factor in value)
    else:
        return value
    if "derivative_criterion" not in params:
        # Written before the schedule held factors of lr: it held the rates themselves.
        lr = float(params["lr"])
        items = schedule.items() if isinstance(schedule, dict) else schedule
        converted = [(epoch, rate / lr) for epoch, rate in items]
        schedule = dict(converted) if isinstance(schedule, dict) else tuple(converted)
    return schedule


def _restored_params(payload: dict[str, Any], device: str) -> dict[str, Any]:
    """The hyperparameters of the stored estimator, as it was trained."""
    stored = payload["params"]
    known = TLAGRegressor().get_params(deep=False)
    params = {name: value for name, value in stored.items() if name in known}
    for name, value in _LEGACY_PARAMS.items():
        params.setdefault(name, value)
    # The network's own dropout rates are what it was trained with (and warm_start
    # refuses to change them): an older file's spec without the head dropout had none.
    spec = payload["spec"]
    params["output_dropout"] = float(spec.get("output_dropout", 0.0))
    params["lr_schedule"] = _lr_schedule(params.get("lr_schedule"), stored)
    # Callbacks are code, which a model file never holds.
    params["callbacks"] = None
    params["device"] = device
    return params


def _build_regressor(payload: dict[str, Any], device: str) -> TLAGRegressor:
    est = TLAGRegressor(**_restored_params(payload, device))
    # The parameter checks of fit: a file edited to lookback=0 fails here, naming the
    # parameter, not later in a broadcast.
    est._validate_params()
    est._check_hyperparameters()
    # Files written before batch_size="auto" hold the batch size in the parameters only.
    est.batch_size_ = int(payload.get("batch_size") or est.batch_size)
    module = GrowingLSTM.from_spec(payload["spec"])
    module.load_state_dict(payload["state_dict"], strict=True)
    n_features, n_outputs = int(payload["n_features_in"]), int(payload["n_outputs"])
    # The estimator's own net (window batches, growth callbacks), around the stored
    # network: warm_start=True continues from its depth and weights.
    net = build_net({**est.get_params(deep=False), "batch_size": est.batch_size_},
                    n_features, n_outputs, module=module)
    net.initialize()
    net.history_ = History(payload.get("history", []))
    est.interrupted_ = net.interrupted_ = bool(payload.get("interrupted", False))
    est.net_ = net
    est.module_ = net.module_
    est.history_ = net.history_
    est.n_layers_ = module.num_layers
    est.n_features_in_ = n_features
    if payload.get("feature_names_in") is not None:
        est.feature_names_in_ = np.asarray(payload["feature_names_in"], dtype=object)
    est.n_outputs_ = n_outputs
    est._y_ndim = int(payload["y_ndim"])
    est.target_mean_ = np.asarray(payload["target_mean"], dtype=np.float64)
    est.target_scale_ = np.asarray(payload["target_scale"], dtype=np.float64)
    if not (np.isfinite(est.target_scale_).all() and (est.target_scale_ > 0).all()
            and np.isfinite(est.target_mean_).all()):
        # fit never stores these: every prediction would be one constant (or NaN).
        raise ValueError("the target's mean and scale must be finite, the scale positive")
    est.padding_values_ = np.asarray(payload["padding_values"], dtype=np.float64)
    _restore_warmup(est, payload.get("warmup"))
    est.growth_history_ = payload.get("growth_history", [])
    derivatives = payload.get("derivative_history")
    est.derivative_history_ = (
        _frame_from_plain(derivatives) if derivatives is not None else pd.DataFrame()
    )
    best_epoch, best_score = payload.get("best_epoch"), payload.get("best_score")
    est.best_epoch_ = None if best_epoch is None else int(best_epoch)
    est.best_score_ = math.nan if best_score is None else float(best_score)
    est.growth_stop_rule_ = payload.get("growth_stop_rule")
    fit_time = payload.get("fit_time")
    est.fit_time_ = float(fit_time) if fit_time is not None else math.nan
    n_threads = payload.get("n_threads")
    est.n_threads_ = None if n_threads is None else int(n_threads)
    est.n_masked_targets_ = int(payload.get("n_masked_targets") or 0)
    _check_lengths(est)
    return est


def _check_length(name: str, values, expected: int, unit: str) -> None:
    if len(values) != expected:
        raise ValueError(f"{name} has {len(values)} values for {expected} {unit}")


def _check_lengths(est: TLAGRegressor) -> None:
    """Refuse entries whose lengths disagree with the network's inputs and outputs.

    save_model never writes such a file; an edited one would load and then predict
    the wrong shape (a target mean of two values for one output doubled the rows) or
    fail in a broadcast far from the cause.
    """
    n_features, n_outputs = est.n_features_in_, est.n_outputs_
    _check_length("target_mean", est.target_mean_, n_outputs, "outputs")
    _check_length("target_scale", est.target_scale_, n_outputs, "outputs")
    _check_length("padding_values", est.padding_values_, n_features, "features")
    if hasattr(est, "feature_names_in_"):
        _check_length("feature_names_in", est.feature_names_in_, n_features, "features")
    rows = getattr(est, "warmup_rows_", None)
    if rows is not None and (rows.ndim != 2 or rows.shape[1] != n_features):
        raise ValueError(f"the warm-up rows have {rows.shape[-1]} columns, the network "
                         f"reads {n_features} features")
    if est._y_ndim not in (1, 2) or (est._y_ndim == 1 and n_outputs != 1):
        raise ValueError(f"y_ndim is {est._y_ndim} for {n_outputs} outputs")


def _build_ensemble(data: dict[str, Any], device: str) -> TLAGEnsemble:
    members = [_build_regressor(member, device) for member in data["members"]]
    # Files written before the template's seed was stored: None.
    template = clone(members[0]).set_params(**{"random_state": None,
                                               **data.get("template", {})})
    ensemble = TLAGEnsemble(
        estimator=template, n_members=int(data["n_members"]), n_jobs=data.get("n_jobs"),
        random_state=data.get("random_state"),
        # Files written before block calibration calibrated on the validation windows.
        calibration=data.get("calibration", "validation"),
        # Files written before the flow scale scored in units of the spread.
        scale=data.get("scale", "spread"),
        # Files written before the lowest value had bands without a limit.
        min_value=data.get("min_value"),
        # Files written before the error correction centred every band on the mean.
        error_correction=data.get("error_correction"),
        # Files written before the classes had one band for all days.
        band_classes=data.get("band_classes"),
    )
    # The parameter checks of fit: a setting the ensemble does not know ("none" for
    # None) fails here, naming it, rather than giving bands it never describes.
    ensemble._validate_params()
    ensemble.estimators_ = members
    ensemble.calibration_ = ensemble.calibration
    ensemble.scale_, ensemble.error_correction_ = ensemble.scale, ensemble.error_correction
    ensemble.band_classes_ = ensemble.band_classes
    ensemble.seeds_ = np.asarray(data["seeds"], dtype=np.int64)
    ensemble.calibration_scores_ = data["calibration_scores"].numpy().astype(np.float64)
    ensemble.spread_offset_ = np.asarray(data["spread_offset"], dtype=np.float64)
    # Files written before the flow scale kept no typical flow.
    ensemble.flow_level_ = np.asarray(
        data.get("flow_level", [math.nan] * ensemble.calibration_scores_.shape[1]),
        dtype=np.float64)
    # Files written before it kept no high-flow threshold: no day counts as high flow.
    ensemble.high_flow_threshold_ = np.asarray(
        data.get("high_flow_threshold", [math.nan] * ensemble.calibration_scores_.shape[1]),
        dtype=np.float64)
    ensemble.min_value_ = np.asarray(
        data.get("lowest_values", [-math.inf] * ensemble.calibration_scores_.shape[1]),
        dtype=np.float64)
    ensemble.error_coefficient_ = np.asarray(
        data.get("error_coefficient", [0.0] * ensemble.calibration_scores_.shape[1]),
        dtype=np.float64)
    ensemble.corrected_scores_ = (data["corrected_scores"].numpy().astype(np.float64)
                                  if "corrected_scores" in data
                                  else ensemble.calibration_scores_)
    # Files written before the longer leads had scores of their own have none of these.
    held = [name for name in (*LEAD_ARRAYS, "calibration_starts") if name in data]
    if held and len(held) < len(LEAD_ARRAYS) + 1:
        raise ValueError(f"the file holds {held} of what the longer leads' bands are made "
                         f"of, not all of {[*LEAD_ARRAYS, 'calibration_starts']}")
    for name in LEAD_ARRAYS:
        setattr(ensemble, f"{name}_", data[name].numpy().astype(np.float64)
                if held else None)
    ensemble.calibration_starts_ = _lead_starts(data["calibration_starts"]) if held else None
    _check_ensemble_lengths(ensemble, members)
    ensemble.n_features_in_ = members[0].n_features_in_
    if hasattr(members[0], "feature_names_in_"):
        ensemble.feature_names_in_ = members[0].feature_names_in_
    ensemble.n_outputs_ = members[0].n_outputs_
    return ensemble


#: The ensemble's arrays over the calibration windows that the scores of longer leads
#: are made of (fitted attributes with a trailing underscore).
LEAD_ARRAYS = ("calibration_errors", "calibration_mean", "calibration_spread")


def _lead_starts(values) -> np.ndarray:
    """The stored first windows of the calibration stretches, as ints (a list of
    whole numbers; anything else is refused, not truncated)."""
    if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"calibration_starts must be a list of whole numbers, got {values!r}")
    return np.asarray(values, dtype=np.int64)


def _lead_calibration_payload(ensemble: TLAGEnsemble) -> dict[str, Any]:
    """The arrays of the longer leads' scores, where the ensemble has them."""
    if getattr(ensemble, "calibration_errors_", None) is None:
        return {}
    return {**{name: torch.from_numpy(np.array(getattr(ensemble, f"{name}_"),
                                               dtype=np.float64))
               for name in LEAD_ARRAYS},
            "calibration_starts": to_plain(ensemble.calibration_starts_)}


def _check_ensemble_lengths(ensemble: TLAGEnsemble, members: list[TLAGRegressor]) -> None:
    """Refuse members, seeds and calibration entries that disagree with each other."""
    shapes = {(member.n_features_in_, member.n_outputs_) for member in members}
    if len(shapes) > 1:
        raise ValueError(f"the members read and predict different numbers of features "
                         f"and outputs: {sorted(shapes)}")
    n_outputs = members[0].n_outputs_
    _check_length("seeds", ensemble.seeds_, len(members), "members")
    if ensemble.n_members != len(members):
        raise ValueError(f"n_members is {ensemble.n_members}, the file holds "
                         f"{len(members)} members")
    scores = ensemble.calibration_scores_
    if scores.ndim != 2 or scores.shape[1] != n_outputs:
        raise ValueError(f"the calibration scores have shape {scores.shape}, the members "
                         f"predict {n_outputs} outputs")
    if ensemble.corrected_scores_.shape != scores.shape:
        raise ValueError(f"the corrected scores have shape {ensemble.corrected_scores_.shape}, "
                         f"the calibration scores {scores.shape}")
    for name in LEAD_ARRAYS:
        values = getattr(ensemble, f"{name}_")
        if values is not None and values.shape != scores.shape:
            raise ValueError(f"{name} has shape {values.shape}, the calibration scores "
                             f"{scores.shape}")
    starts = ensemble.calibration_starts_
    if starts is not None and (starts.ndim != 1 or not len(starts) or starts[0] != 0
                               or (np.diff(starts) <= 0).any() or starts[-1] >= len(scores)):
        raise ValueError(f"calibration_starts must rise from 0 within the {len(scores)} "
                         f"calibration windows, got {starts.tolist()}")
    for name in ("spread_offset_", "flow_level_", "high_flow_threshold_", "min_value_",
                 "error_coefficient_"):
        _check_length(name.rstrip("_"), getattr(ensemble, name), n_outputs, "outputs")


def _build_scaler(data: dict[str, Any]) -> StandardScaler:
    scaler = StandardScaler(with_mean=data["with_mean"], with_std=data["with_std"])
    for attribute, key in (("mean_", "mean"), ("var_", "var"), ("scale_", "scale")):
        value = data[key]
        setattr(scaler, attribute, None if value is None else np.asarray(value, np.float64))
    seen = data["n_samples_seen"]
    scaler.n_samples_seen_ = np.asarray(seen, dtype=np.int64) if isinstance(seen, list) else seen
    scaler.n_features_in_ = int(data["n_features_in"])
    for key in ("mean", "var", "scale"):
        values = getattr(scaler, f"{key}_")
        if values is not None:
            _check_length(f"scaler {data['name']!r}: its {key}", values,
                          scaler.n_features_in_, "features")
    if data.get("feature_names_in") is not None:
        scaler.feature_names_in_ = np.asarray(data["feature_names_in"], dtype=object)
    return scaler


def load_model(
    path: str | os.PathLike[str], *, device: str = "cpu", return_metadata: bool = False
):
    """Load a model written by :func:`~sktlag.save_model`, without unpickling any object.

    Parameters
    ----------
    path : str or path-like
        A ``.pth`` file written by :func:`~sktlag.save_model`.
    device : str, default="cpu"
        Torch device for the network (also set as the ``device`` hyperparameter).
    return_metadata : bool, default=False
        Also return the ``metadata`` dict given to :func:`~sktlag.save_model`.

    Returns
    -------
    model : TLAGRegressor, TLAGEnsemble or Pipeline
        A fitted model that predicts exactly as the saved one. An ensemble comes back
        with its members (each as described next), seeds and calibration. A
        :class:`~sktlag.TLAGRegressor` with ``net_`` (the same skorch net as after
        ``fit``, growth callbacks included), ``module_``, ``n_layers_``, ``history_``,
        ``growth_history_``, ``derivative_history_``, ``best_epoch_``, ``best_score_``,
        ``growth_stop_rule_``, ``n_threads_`` (None and NaN for files written before
        they were stored),
        the standardization and the feature names restored; or a pipeline of the saved
        ``StandardScaler`` steps ending in one. With ``warm_start=True``, its ``fit``
        continues from the stored depth and weights (e.g. fine-tuning on another
        basin), extending the history.
    metadata : dict
        Only when ``return_metadata`` is True.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``device`` is not a torch device, or a CUDA device where torch finds none.
    ModelFileError
        (a ``ValueError``) if the file is truncated or damaged, holds pickled objects
        other than tensors and plain data, is not an sktlag model file, or was written
        in a newer format. The message names the file.
    """
    path = Path(path)
    check_device(device)
    payload = _read_payload(path)
    try:
        ensemble = payload.get("ensemble")
        if ensemble is not None:
            est = _build_ensemble(ensemble, device)
        else:
            est = _build_regressor(payload, device)
        pipeline = payload.get("pipeline")
        model = est
        if pipeline is not None:
            steps = [(s["name"], _build_scaler(s)) for s in pipeline["scalers"]]
            model = Pipeline([*steps, (pipeline["regressor_name"], est)])
            if hasattr(est, "feature_names_in_"):
                model.set_output(transform="pandas")
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError,
            OverflowError) as exc:
        # An entry missing, of the wrong kind, shape or size (an infinite batch size):
        # plain data that is not a model.
        raise ModelFileError(
            f"'{path}': the model file is inconsistent: {type(exc).__name__}: {exc}"
        ) from exc
    if return_metadata:
        metadata = payload.get("metadata", {})
        if not isinstance(metadata, dict):
            raise ModelFileError(f"'{path}': the model file is inconsistent: its metadata "
                                 f"is a {type(metadata).__name__}, not a mapping")
        return model, metadata
    return model
