"""skorch callbacks that decide *when* the network grows, and keep its best state.

One concern per class; they talk through ``net.history``:

- :class:`ValidationNSE` records ``valid_nse`` from the validation predictions skorch
  already made (no extra forward pass);
- :class:`ArchitectureCheckpoint` keeps the best weights of the current architecture
  and the best architecture and weights of the whole run, and restores the latter when
  training ends;
- :class:`PlateauDetector` records ``valid_nse_ma`` and ``plateau``: the moving average
  has not improved for ``patience`` epochs, or the architecture had its epoch budget;
- :class:`TopologicalGrowth` reacts to a plateau: back to the architecture's best
  weights, compute the topological derivatives, insert a layer or stop training.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import numpy as np
import torch
from skorch.callbacks import Callback

from .growth import GrowthDecision, grow
from .model import GrowingLSTM

__all__ = ["ArchitectureCheckpoint", "PlateauDetector", "TopologicalGrowth", "ValidationNSE"]


def nse_per_output(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """NSE of every column over its observed (non-NaN) rows; NaN where undefined."""
    observed = ~np.isnan(y_true)
    out = np.full(y_true.shape[1], np.nan)
    for k in range(y_true.shape[1]):
        t, p = y_true[observed[:, k], k], y_pred[observed[:, k], k]
        if len(t) < 2:
            continue
        denom = np.sum((t - t.mean()) ** 2)
        out[k] = 1.0 - np.sum((t - p) ** 2) / denom if denom > 0 else np.nan
    return out


class ValidationNSE(Callback):
    """Record ``valid_nse``: the mean Nash-Sutcliffe efficiency over outputs on validation.

    Collected from ``on_batch_end`` of the validation batches; targets that are NaN
    (masked) are left out.
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
        net.history.record("valid_nse", value)
        self._pred, self._true = [], []


class ArchitectureCheckpoint(Callback):
    """Keep the best state of the current architecture and of the whole run, in memory.

    skorch's ``Checkpoint(load_best=True)`` cannot reload a state whose shapes changed
    through growth; this one stores the architecture spec next to the weights.
    Records ``n_layers`` every epoch and ``valid_nse_best`` when the run's best improves.
    """

    def __init__(self, monitor: str = "valid_nse"):
        self.monitor = monitor

    def initialize(self):
        self.best_score_ = -np.inf
        self.best_spec_ = None
        self.best_state_ = None
        self.best_epoch_ = None
        self.reset_architecture()
        return self

    def reset_architecture(self) -> None:
        """Forget the current architecture's best (called after a layer is inserted)."""
        self.arch_best_score_ = -np.inf
        self.arch_best_state_ = None
        self.arch_best_epoch_ = None

    def on_epoch_end(self, net, **kwargs):
        module = net.module_
        net.history.record("n_layers", module.num_layers)
        score = net.history[-1].get(self.monitor, -np.inf)
        params_finite = all(torch.isfinite(p).all() for p in module.parameters())
        if not (np.isfinite(score) and params_finite):
            return
        epoch = net.history[-1]["epoch"]
        if score > self.arch_best_score_:
            self.arch_best_score_ = score
            self.arch_best_state_ = copy.deepcopy(module.state_dict())
            self.arch_best_epoch_ = epoch
        if score > self.best_score_:
            self.best_score_ = score
            self.best_spec_ = module.get_spec()
            self.best_state_ = copy.deepcopy(module.state_dict())
            self.best_epoch_ = epoch
            net.history.record("valid_nse_best", True)

    def restore_architecture_best(self, net) -> None:
        """Load the best weights seen for the current architecture (if any)."""
        if self.arch_best_state_ is not None:
            net.module_.load_state_dict(self.arch_best_state_)

    def restore_run_best(self, net) -> None:
        """Make ``net.module_`` the best architecture and weights of the whole run."""
        if self.best_state_ is None:
            return
        if self.best_spec_ != net.module_.get_spec():
            device = next(net.module_.parameters()).device
            net.module_ = GrowingLSTM.from_spec(self.best_spec_).to(device)
        net.module_.load_state_dict(self.best_state_)
        net.initialize_optimizer()

    def on_train_end(self, net, **kwargs):
        self.restore_run_best(net)


class PlateauDetector(Callback):
    """Decide when the current architecture has finished training.

    The moving average over the last ``moving_avg_window`` epochs of this architecture's
    ``valid_nse`` is recorded as ``valid_nse_ma``. ``plateau`` is recorded True when it
    has not improved for ``patience`` epochs, or when the architecture has trained
    ``max_epochs_per_layer`` epochs.
    """

    def __init__(self, patience: int, moving_avg_window: int, max_epochs_per_layer: int):
        self.patience = patience
        self.moving_avg_window = moving_avg_window
        self.max_epochs_per_layer = max_epochs_per_layer

    def initialize(self):
        self.reset_architecture()
        return self

    def reset_architecture(self) -> None:
        self.scores_ = []
        self.best_ma_ = -np.inf
        self.since_best_ = 0

    def on_epoch_end(self, net, **kwargs):
        score = net.history[-1].get("valid_nse", -np.inf)
        self.scores_.append(score if np.isfinite(score) else -np.inf)
        window = self.scores_[-self.moving_avg_window :]
        ma = float(np.mean(window))
        net.history.record("valid_nse_ma", ma)
        if ma > self.best_ma_:
            self.best_ma_, self.since_best_ = ma, 0
        else:
            self.since_best_ += 1
        plateau = (
            self.since_best_ >= self.patience
            or len(self.scores_) >= self.max_epochs_per_layer
        )
        net.history.record("plateau", bool(plateau))


class TopologicalGrowth(Callback):
    """On a plateau, grow the network where the topological derivative is largest.

    Parameters
    ----------
    sample : callable
        Returns ``(X, y)`` tensors of the fixed sample of training windows the
        derivatives are computed on (called when needed, so it follows the device).
    checkpoint : ArchitectureCheckpoint
        Supplies the architecture's best weights before the decision.
    plateau : PlateauDetector
        Reset for the new architecture after an insertion.
    grow_kwargs : dict
        Passed to :func:`sktlag.growth.grow` (threshold, max_layers, eigensolver ...).

    Attributes
    ----------
    decisions_ : list of dict
        One entry per growth decision: epoch, depth before, the decision's fields.
    stopped_ : bool
        Whether growth ended (no derivative above the threshold, depth limit, or a
        decision that could not be computed) and training was stopped.
    """

    def __init__(
        self,
        sample: Callable[[], tuple[torch.Tensor, torch.Tensor]],
        checkpoint: ArchitectureCheckpoint,
        plateau: PlateauDetector,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        grow_kwargs: dict,
        sink: Callable[[str], None] | None = None,
    ):
        self.sample = sample
        self.checkpoint = checkpoint
        self.plateau = plateau
        self.loss_fn = loss_fn
        self.grow_kwargs = grow_kwargs
        self.sink = sink

    def initialize(self):
        self.decisions_ = []
        self.stopped_ = False
        return self

    def on_epoch_end(self, net, **kwargs):
        if not net.history[-1].get("plateau", False):
            return
        self.checkpoint.restore_architecture_best(net)
        X, y = self.sample()
        depth = net.module_.num_layers
        try:
            decision = grow(net.module_, X, y, self.loss_fn, **self.grow_kwargs)
        except (RuntimeError, ValueError, FloatingPointError) as exc:
            warnings.warn(f"growth decision skipped: {exc}", RuntimeWarning, stacklevel=2)
            decision = GrowthDecision(
                derivatives=[], position=None, inserted=False,
                reason=f"not computable ({type(exc).__name__}: {exc})",
            )
        entry = {"epoch": net.history[-1]["epoch"], "n_layers_before": depth}
        entry.update(decision.as_dict())
        self.decisions_.append(entry)
        if self.sink is not None:
            self.sink(_describe(entry))
        if decision.inserted:
            net.history.record("layer_added", decision.position)
            net.initialize_optimizer()
            self.checkpoint.reset_architecture()
            self.plateau.reset_architecture()
            return
        self.stopped_ = True
        net.history.record("growth_stopped", decision.reason)
        # skorch ends fit_loop on KeyboardInterrupt and still runs on_train_end.
        raise KeyboardInterrupt


def _describe(entry: dict) -> str:
    ds = ", ".join(f"{d:.3g}" for d in entry["derivatives"])
    head = f"epoch {entry['epoch']}: {entry['n_layers_before']} layers, derivatives [{ds}]"
    if entry["inserted"]:
        return (
            f"{head} -> residual layer inserted after layer {entry['position']} "
            f"(scale {entry['scale']:.3g}, {entry['backtracking_steps']} backtracking steps, "
            f"{entry['n_hvp']} HVPs, {entry['seconds']:.2f} s)"
        )
    return f"{head} -> growth stops: {entry['reason']}"
