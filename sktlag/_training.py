"""Building, running and continuing the skorch net of a :class:`~sktlag.TLAGRegressor`.

The estimator is the scikit-learn facade (parameters, validation, data); this module
owns the training machinery behind it:

- :func:`build_net`, the only place the skorch net is built (by ``fit`` around a new
  network and by :func:`sktlag.load_model` around a stored one, so both can train on);
- :func:`train`, which runs a built net, or continues a fitted one, on window datasets
  and returns the :class:`Outcome` of the run (best epoch and score, what ended it, the
  growth decisions);
- :func:`predict_windows`, the one loop that runs a network over windows.

Hyperparameters come in as the estimator's ``get_params()`` mapping.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import EarlyStopping, GradientNormClipping
from skorch.helper import predefined_split

from ._record import N_LAYERS, QUIET_KEYS
from .callbacks import (
    ArchitectureCheckpoint,
    GrowthStopped,
    LearningRateSchedule,
    NonFiniteGuard,
    PlateauDetector,
    TopologicalGrowth,
    ValidationNSE,
    validation_score,
)
from .losses import MaskedMSELoss, masked_mse
from .model import GrowingLSTM
from .windows import WindowDataset, collate_windows

#: Names of the callbacks the training net is built with; a user's callbacks may not
#: take them, nor those of the training recipe's callbacks (RECIPE_NAMES).
CALLBACK_NAMES = ("valid_nse", "checkpoint", "non_finite", "plateau", "growth")
_LR_SCHEDULE, _CLIP = "lr_schedule", "clip_gradient"
RECIPE_NAMES = (_LR_SCHEDULE, _CLIP)
_CHECKPOINT, _GROWTH = "checkpoint", "growth"

#: Windows per forward pass when predicting, by device type (at least ``batch_size``):
#: a GPU saves kernel launches with large chunks; on a CPU the LSTM's buffers of a chunk
#: of 1024 windows no longer stay in cache, and 256 ran faster.
_PREDICT_CHUNK = {"cpu": 256, "cuda": 1024}


def check_device(device) -> torch.device:
    """The torch device ``device`` names, or a ``ValueError`` that says why it cannot be used."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but torch finds no CUDA device here; use device='cpu'"
        )
    return resolved


class GrowingNet(NeuralNet):
    """skorch ``NeuralNet`` that remembers whether its last fit loop was interrupted.

    skorch ends the fit loop on any ``KeyboardInterrupt`` and still runs
    ``on_train_end``. ``interrupted_`` tells a user's interrupt (True) apart from the
    growth rule's own stop (:class:`sktlag.callbacks.GrowthStopped`), from a stop of
    skorch's ``EarlyStopping`` (its name in ``stopped_by_``) and from a loop that ran
    all its epochs (all False).
    """

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        self.interrupted_, self.stopped_by_ = False, None
        try:
            return super().fit_loop(X, y, epochs, **fit_params)
        except GrowthStopped:
            raise
        except KeyboardInterrupt:
            self.interrupted_ = self.stopped_by_ is None
            raise

    def notify(self, method_name, **cb_kwargs):
        # skorch's own notify, one callback at a time: EarlyStopping stops the loop by
        # raising KeyboardInterrupt, which only the callback that raised it tells
        # apart from Ctrl-C.
        getattr(self, method_name)(self, **cb_kwargs)
        for name, callback in self.callbacks_:
            try:
                getattr(callback, method_name)(self, **cb_kwargs)
            except KeyboardInterrupt:
                if isinstance(callback, EarlyStopping):
                    self.stopped_by_ = name
                raise


#: Held by a fit for its whole training, which works on torch's process-wide state (its
#: global generators, its thread count): fits in threads of one process (a joblib
#: Parallel nested in a search's worker runs in threads) take turns, or each would
#: reseed the others' generators in the middle of training and restore the thread count
#: another one saved. Predictions draw nothing and do not take it: they never wait for
#: a fit in another thread.
_TORCH_STATE = threading.RLock()


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (None: leave torch's setting)."""
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def flushing_subnormals() -> bool:
    """Whether this thread's CPU now flushes subnormal floats to zero."""
    # torch has no getter for the flag; with it on, a subnormal float32 reads as zero.
    return torch.tensor(1e-39, dtype=torch.float32).item() == 0.0


@contextlib.contextmanager
def seeded(seed: int, device):
    """Run the block with torch's generators of ``device`` seeded, then restore them.

    torch draws from global generators (weight initialization, dropout, batch order);
    scikit-learn's ``random_state`` contract is that an estimator draws from its own
    and leaves the caller's as it was, so the block works on a fork of them: the CPU's
    and the device's (CUDA through ``torch.random.fork_rng``, another accelerator such
    as ``mps`` through its module's generator state).
    """
    device = torch.device(device)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    other = None if device.type in ("cpu", "cuda") else torch.get_device_module(device.type)
    saved = None if other is None else other.get_rng_state()
    try:
        with torch.random.fork_rng(devices=cuda):
            torch.random.default_generator.manual_seed(seed)
            for index in cuda:
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(seed)
            if other is not None:
                other.manual_seed(seed)
            yield
    finally:
        if other is not None:
            other.set_rng_state(saved)


@contextlib.contextmanager
def subnormals_flushed():
    """Run the block with subnormal floats flushed to zero on the CPU (where it can).

    Why: an inserted layer starts with its gates at one half, so backpropagation through
    time halves its cell-state adjoint at every step, and over a window of months the
    gradients of the window's first days fall below float32's smallest normal number
    (1.2e-38). Many CPUs compute on such subnormal numbers far slower (Intel's through
    microcode assists): on the 31-year Lahn an epoch of a grown network took 3.8 to 6.4
    times that of a built one of the same depth on an Intel Xeon. Values that small
    cannot change a float32 gradient they are added to, so flushing them leaves the fit
    as it was (``benchmarks/growth_cost.py`` measures both).

    The flag belongs to the calling thread, and is restored when the block ends.
    torch's intra-op threads copy the flag of the thread that starts them: those started
    inside the block flush (and keep flushing afterwards), those started before it do
    not; torch offers no way to reach them.
    """
    if flushing_subnormals() or not torch.set_flush_denormal(True):
        yield  # already on, or not supported by this CPU
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def threads_for(n: int | None) -> int:
    """The torch CPU thread count ``torch_threads(n)`` runs a block on."""
    return torch.get_num_threads() if n is None else int(n)


def lr_factors(schedule) -> dict[int, float]:
    """An ``lr_schedule`` hyperparameter as ``{epoch: factor}``, checked.

    Raises
    ------
    ValueError
        If it is not a dict or a sequence of (epoch, factor) pairs, an epoch is not an
        integer >= 1 or a factor is not positive and finite.
    """
    try:
        pairs = list(schedule.items() if isinstance(schedule, dict) else (schedule or ()))
        pairs = [(epoch, factor) for epoch, factor in pairs]
    except (TypeError, ValueError):
        raise ValueError(
            f"lr_schedule must be a dict or a sequence of (epoch, factor) pairs, got "
            f"{schedule!r}"
        ) from None
    for epoch, factor in pairs:
        # (A bool is an Integral to Python, not an epoch or a factor to anyone.)
        if isinstance(epoch, bool) or not (isinstance(epoch, Integral) and epoch >= 1):
            raise ValueError(f"lr_schedule epochs must be integers >= 1, got {epoch!r}")
        if isinstance(factor, bool) or not (isinstance(factor, Real)
                                            and math.isfinite(factor) and factor > 0):
            raise ValueError(
                f"lr_schedule factor of epoch {epoch} must be positive, got {factor!r}"
            )
    return {int(epoch): float(factor) for epoch, factor in pairs}


def _callbacks(
    params: Mapping[str, Any],
    derivative_sample: Callable | None,
    seed: int,
    initial_score: float | None = None,
    holdout_sample: Callable | None = None,
) -> list[tuple[str, Any]]:
    checkpoint = ArchitectureCheckpoint(
        initial_score=initial_score, selection=params["select_by"]
    )
    plateau = PlateauDetector(
        patience=params["patience"],
        moving_avg_window=params["moving_avg_window"],
        max_epochs_per_layer=params["max_epochs_per_layer"],
    )
    growth = TopologicalGrowth(
        sample=derivative_sample,
        holdout=holdout_sample,
        checkpoint=checkpoint,
        plateau=plateau,
        loss_fn=masked_mse,
        grow_kwargs={
            "threshold": float(params["topo_derivative_threshold"]),
            "max_layers": params["max_layers"],
            "method": params["eigensolver"],
            "max_hvp": params["num_power_iterations"],
            "tol": params["eigensolver_tol"],
            "init_scale": params["init_scale"],
            "min_scale": params["min_init_scale"],
            "tolerance": params["backtracking_tolerance"],
            "seed": seed,
            "strategy": params["growth_strategy"],
            "criterion": params["derivative_criterion"],
            "hessian_products": params["hessian_products"],
        },
        sink=print if params["verbose"] else None,
        min_improvement=params["min_improvement"],
        keep_optimizer=params["growth_optimizer"] == "keep",
    )
    recipe = []
    factors = lr_factors(params["lr_schedule"])
    if factors:
        recipe.append((_LR_SCHEDULE, LearningRateSchedule(params["lr"], factors)))
    if params["clip_gradient_norm"] is not None:
        clipping = GradientNormClipping(gradient_clip_value=params["clip_gradient_norm"])
        recipe.append((_CLIP, clipping))
    ours = (ValidationNSE(), checkpoint, NonFiniteGuard(checkpoint), plateau, growth)
    return [*recipe, *zip(CALLBACK_NAMES, ours, strict=True), *(params["callbacks"] or [])]


def build_net(
    params: Mapping[str, Any],
    n_features: int,
    n_outputs: int,
    *,
    module: GrowingLSTM | None = None,
    valid_set: WindowDataset | None = None,
    derivative_sample: Callable | None = None,
    holdout_sample: Callable | None = None,
    seed: int = 0,
) -> GrowingNet:
    """The skorch net of a TLAGRegressor: the only place it is built.

    Parameters
    ----------
    params : mapping
        The estimator's hyperparameters (``get_params(deep=False)``).
    n_features, n_outputs : int
        Input columns and targets of the network.
    module : GrowingLSTM, optional
        An existing (e.g. grown and trained) network to wrap as it is; by default the
        net creates one from the hyperparameters when it is initialized.
    valid_set : WindowDataset, optional
        Validation windows; None leaves the net without a split (a fitted or loaded
        net until it trains again).
    derivative_sample : callable, optional
        Returns the windows the growth decisions are computed on.
    holdout_sample : callable, optional
        Returns the blocks of validation windows the decisions' directions are checked
        on (:func:`sktlag.growth.holdout_gains`).
    seed : int, default=0
        Seed of the growth decisions.

    Returns
    -------
    GrowingNet
        Not yet initialized.
    """
    if module is None:
        module_params = {
            "module": GrowingLSTM,
            "module__n_features": n_features,
            "module__hidden_size": params["hidden_size"],
            "module__num_layers": params["initial_num_layers"],
            "module__n_outputs": n_outputs,
            "module__dropout": params["dropout"],
            "module__output_dropout": params["output_dropout"],
            "module__initial_forget_bias": params["initial_forget_bias"],
        }
    else:
        # No module__ parameters: with them, skorch would replace the given instance
        # by a new, untrained one.
        if (module.n_features, module.n_outputs) != (n_features, n_outputs):
            raise ValueError(
                f"the network reads {module.n_features} features and predicts "
                f"{module.n_outputs} outputs, expected {n_features} and {n_outputs}"
            )
        module_params = {"module": module}
    return GrowingNet(
        **module_params,
        criterion=MaskedMSELoss,
        optimizer=torch.optim.Adam,
        lr=params["lr"],
        max_epochs=params["max_epochs"],
        batch_size=params["batch_size"],
        train_split=None if valid_set is None else predefined_split(valid_set),
        iterator_train__shuffle=True,
        iterator_train__collate_fn=collate_windows,
        iterator_valid__collate_fn=collate_windows,
        callbacks=_callbacks(params, derivative_sample, seed, holdout_sample=holdout_sample),
        callbacks__print_log__keys_ignored=list(QUIET_KEYS),
        device=params["device"],
        verbose=int(params["verbose"]),
    )


@dataclass
class Outcome:
    """What a training run ended with.

    Attributes
    ----------
    best_epoch : int or None
        Epoch whose weights the network holds (None if no epoch validated).
    best_score : float
        Its validation score (``-inf`` if none).
    stop_rule : str
        A rule of :data:`sktlag._record.STOP_RULES` or of
        :data:`sktlag._record.FIT_END_RULES`.
    decisions : list of dict
        The growth decisions of this run.
    interrupted : bool
        Whether a ``KeyboardInterrupt`` ended it.
    restored : str or None
        The state the network holds: ``"best"`` (the best validated), ``"start"`` (the
        one training started from, when no epoch validated) or None.
    """

    best_epoch: int | None
    best_score: float
    stop_rule: str
    decisions: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    restored: str | None = None


def train(
    net: GrowingNet,
    params: Mapping[str, Any],
    train_set: WindowDataset,
    valid_set: WindowDataset,
    *,
    derivative_sample: Callable,
    seed: int,
    continuing: bool = False,
    holdout_sample: Callable | None = None,
) -> Outcome:
    """Run ``net`` on the windows: from scratch, or continuing a fitted net.

    A new net (from :func:`build_net`) is initialized and trained. A continued one keeps
    its depth and weights and trains with fresh growth callbacks and a fresh optimizer;
    its state, scored on ``valid_set``, competes with the new epochs for the best, so
    continuing never ends on a worse validation score than it began.

    After the run the training data are released from the net (a fitted estimator and
    its pickle should not carry them), and an interrupted run's history loses the epoch
    cut short.
    """
    with _TORCH_STATE, torch_threads(params["n_threads"]), subnormals_flushed(), \
            seeded(seed, params["device"]):
        if continuing:
            initial = validation_score(*_targets_and_predictions(net.module_, valid_set,
                                                                 params["batch_size"]))
            net.set_params(
                train_split=predefined_split(valid_set),
                callbacks=_callbacks(params, derivative_sample, seed, initial,
                                     holdout_sample=holdout_sample),
                max_epochs=params["max_epochs"],
                batch_size=params["batch_size"],
                lr=params["lr"],
                verbose=int(params["verbose"]),
            )
            net.initialize_callbacks()
            net.partial_fit(train_set, y=None)
        else:
            net.fit(train_set, y=None)
    net.train_split = None
    interrupted = bool(getattr(net, "interrupted_", False))
    if interrupted and len(net.history) and N_LAYERS not in net.history[-1]:
        # The epoch cut short never reached the checkpoint (no n_layers): its row goes,
        # so the history holds completed epochs only.
        del net.history[-1]
    callbacks = dict(net.callbacks_)
    checkpoint, growth = callbacks[_CHECKPOINT], callbacks[_GROWTH]
    if interrupted:
        rule = "interrupted"
    elif getattr(net, "stopped_by_", None) is not None:
        rule = "early_stopping"
    elif growth.stopped_:
        rule = growth.decisions_[-1]["rule"]
    else:
        rule = "max_epochs"
    return Outcome(
        best_epoch=checkpoint.best_epoch_,
        best_score=float(checkpoint.best_score_),
        stop_rule=rule,
        decisions=list(growth.decisions_),
        interrupted=interrupted,
        restored=checkpoint.restored_,
    )


def interruption_message(net: GrowingNet, outcome: Outcome) -> str:
    """What a user is told after an interrupted run."""
    last = net.history[-1]["epoch"] if len(net.history) else 0
    kept = (
        "the best validated state so far" if outcome.restored == "best"
        else "the network training started from"
    )
    return (
        f"fit interrupted after {last} completed epoch(s); the model is {kept} "
        f"({net.module_.num_layers} layer(s)). Fit again with warm_start=True to continue."
    )


def predict_windows(module: torch.nn.Module, dataset: WindowDataset, batch_size: int):
    """The network's outputs for every window of ``dataset`` (eval mode, no gradients).

    Returns
    -------
    ndarray of shape (n_windows, n_outputs), float64
        In the network's (standardized) units.
    """
    device = next(module.parameters()).device
    chunk = max(batch_size, _PREDICT_CHUNK.get(device.type, _PREDICT_CHUNK["cuda"]))
    out = []
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            for first in range(0, len(dataset), chunk):
                Xb, _ = dataset.__getitems__(range(first, min(first + chunk, len(dataset))))
                out.append(module(Xb.to(device)).double().cpu().numpy())
    finally:
        module.train(was_training)
    return np.concatenate(out) if out else np.empty((0, module.n_outputs))


def _targets_and_predictions(module, dataset: WindowDataset, batch_size: int):
    y_pred = predict_windows(module, dataset, batch_size)
    y_true = dataset.y[torch.from_numpy(dataset.ends)].double().numpy()
    return y_true.reshape(y_pred.shape), y_pred
