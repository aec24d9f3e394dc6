"""skorch callbacks that decide *when* the network grows, and keep its best state.

One concern per class; they talk through ``net.history``:

- :class:`ValidationNSE` records ``valid_nse`` and ``valid_score`` from the validation
  predictions skorch already made (no extra forward pass);
- :class:`ArchitectureCheckpoint` keeps the best weights of the current architecture
  and the best architecture and weights of the whole run, and restores the latter when
  training ends (also when it ends by an interrupt);
- :class:`NonFiniteGuard` ends an architecture whose training diverged (NaN or inf),
  back at its best finite weights;
- :class:`PlateauDetector` records ``valid_nse_ma`` (from the architecture's first full
  window) and ``plateau``: the moving average has not improved for ``patience`` epochs,
  or the architecture had its epoch budget;
- :class:`TopologicalGrowth` reacts to a plateau: back to the architecture's best
  weights, compute the topological derivatives, insert a layer or end growth. Growth
  that ends at an architecture's epoch budget, not at its own plateau, lets it train on
  to that plateau; growth that ends at a plateau ends training, unless the layer just
  grown did not pay and its parent had been cut short by that budget: the parent then
  trains on to its own plateau.

Only finite weights are ever stored, so whatever happens during training (a NaN loss,
a failed growth decision, a ``KeyboardInterrupt`` at any point), the state restored at
the end is one that completed an epoch, or the state training started from.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from skorch.callbacks import Callback

from ._record import (
    BEST,
    EPOCH,
    GROWTH_STOPPED,
    INSERTED,
    LAYER_ADDED,
    N_LAYERS,
    NON_FINITE,
    PLATEAU,
    STOP_RULES,
    TRAIN_LOSS,
    VALID_NSE,
    VALID_SCORE,
    VALID_SCORE_MA,
    architecture_score,
    describe_decision,
)
from .growth import GrowthDecision, grow
from .metrics import nse
from .model import GrowingLSTM

__all__ = [
    "ArchitectureCheckpoint",
    "GrowthStopped",
    "LearningRateSchedule",
    "NonFiniteGuard",
    "PlateauDetector",
    "STOP_RULES",
    "TopologicalGrowth",
    "ValidationNSE",
    "nse_per_output",
    "validation_score",
]

# A validation target whose variance is below this fraction of its mean square is
# constant up to rounding: its NSE is undefined.
_CONSTANT_RTOL = 1e-12


class GrowthStopped(KeyboardInterrupt):  # noqa: N818 (a stop signal, not an error)
    """Raised by :class:`TopologicalGrowth` to end training when growth is over.

    skorch ends its fit loop on a ``KeyboardInterrupt`` and still runs
    ``on_train_end``; this subclass lets the net tell the growth rule's own stop apart
    from a user's Ctrl-C.
    """


def _is_constant(t: np.ndarray) -> bool:
    return len(t) < 2 or float(np.var(t)) <= _CONSTANT_RTOL * max(float(np.mean(t * t)), 1e-300)


def nse_per_output(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """NSE of every column over its observed (non-NaN) rows; NaN where undefined.

    The NSE is undefined for a column with fewer than two observations or a constant
    one (up to rounding); it is ``-inf`` where the predictions are not all finite.
    """
    observed = ~np.isnan(y_true)
    out = np.full(y_true.shape[1], np.nan)
    for k in range(y_true.shape[1]):
        t, p = y_true[observed[:, k], k], y_pred[observed[:, k], k]
        if _is_constant(t):
            continue
        # Predictions that are not finite are as bad as predictions can be.
        out[k] = nse(t, p) if np.isfinite(p).all() else -np.inf
    return out


def validation_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The score that selects checkpoints and detects plateaus: higher is better.

    Per output, the NSE where it is defined; where the observed validation targets are
    constant (a dry spell, a constant series) it is ``1 - MSE``, the NSE measured against
    the training variance (targets are standardized on the training rows, so that
    variance is 1). The mean over the outputs with observations; ``-inf`` when the
    predictions are not all finite or nothing is observed. Whether an output uses the
    fallback depends on the targets only, so scores of different epochs compare.

    Parameters
    ----------
    y_true, y_pred : ndarray of shape (n_windows, n_outputs)
        Standardized targets (NaN where masked) and predictions.

    Returns
    -------
    float
    """
    if not np.isfinite(y_pred).all():
        return -math.inf
    observed = ~np.isnan(y_true)
    per_output = nse_per_output(y_true, y_pred)
    scores = []
    for k in range(y_true.shape[1]):
        t, p = y_true[observed[:, k], k], y_pred[observed[:, k], k]
        if len(t) == 0:
            continue
        defined = np.isfinite(per_output[k])
        scores.append(float(per_output[k]) if defined else 1.0 - float(np.mean((t - p) ** 2)))
    return float(np.mean(scores)) if scores else -math.inf


class LearningRateSchedule(Callback):
    """Set the optimizer's learning rate at the start of every epoch from a schedule.

    The rate is set afresh each epoch, so it also holds for an optimizer that growth
    re-created or extended in between.

    Parameters
    ----------
    lr : float
        Base learning rate.
    factors : dict of int to float
        ``{epoch: factor}``: the rate is ``factor * lr`` from that epoch (of this
        training run, counted from 1) on, and ``lr`` before the first one.
    """

    def __init__(self, lr: float, factors: dict[int, float]):
        self.lr = lr
        self.factors = factors

    def initialize(self):
        self.epochs_ = 0
        return self

    def rate_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (counted from 1)."""
        started = [e for e in self.factors if e <= epoch]
        return float(self.lr) * (float(self.factors[max(started)]) if started else 1.0)

    def on_epoch_begin(self, net, **kwargs):
        self.epochs_ += 1
        rate = self.rate_at(self.epochs_)
        for group in net.optimizer_.param_groups:
            group["lr"] = rate


class ValidationNSE(Callback):
    """Record ``valid_nse`` and ``valid_score`` for the validation windows.

    ``valid_nse`` is the mean Nash-Sutcliffe efficiency over the outputs where it is
    defined (``-inf`` where it is defined for none, or the predictions are not finite);
    ``valid_score`` is :func:`validation_score`, equal to ``valid_nse`` unless some
    output's validation targets are constant. Collected from ``on_batch_end`` of the
    validation batches; targets that are NaN (masked) are left out.
    """

    def on_epoch_begin(self, net, **kwargs):
        self._pred, self._true = [], []

    def on_batch_end(self, net, batch, training, **kwargs):
        if not training:
            self._pred.append(kwargs["y_pred"].detach().cpu().double())
            self._true.append(batch[1].detach().cpu().double())

    def on_epoch_end(self, net, **kwargs):
        if not self._pred:
            return
        y_pred = torch.cat(self._pred).numpy()
        y_true = torch.cat(self._true).numpy().reshape(y_pred.shape)
        per_output = nse_per_output(y_true, y_pred)
        value = float(np.nanmean(per_output)) if np.isfinite(per_output).any() else -np.inf
        net.history.record(VALID_NSE, value)
        net.history.record(VALID_SCORE, validation_score(y_true, y_pred))
        self._pred, self._true = [], []

    def on_train_end(self, net, **kwargs):
        # An epoch cut short by an interrupt never reaches on_epoch_end: its batches'
        # predictions and targets must not stay in the fitted (and pickled) estimator.
        self._pred, self._true = [], []


def _finite_state(module: torch.nn.Module) -> dict | None:
    """A deep copy of the module's state, or None if any parameter is NaN or inf."""
    if not all(torch.isfinite(p).all() for p in module.parameters()):
        return None
    return copy.deepcopy(module.state_dict())


class ArchitectureCheckpoint(Callback):
    """Keep the best state of the current architecture and of the whole run, in memory.

    skorch's ``Checkpoint(load_best=True)`` cannot reload a state whose shapes changed
    through growth; this one stores the architecture spec next to the weights.
    Records ``n_layers`` every epoch and ``valid_nse_best``: True in the one row whose
    weights are the run's best so far.
    Only states with finite parameters and a finite score are stored.

    Besides the best states it keeps the state each architecture started from (the
    network at the start of training, or right after a layer was inserted), which is
    what the restore methods fall back to when no epoch of it validated with a finite
    score (e.g. an interrupt during the first epoch, or a loss that was NaN from the
    start).

    Which architecture wins is decided by ``selection``: ``"moving_average"`` compares
    architectures by the best moving average of their validation score (``ma_key``,
    recorded by :class:`PlateauDetector`) when each one ends, so a single lucky epoch
    cannot make an architecture the fitted one; the winner's weights are its best
    single epoch. ``"epoch"`` takes the best single epoch of the whole run.

    Parameters
    ----------
    monitor : str, default="valid_score"
        History key to maximize.
    initial_score : float or None, default=None
        Score of the state training starts from, when it is known (a warm start): that
        state then competes for the run's best, so continued training never ends worse
        on the validation windows than it began.
    selection : {"moving_average", "epoch"}, default="moving_average"
        How the best architecture of the run is chosen (see above).
    ma_key : str, default="valid_nse_ma"
        History key of the moving average.
    """

    def __init__(
        self,
        monitor: str = VALID_SCORE,
        initial_score: float | None = None,
        selection: str = "moving_average",
        ma_key: str = VALID_SCORE_MA,
    ):
        self.monitor = monitor
        self.initial_score = initial_score
        self.selection = selection
        self.ma_key = ma_key

    def initialize(self):
        self.best_score_ = -np.inf
        self.best_spec_ = None
        self.best_state_ = None
        self.best_epoch_ = None
        # Moving-average score of the run's best architecture (-inf before one ended),
        # and that architecture's first epoch.
        self.best_arch_score_ = -np.inf
        self.best_arch_first_epoch_ = None
        self.start_spec_ = None
        self.start_state_ = None
        # Which state training ended on (set by on_train_end): "best", "start" or None.
        self.restored_ = None
        self.reset_architecture()
        return self

    def reset_architecture(self, net=None) -> None:
        """Forget the current architecture's best (called after a layer is inserted).

        With ``net``, its current state becomes the architecture's starting state.
        """
        self.arch_best_score_ = -np.inf
        self.arch_best_state_ = None
        self.arch_best_spec_ = None
        self.arch_best_epoch_ = None
        self.arch_first_epoch_ = None
        self.arch_depth_ = None
        self.arch_start_state_ = None if net is None else _finite_state(net.module_)

    # What snapshot and resume keep: the current architecture's best so far, and the
    # run's best before it closed.
    _SNAPSHOT_FIELDS = ("arch_best_score_", "arch_best_state_", "arch_best_spec_",
                        "arch_best_epoch_", "arch_first_epoch_", "arch_depth_",
                        "arch_start_state_", "best_score_", "best_spec_", "best_state_",
                        "best_epoch_", "best_arch_score_", "best_arch_first_epoch_")

    def snapshot(self) -> dict:
        """The current architecture's best so far and the run's, before the architecture
        closes, to take up again (:meth:`resume`)."""
        return {name: getattr(self, name) for name in self._SNAPSHOT_FIELDS}

    def resume(self, snapshot: dict, net) -> None:
        """Take up an architecture where :meth:`snapshot` left it, as if it had never
        closed: a parent that trains on after the network grown at its cap did not pay
        keeps its best epochs from before the cap, and neither its close at the cap nor
        the grown network (rejected, its epochs of another depth) counts for the run's
        best, as in a run that was never capped."""
        for name in self._SNAPSHOT_FIELDS:
            setattr(self, name, snapshot[name])
        _flag_epoch(net.history, self.best_epoch_, BEST)  # None: no row flagged

    def _architecture_rows(self, net) -> list:
        """The history rows of the current architecture (none before its first epoch)."""
        if self.arch_first_epoch_ is None:
            return []
        return [row for row in net.history if row[EPOCH] >= self.arch_first_epoch_
                and row.get(N_LAYERS) == self.arch_depth_]

    def architecture_has_full_window(self, net) -> bool:
        """Whether the current architecture has trained a full moving-average window
        (before that its score is only the mean of its first epochs)."""
        averages = (row.get(self.ma_key) for row in self._architecture_rows(net))
        return any(value is not None and not math.isnan(value) for value in averages)

    def architecture_score(self, net) -> float:
        """Best moving-average score of the current architecture so far (-inf if none;
        see ``architecture_score`` in ``sktlag._record``)."""
        if self.arch_first_epoch_ is None:
            return -np.inf
        return architecture_score(self._architecture_rows(net), self.monitor, self.ma_key)

    def close_architecture(self, net) -> float:
        """Let the current architecture compete for the run's best; its score.

        Called when an architecture ends (before a growth decision, and when training
        ends). It may be called again for an architecture that trained on after a
        decision that did not grow it: the result is the same as one call at the end.
        """
        score = self.architecture_score(net)
        # An architecture that already holds the run's best keeps it with the same
        # score, but its best single epoch may have come after the earlier call.
        holds_best = (self.arch_first_epoch_ is not None
                      and self.arch_first_epoch_ == self.best_arch_first_epoch_)
        if score > self.best_arch_score_ or (holds_best and score == self.best_arch_score_):
            self.best_arch_score_ = score
            self.best_arch_first_epoch_ = self.arch_first_epoch_
            if self.selection == "moving_average" and self.arch_best_state_ is not None:
                self.best_score_ = self.arch_best_score_
                self.best_spec_ = self.arch_best_spec_
                self.best_state_ = self.arch_best_state_
                self.best_epoch_ = self.arch_best_epoch_
                _flag_epoch(net.history, self.best_epoch_, BEST)
        return score

    def on_train_begin(self, net, **kwargs):
        module = net.module_
        self.reset_architecture(net)
        self.start_state_ = self.arch_start_state_
        self.start_spec_ = module.get_spec() if self.start_state_ is not None else None
        score = self.initial_score
        if self.start_state_ is not None and score is not None and np.isfinite(score):
            # The state holds the earlier fit's best epoch, the one this callback
            # flagged; a history without the flag ends on the state's epoch.
            flagged = [row[EPOCH] for row in net.history if row.get(BEST)]
            epoch = flagged[-1] if flagged else (
                net.history[-1][EPOCH] if len(net.history) else None)
            self.best_score_ = self.arch_best_score_ = float(score)
            self.best_arch_score_ = float(score)
            self.best_spec_ = self.arch_best_spec_ = self.start_spec_
            self.best_state_ = self.arch_best_state_ = self.start_state_
            self.best_epoch_ = self.arch_best_epoch_ = epoch

    def on_epoch_end(self, net, **kwargs):
        module = net.module_
        net.history.record(N_LAYERS, module.num_layers)
        if self.arch_first_epoch_ is None:
            self.arch_first_epoch_ = net.history[-1][EPOCH]
            self.arch_depth_ = module.num_layers
        score = net.history[-1].get(self.monitor, -np.inf)
        if not (np.isfinite(score) and score > self.arch_best_score_):
            return
        state = _finite_state(module)
        if state is None:
            return
        epoch = net.history[-1][EPOCH]
        self.arch_best_score_ = score
        self.arch_best_state_ = state
        # The spec goes with the weights: the module may have grown by the time the
        # architecture is closed (an interrupt during a decision).
        self.arch_best_spec_ = module.get_spec()
        self.arch_best_epoch_ = epoch
        if self.selection == "epoch" and score > self.best_score_:
            self.best_score_ = score
            self.best_spec_ = self.arch_best_spec_
            self.best_state_ = state
            self.best_epoch_ = epoch
            _flag_epoch(net.history, epoch, BEST)

    def restore_architecture_best(self, net) -> bool:
        """Load the best weights seen for the current architecture.

        Falls back to the architecture's starting state when none validated. Returns
        whether a state was loaded.
        """
        state = self.arch_best_state_ if self.arch_best_state_ is not None else (
            self.arch_start_state_
        )
        if state is None:
            return False
        net.module_.load_state_dict(state)
        return True

    def restore_run_best(self, net) -> str | None:
        """Make ``net.module_`` the best architecture and weights of the whole run.

        Falls back to the state training started from when no epoch validated.
        Returns which state was loaded: ``"best"``, ``"start"`` or None (none known).
        """
        spec, state, which = self.best_spec_, self.best_state_, "best"
        if state is None:
            spec, state, which = self.start_spec_, self.start_state_, "start"
        if state is None:
            return None
        _load_network(net, spec, state)
        return which

    def on_train_end(self, net, **kwargs):
        # Also after an interrupt: whatever the module holds now (a half-trained epoch,
        # weights of an interrupted decision), the kept state completed an epoch.
        self.close_architecture(net)
        self.restored_ = self.restore_run_best(net)
        # The module now holds the kept state: the copies of weights go. A fitted
        # estimator should not carry them, and a pickle holding copies on the training
        # device could not be loaded where that device does not exist.
        self.best_state_ = self.arch_best_state_ = None
        self.start_state_ = self.arch_start_state_ = None


def _random_streams(device) -> list[torch.Tensor]:
    """The states of the generators training draws from on ``device`` (batch order and
    dropout): the CPU's, and the device's own where it has one."""
    device = torch.device(device)
    states = [torch.random.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    elif device.type != "cpu":
        states.append(torch.get_device_module(device.type).get_rng_state())
    return states


def _set_random_streams(device, states: list[torch.Tensor]) -> None:
    """Set the generators :func:`_random_streams` reads back to ``states``."""
    device = torch.device(device)
    torch.random.set_rng_state(states[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states[1], device)
    elif device.type != "cpu":
        torch.get_device_module(device.type).set_rng_state(states[1])


def _load_network(net, spec: dict, state: dict) -> None:
    """Make ``net.module_`` the architecture ``spec`` holding ``state``, with a fresh
    optimizer."""
    if spec != net.module_.get_spec():
        device = next(net.module_.parameters()).device
        net.module_ = GrowingLSTM.from_spec(spec).to(device)
    net.module_.load_state_dict(state)
    net.initialize_optimizer()


def _flag_epoch(history, epoch, key: str) -> None:
    """Make the row of ``epoch`` (a row already written) the only one with ``key`` True."""
    for row in history:
        if row[EPOCH] == epoch:
            row[key] = True
        elif row.get(key):
            row[key] = False


class NonFiniteGuard(Callback):
    """End an architecture whose training produced a NaN or inf, from finite weights.

    At the end of an epoch whose training loss is not finite or whose parameters are
    not all finite, the architecture's best weights (or its starting state) are
    restored, the optimizer is re-created (Adam's moments may hold NaN), ``non_finite``
    is recorded and a ``RuntimeWarning`` issued. :class:`PlateauDetector` treats the
    epoch as a plateau, so the growth rule decides next, on the restored weights.
    Place it after :class:`ArchitectureCheckpoint`, which never stores such a state.

    Parameters
    ----------
    checkpoint : ArchitectureCheckpoint
    """

    def __init__(self, checkpoint: ArchitectureCheckpoint):
        self.checkpoint = checkpoint

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        loss = row.get(TRAIN_LOSS, math.nan)
        params_finite = all(torch.isfinite(p).all() for p in net.module_.parameters())
        if math.isfinite(loss) and params_finite:
            return
        had_best = self.checkpoint.arch_best_state_ is not None
        restored = self.checkpoint.restore_architecture_best(net)
        net.initialize_optimizer()
        net.history.record(NON_FINITE, True)
        what = "parameters" if math.isfinite(loss) else f"training loss ({loss})"
        if not restored:
            action = "no finite weights of this architecture to go back to"
        else:
            kept = "best validated" if had_best else "starting"
            action = f"back to the architecture's {kept} weights, its training ends"
        warnings.warn(
            f"epoch {row[EPOCH]}: non-finite {what}; {action}", RuntimeWarning, stacklevel=2
        )


class PlateauDetector(Callback):
    """Decide when the current architecture has finished training.

    The moving average over the last ``moving_avg_window`` epochs of this architecture's
    ``monitor`` (``valid_score``, which is the validation NSE wherever that is defined)
    is recorded as ``valid_nse_ma`` (NaN until the architecture has trained that many
    epochs). ``plateau`` is recorded True when it has not improved for ``patience``
    epochs counted from its first full window, when the architecture has trained
    ``max_epochs_per_layer`` epochs (its cap, unless lifted), or when
    :class:`NonFiniteGuard` ended it.

    Attributes
    ----------
    capped_ : bool
        Whether ``max_epochs_per_layer`` ends the current architecture.
    at_cap_only_ : bool
        Whether the last plateau was the cap alone: the architecture was still
        improving and finite.
    """

    def __init__(
        self,
        patience: int,
        moving_avg_window: int,
        max_epochs_per_layer: int,
        monitor: str = VALID_SCORE,
    ):
        self.patience = patience
        self.moving_avg_window = moving_avg_window
        self.max_epochs_per_layer = max_epochs_per_layer
        self.monitor = monitor

    def initialize(self):
        self.reset_architecture()
        return self

    def reset_architecture(self) -> None:
        """Start counting for a new architecture, under the cap."""
        self.scores_ = []
        self.best_ma_ = -np.inf
        self.since_best_ = 0
        self.capped_ = True
        self.at_cap_only_ = False

    def lift_cap(self) -> None:
        """Let the current architecture train on until its own plateau."""
        self.capped_ = False

    def snapshot(self) -> dict:
        """The current architecture's count, for :meth:`resume`."""
        return {"scores": list(self.scores_), "best_ma": self.best_ma_,
                "since_best": self.since_best_}

    def resume(self, snapshot: dict) -> None:
        """Count on for an architecture from its :meth:`snapshot`, without the cap."""
        self.scores_ = list(snapshot["scores"])
        self.best_ma_ = snapshot["best_ma"]
        self.since_best_ = snapshot["since_best"]
        self.capped_ = False
        self.at_cap_only_ = False

    def on_epoch_end(self, net, **kwargs):
        score = net.history[-1].get(self.monitor, -np.inf)
        self.scores_.append(score if np.isfinite(score) else -np.inf)
        # No average before a full window: a grown architecture starts from its parent's
        # best weights, so an average over its first epoch or two would be one lucky
        # epoch, and would judge it against the parent's full-window averages.
        full = len(self.scores_) >= self.moving_avg_window
        ma = float(np.mean(self.scores_[-self.moving_avg_window :])) if full else math.nan
        net.history.record(VALID_SCORE_MA, ma)
        if full and ma > self.best_ma_:
            self.best_ma_, self.since_best_ = ma, 0
        elif full:
            self.since_best_ += 1
        ended = (
            self.since_best_ >= self.patience
            or bool(net.history[-1].get(NON_FINITE, False))
        )
        at_cap = self.capped_ and len(self.scores_) >= self.max_epochs_per_layer
        self.at_cap_only_ = at_cap and not ended
        net.history.record(PLATEAU, bool(ended or at_cap))


class TopologicalGrowth(Callback):
    """On a plateau, grow the network where the topological derivative is largest.

    Parameters
    ----------
    sample : callable
        Returns ``(X, y)`` tensors of the fixed sample of training windows the
        derivatives are computed on (called when needed, so it follows the device).
    holdout : callable, optional
        Returns blocks ``[(X, y), ...]`` of validation windows on which each decision
        also measures its directions' held-out statistic (the ``"holdout"`` criterion
        needs them).
    checkpoint : ArchitectureCheckpoint
        Supplies the architecture's best weights before the decision.
    plateau : PlateauDetector
        Reset for the new architecture after an insertion.
    grow_kwargs : dict
        Passed to :func:`sktlag.growth.grow` (threshold, max_layers, eigensolver ...).
    min_improvement : float, default=0.0
        A grown architecture must raise the best moving-average validation score of the
        run by more than this, or growth ends (the ``"validation"`` rule) without
        computing derivatives.
    keep_optimizer : bool, default=True
        After an insertion, keep the optimizer (Adam's moment estimates of the existing
        parameters) and add the new layer's parameters as a parameter group; False
        re-creates the optimizer from scratch.

    Attributes
    ----------
    decisions_ : list of dict
        One entry per growth decision: epoch, depth before, the decision's fields,
        ``architecture_score`` (best moving-average validation score of the
        architecture that just ended) and ``rule``: ``"inserted"``, or the rule that
        ended growth (one of :data:`STOP_RULES`).
    stopped_ : bool
        Whether growth ended (a rule of :data:`STOP_RULES`).

    Notes
    -----
    When growth ends at a plateau of the current architecture, training ends with it.
    When it ends at the architecture's epoch cap (``max_epochs_per_layer``) while the
    architecture was still improving, the cap, which only kept epochs for growth, is
    lifted: the network goes back to the weights and optimizer it had before the
    decision and trains on until its own plateau or the epoch budget, exactly as if it
    had never been capped. The epochs the cap kept are given back in the same way when a
    layer inserted at a cap does not pay: where the validation rule ends growth at the
    grown architecture's own plateau and its parent was still improving when the cap
    ended it, the parent comes back (without the new layer, with the weights, Adam
    moments, moving average and random streams of training it had at its cap) and
    trains on to its own plateau or the budget, epoch for epoch as it would have
    trained had the cap not stopped it, in the epochs the budget has left (at the
    learning rate :class:`LearningRateSchedule` gives those epochs of the run).

    A decision is recorded in ``decisions_`` as soon as :func:`sktlag.growth.grow`
    returns, before anything else can be interrupted, so a recorded insertion always
    happened; an interrupt inside ``grow`` records nothing and leaves no layer behind
    (a half-inserted layer is removed). Growth ends training by raising
    :class:`GrowthStopped` when the next epoch begins.
    """

    def __init__(
        self,
        sample: Callable[[], tuple[torch.Tensor, torch.Tensor]],
        checkpoint: ArchitectureCheckpoint,
        plateau: PlateauDetector,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        grow_kwargs: dict,
        sink: Callable[[str], None] | None = None,
        min_improvement: float = 0.0,
        keep_optimizer: bool = True,
        holdout: Callable[[], list[tuple[torch.Tensor, torch.Tensor]]] | None = None,
    ):
        self.sample = sample
        self.holdout = holdout
        self.checkpoint = checkpoint
        self.plateau = plateau
        self.loss_fn = loss_fn
        self.grow_kwargs = grow_kwargs
        self.sink = sink
        self.min_improvement = min_improvement
        self.keep_optimizer = keep_optimizer

    def initialize(self):
        self.decisions_ = []
        self.stopped_ = False
        self._end_training = False
        self._unsent = []
        # The architecture a layer was just inserted into at its cap, while it was
        # still improving (see Notes); None otherwise.
        self._capped_parent = None
        return self

    def _send(self):
        # A decision is taken at the end of an epoch, before the epoch table (the last
        # callback) prints that epoch's row: its line is sent once the row is out.
        if self.sink is not None:
            for line in self._unsent:
                self.sink(line)
        self._unsent = []

    def on_train_end(self, net, **kwargs):
        self._send()
        # The samples reference the training series, which a fitted estimator (and its
        # pickle) should not carry around; nor should a parent's weights.
        self.sample = None
        self.holdout = None
        self._capped_parent = None

    def on_train_begin(self, net, **kwargs):
        self.first_epoch_ = len(net.history) + 1

    def on_epoch_end(self, net, **kwargs):
        at_budget = net.history[-1][EPOCH] - self.first_epoch_ + 1 >= net.max_epochs
        if at_budget and not self.stopped_:
            # The epoch budget ends here, at a plateau or not: a new layer could not be
            # trained, but the validation rule can still judge the last grown
            # architecture, so the record says whether deeper stopped helping (the
            # architecture competes for the run's best when training ends, as always).
            # One still training without a full window has no score to judge yet; one
            # that ended (its plateau or its cap) is judged as it would be mid-run.
            ended = net.history[-1].get(PLATEAU, False)
            if not (ended or self.checkpoint.architecture_has_full_window(net)):
                return
            score = self.checkpoint.architecture_score(net)
            decision = self._validation_rule(net, score, self.checkpoint.best_arch_score_)
            if decision is not None:
                self._stop(net, decision, score, net.module_.num_layers)
            return
        if not net.history[-1].get(PLATEAU, False):
            return
        if self.stopped_:
            # Growth ended at the cap; this is the architecture's own plateau.
            self._end_training = True
            return
        # Where training may go on after the decision, it goes on from here.
        current = _finite_state(net.module_) if self.plateau.at_cap_only_ else None
        if current is not None:
            current = self._capture(net, current)
        self.checkpoint.restore_architecture_best(net)
        best_before = self.checkpoint.best_arch_score_
        score = self.checkpoint.close_architecture(net)
        depth = net.module_.num_layers  # before a decision inserts a layer
        decision = self._validation_rule(net, score, best_before) or self._decide(net)
        parent, self._capped_parent = self._capped_parent, None
        if decision.inserted:
            self._record(net, decision, score, depth)
            net.history.record(LAYER_ADDED, decision.position)
            self._capped_parent = current
            self.checkpoint.reset_architecture(net)
            self.plateau.reset_architecture()
            if self.keep_optimizer:
                layer = net.module_.layers[decision.position]
                net.optimizer_.add_param_group({"params": list(layer.parameters())})
            else:
                net.initialize_optimizer()
            return
        self._stop(net, decision, score, depth)
        if current is None and parent is not None and decision.rule == "validation":
            # The new layer did not pay, and the parent had not finished.
            self._resume(net, parent)
            return
        if current is None:
            self._end_training = True
            return
        # The decision touched neither the optimizer nor the random streams of
        # training (it runs on its own generator, in eval mode): with the weights back,
        # training continues as if the cap had never been.
        net.module_.load_state_dict(current["state"])
        self.plateau.lift_cap()

    def _capture(self, net, state: dict) -> dict:
        """What an architecture at its cap needs to train on later as if it had never
        been capped: its architecture, weights (``state``), the optimizer's state of
        each parameter, its plateau count, its best epochs so far and the random
        streams of training."""
        optimizer_state = net.optimizer_.state
        moments = {name: copy.deepcopy(optimizer_state[p])
                   for name, p in net.module_.named_parameters() if p in optimizer_state}
        return {"spec": net.module_.get_spec(), "state": state, "moments": moments,
                "plateau": self.plateau.snapshot(),
                "checkpoint": self.checkpoint.snapshot(),
                "random_streams": _random_streams(net.device),
                "epoch": net.history[-1][EPOCH]}

    def _resume(self, net, parent: dict) -> None:
        """Go back to ``parent`` as :meth:`_capture` kept it, to train on uncapped."""
        _load_network(net, parent["spec"], parent["state"])
        for name, p in net.module_.named_parameters():
            if name in parent["moments"]:
                net.optimizer_.state[p] = parent["moments"][name]
        self.checkpoint.resume(parent["checkpoint"], net)
        self.plateau.resume(parent["plateau"])
        # The grown network's epochs drew batch orders and dropout masks; the parent
        # draws what it would have drawn had the cap not stopped it.
        _set_random_streams(net.device, parent["random_streams"])
        self._unsent.append(
            f"epoch {net.history[-1][EPOCH]}: back to {net.module_.num_layers} layer(s) as "
            f"at epoch {parent['epoch']}, where the cap stopped them; they train on")

    def _validation_rule(self, net, score: float, best_before: float):
        """The decision that ends growth when the last grown architecture did not beat
        the best before it by ``min_improvement``; None otherwise."""
        grown = bool(self.decisions_) and self.decisions_[-1]["rule"] == INSERTED
        # min_improvement = -inf switches the rule off (also when scores are -inf).
        if not grown or self.min_improvement == -math.inf:
            return None
        if score > best_before + self.min_improvement:
            return None
        return GrowthDecision(
            derivatives=[], position=None, inserted=False, rule="validation",
            criterion=self._criterion(),
            reason=(f"validation: {net.module_.num_layers} layers reached {score:.4f}, not "
                    f"more than {self.min_improvement:g} above the best {best_before:.4f}"),
        )

    def _record(self, net, decision: GrowthDecision, score: float, depth: int) -> None:
        entry = {EPOCH: net.history[-1][EPOCH], "n_layers_before": depth,
                 "architecture_score": score}
        entry.update(decision.as_dict())
        self.decisions_.append(entry)
        self._unsent.append(describe_decision(entry))

    def _stop(self, net, decision: GrowthDecision, score: float, depth: int) -> None:
        self._record(net, decision, score, depth)
        self.stopped_ = True
        net.history.record(GROWTH_STOPPED, decision.reason)

    def _decide(self, net) -> GrowthDecision:
        X, y = self.sample()
        holdout = None if self.holdout is None else self.holdout()
        try:
            return grow(net.module_, X, y, self.loss_fn, holdout=holdout, **self.grow_kwargs)
        except (RuntimeError, ValueError, FloatingPointError) as exc:
            warnings.warn(f"growth decision skipped: {exc}", RuntimeWarning, stacklevel=3)
            return GrowthDecision(
                derivatives=[], position=None, inserted=False, rule="not_computable",
                reason=f"not computable ({type(exc).__name__}: {exc})",
                criterion=self._criterion(),
            )

    def _criterion(self) -> str:
        """The criterion the fit's decisions compare (the decisions' default if unset)."""
        return self.grow_kwargs.get("criterion", GrowthDecision.criterion)

    def on_epoch_begin(self, net, **kwargs):
        # The stop is raised at the start of the next epoch, not at the end of the one
        # that decided it: callbacks after this one (epoch table, progress bar, user
        # callbacks) still see that epoch. skorch ends fit_loop on KeyboardInterrupt and
        # still runs on_train_end.
        self._send()
        if self._end_training:
            del net.history[-1]  # the epoch that will not run
            raise GrowthStopped(self.decisions_[-1]["reason"])

