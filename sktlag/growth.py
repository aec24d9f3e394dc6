"""The growth math, as pure functions.

For a candidate position ``l`` (after existing layer ``l``) and a fixed sample of training
windows, let ``h_l`` be the output sequence of layer ``l`` and ``a_l = dLoss/dh_l`` its
adjoint. A residual layer ``h -> h + LSTM_theta(h)`` inserted there changes the loss, to
first order in its output, by ``a_l . LSTM_theta(h_l)``. The Hamiltonian

    H_l(theta) = - sum_{b,t} a_l[b, t] . LSTM_theta(h_l)[b, t]

(``a_l`` and ``h_l`` held fixed) is the loss decrease a new layer promises. At
``theta = 0`` the layer outputs exactly zero, so insertion there preserves the network
function; the *topological derivative* ``d_l`` is the largest algebraic eigenvalue of
the Hessian of ``H_l`` at 0, and its unit eigenvector ``phi_l`` is the direction the new
layer starts in. Hessian-vector products are exact (double backward).

Everything here takes tensors and callables and returns numbers; the only function that
changes a module is :func:`grow`, which inserts the layer it decided on.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import nn
from torch.func import functional_call

__all__ = [
    "EigenResult",
    "GrowthDecision",
    "PositionDerivative",
    "backtracking_scale",
    "choose_sign",
    "grow",
    "hamiltonian",
    "hessian_vector_product",
    "layer_outputs_and_adjoints",
    "lstm_parameter_count",
    "top_eigenpair",
    "topological_derivatives",
    "unflatten_lstm_parameters",
]

EIGENSOLVERS = ("lanczos", "power")
#: Where and how a layer is inserted once the derivatives say "grow". Only
#: "topological" is the method; the others are ablations for benchmarks:
#: "random" puts a randomly initialized layer at a random position, "append_zero" puts a
#: zero layer on top. All three use the same schedule and the same stop rule.
INSERTION_STRATEGIES = ("topological", "random", "append_zero")


def _lstm_template(hidden_size: int, like: torch.Tensor) -> nn.LSTM:
    # A parameter-less shell for functional_call: on the meta device it allocates nothing
    # and, unlike a normal construction, draws no numbers from torch's global generator.
    return nn.LSTM(hidden_size, hidden_size, batch_first=True, device="meta", dtype=like.dtype)


def lstm_parameter_count(hidden_size: int) -> int:
    """Number of parameters of a hidden-to-hidden single-layer LSTM: ``8 H^2 + 8 H``."""
    return 8 * hidden_size * hidden_size + 8 * hidden_size


def unflatten_lstm_parameters(theta: torch.Tensor, hidden_size: int) -> dict[str, torch.Tensor]:
    """Split a flat vector into ``nn.LSTM`` parameters (views, so gradients flow back).

    The order is ``weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0``, as in
    ``nn.LSTM.named_parameters()``.
    """
    h4 = 4 * hidden_size
    shapes = {
        "weight_ih_l0": (h4, hidden_size),
        "weight_hh_l0": (h4, hidden_size),
        "bias_ih_l0": (h4,),
        "bias_hh_l0": (h4,),
    }
    if theta.numel() != lstm_parameter_count(hidden_size):
        raise ValueError(
            f"theta has {theta.numel()} entries, a hidden_size={hidden_size} LSTM has "
            f"{lstm_parameter_count(hidden_size)}"
        )
    out, start = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        out[name] = theta[start : start + size].view(shape)
        start += size
    return out


def hamiltonian(theta: torch.Tensor, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``H(theta) = - sum a . LSTM_theta(h)`` for a virtual layer with flat parameters theta.

    Parameters
    ----------
    theta : Tensor of shape (8 H^2 + 8 H,)
    h : Tensor of shape (batch, time, H)
        Input sequence of the virtual layer (held fixed).
    a : Tensor of shape (batch, time, H)
        Adjoint of the loss with respect to ``h`` (held fixed).
    """
    hidden_size = h.shape[-1]
    template = _lstm_template(hidden_size, h)
    out, _ = functional_call(template, unflatten_lstm_parameters(theta, hidden_size), (h,))
    return -(a * out).sum()


@dataclass
class HessianOperator:
    """Exact Hessian-vector products of ``f`` at a fixed point, counted.

    Built by :func:`hessian_vector_product`; ``gradient`` is ``grad f`` at that point.
    """

    gradient: torch.Tensor
    _point: torch.Tensor
    _graph_gradient: torch.Tensor
    calls: int = 0

    @property
    def size(self) -> int:
        return self.gradient.numel()

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        # The eigen-solvers hand over CPU float64 vectors; the graph may live on a GPU.
        v = v.to(device=self._point.device, dtype=self._point.dtype)
        (hv,) = torch.autograd.grad(self._graph_gradient, self._point, v, retain_graph=True)
        return hv.detach()


def hessian_vector_product(
    f: Callable[[torch.Tensor], torch.Tensor], point: torch.Tensor
) -> HessianOperator:
    """Prepare exact Hessian-vector products of scalar ``f`` at ``point``.

    The gradient graph is built once (``create_graph=True``); each product is one more
    backward pass through it.
    """
    x = point.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    return HessianOperator(gradient=g.detach(), _point=x, _graph_gradient=g)


@dataclass
class EigenResult:
    """Largest algebraic eigenvalue, its unit eigenvector and the products it cost."""

    value: float
    vector: np.ndarray
    n_hvp: int


def _start_vector(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(n)
    return v / np.linalg.norm(v)


def _lanczos(
    hvp: Callable[[np.ndarray], np.ndarray], n: int, max_hvp: int, seed: int, tol: float
):
    # Lanczos with full reorthogonalization: exactly one product per step, so the budget
    # is exact, and the best Ritz pair so far is always available. Stops when the
    # residual norm |beta_k * s_k| of the top Ritz pair falls below tol * |theta|, or on
    # an invariant subspace (beta = 0), where the Ritz values are exact.
    steps = min(max_hvp, n)
    basis = np.zeros((steps, n))
    alphas, betas = [], []
    q = _start_vector(n, seed)
    for k in range(steps):
        basis[k] = q
        w = hvp(q)
        alpha = float(q @ w)
        w = w - basis[: k + 1].T @ (basis[: k + 1] @ w)
        w = w - basis[: k + 1].T @ (basis[: k + 1] @ w)  # twice is enough (Kahan)
        beta = float(np.linalg.norm(w))
        alphas.append(alpha)
        values, vectors = eigh_tridiagonal(np.array(alphas), np.array(betas))
        theta, s = values[-1], vectors[:, -1]
        if beta <= 1e-12 * max(abs(theta), 1.0) or abs(beta * s[-1]) <= tol * max(
            abs(theta), 1e-30
        ):
            break
        betas.append(beta)
        q = w / beta
    return float(theta), basis[: len(alphas)].T @ s


def _shifted_power(
    hvp: Callable[[np.ndarray], np.ndarray], n: int, max_hvp: int, seed: int, tol: float
):
    # Power iteration finds the eigenvalue of largest *magnitude*; the Hessians here have
    # spectra symmetric about 0, so it cannot tell +lambda from -lambda. Estimate the
    # spectral radius rho first, then iterate on H + rho*I, whose top eigenvalue is the
    # largest algebraic one of H, shifted.
    budget_radius = max(1, max_hvp // 2)
    v = _start_vector(n, seed)
    rho = 0.0
    for _ in range(budget_radius):
        w = hvp(v)
        norm = float(np.linalg.norm(w))
        if norm == 0.0:
            return 0.0, v
        converged = abs(norm - rho) <= tol * norm
        rho, v = norm, w / norm
        if converged:
            break
    v = _start_vector(n, seed + 1)
    value = -np.inf
    for _ in range(max(1, max_hvp - budget_radius)):
        hv = hvp(v)
        rayleigh = float(v @ hv)
        w = hv + rho * v
        if abs(rayleigh - value) <= tol * max(abs(rayleigh), 1e-30):
            value = rayleigh
            break
        value = rayleigh
        v = w / np.linalg.norm(w)
    return value, v


def top_eigenpair(
    hvp: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    *,
    method: str = "lanczos",
    max_hvp: int = 40,
    seed: int = 0,
    tol: float = 1e-6,
) -> EigenResult:
    """Largest algebraic eigenvalue and unit eigenvector of a symmetric operator.

    Parameters
    ----------
    hvp : callable
        Maps a torch vector of length ``n`` to the operator applied to it.
    n : int
        Dimension.
    method : {"lanczos", "power"}, default="lanczos"
        ``"lanczos"``: Lanczos with full reorthogonalization; the top Ritz pair of the
        tridiagonal matrix (``scipy.linalg.eigh_tridiagonal``) is the estimate.
        ``"power"``: power iteration shifted by an estimate of the spectral radius.
    max_hvp : int, default=40
        Budget of operator applications (never exceeded).
    seed : int, default=0
        Seed of the start vector.
    tol : float, default=1e-6
        Stopping tolerance, relative to the eigenvalue: the Ritz residual bound for
        Lanczos, the change of the Rayleigh quotient for power iteration.

    Returns
    -------
    EigenResult

    Raises
    ------
    FloatingPointError
        If an operator application returns NaN or inf, or the iteration ends on a
        non-finite eigenvalue or eigenvector (e.g. after an overflow).
    """
    if method not in EIGENSOLVERS:
        raise ValueError(f"method must be one of {EIGENSOLVERS}, got {method!r}")
    calls = 0

    def matvec(v: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        out = hvp(torch.as_tensor(np.ravel(v)))
        out = out.detach().cpu().double().numpy()
        if not np.isfinite(out).all():
            # Stop at once: one NaN spreads through every later Lanczos vector.
            raise FloatingPointError(
                f"Hessian-vector product {calls} returned non-finite values"
            )
        return out

    solver = _lanczos if method == "lanczos" else _shifted_power
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            value, vector = solver(matvec, n, max_hvp, seed, tol)
    except (ValueError, np.linalg.LinAlgError) as exc:
        # eigh_tridiagonal refuses entries that overflowed, or does not converge.
        raise FloatingPointError(
            f"the {method} iteration failed after {calls} Hessian-vector products: {exc}"
        ) from exc
    vector = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(vector))
    if not (math.isfinite(value) and math.isfinite(norm) and norm > 0):
        raise FloatingPointError(
            f"the {method} iteration ended on a non-finite eigenpair "
            f"(value {value}, vector norm {norm}) after {calls} Hessian-vector products"
        )
    vector /= norm
    return EigenResult(value=float(value), vector=vector, n_hvp=calls)


def choose_sign(gradient: np.ndarray, direction: np.ndarray) -> float:
    """``s = sign(grad H(0) . phi)``.

    With ``theta0 = eps * s * phi`` the first-order change of the loss,
    ``-grad H(0) . theta0 = -eps * |grad H(0) . phi|``, is never positive. Returns +1.0
    when the product is zero.
    """
    return -1.0 if float(np.dot(gradient, direction)) < 0 else 1.0


def backtracking_scale(
    loss_at: Callable[[float], float],
    base_loss: float,
    *,
    init_scale: float,
    min_scale: float,
    tolerance: float,
) -> tuple[float, int, float]:
    """Largest scale in ``init, init/2, init/4, ... >= min_scale`` the loss accepts.

    A scale ``eps`` is accepted when ``loss_at(eps) <= (1 + tolerance) * base_loss``.
    If none is, the scale is 0 (the layer starts at zero, which by construction leaves
    the loss at ``base_loss``).

    Returns
    -------
    scale : float
    steps : int
        Number of loss evaluations.
    loss : float
        Loss at the returned scale.
    """
    limit = (1.0 + tolerance) * base_loss
    scale, steps = float(init_scale), 0
    while scale >= min_scale:
        loss = float(loss_at(scale))
        steps += 1
        if math.isfinite(loss) and loss <= limit:
            return scale, steps, loss
        scale /= 2.0
    return 0.0, steps, float(base_loss)


def layer_outputs_and_adjoints(
    module: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> tuple[list[torch.Tensor], list[torch.Tensor], float]:
    """Output sequence ``h_l`` of every layer and the adjoint ``dLoss/dh_l``, in eval mode.

    ``module`` must provide ``forward_with_hidden`` (see
    :class:`sktlag.model.GrowingLSTM`). Its training mode is restored afterwards.
    """
    was_training = module.training
    module.eval()
    try:
        pred, hidden = module.forward_with_hidden(X)
        loss = loss_fn(pred, y)
        adjoints = torch.autograd.grad(loss, hidden, allow_unused=True)
    finally:
        module.train(was_training)
    adjoints = [
        torch.zeros_like(h) if a is None else a for h, a in zip(hidden, adjoints, strict=True)
    ]
    return [h.detach() for h in hidden], [a.detach() for a in adjoints], float(loss.detach())


@dataclass
class PositionDerivative:
    """The topological derivative of one candidate position."""

    position: int
    derivative: float
    direction: np.ndarray = field(repr=False)
    gradient: np.ndarray = field(repr=False)
    n_hvp: int
    #: Why the derivative could not be computed (then ``derivative`` is NaN).
    error: str = ""

    @property
    def first_order(self) -> float:
        """``grad H(0) . phi``."""
        return float(self.gradient @ self.direction)


def _no_cudnn(device: torch.device):
    # cuDNN's RNN kernels have no double backward; the native kernels do.
    if device.type == "cuda":
        return torch.backends.cudnn.flags(enabled=False)
    return contextlib.nullcontext()


def topological_derivatives(
    module: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    method: str = "lanczos",
    max_hvp: int = 40,
    seed: int = 0,
) -> tuple[list[PositionDerivative], float]:
    """Topological derivative and direction for every position ``1..num_layers``.

    Returns
    -------
    derivatives : list of PositionDerivative
        A position whose eigen-solver failed numerically (a non-finite Hessian-vector
        product, an overflow in the iteration) has derivative NaN and the cause in
        ``error``; the other positions are still computed.
    loss : float
        Sample loss of the current network.
    """
    with _no_cudnn(X.device):
        hidden, adjoints, loss = layer_outputs_and_adjoints(module, X, y, loss_fn)
        results = []
        for position, (h, a) in enumerate(zip(hidden, adjoints, strict=True), start=1):
            n = lstm_parameter_count(h.shape[-1])
            op = hessian_vector_product(
                lambda theta, h=h, a=a: hamiltonian(theta, h, a), torch.zeros(n).to(h)
            )
            try:
                eig = top_eigenpair(op, n, method=method, max_hvp=max_hvp, seed=seed + position)
            except (FloatingPointError, ValueError) as exc:
                # ValueError covers scipy's eigh_tridiagonal and its LinAlgError.
                results.append(
                    PositionDerivative(
                        position=position,
                        derivative=math.nan,
                        direction=np.zeros(n),
                        gradient=op.gradient.cpu().double().numpy(),
                        n_hvp=op.calls,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                )
                continue
            results.append(
                PositionDerivative(
                    position=position,
                    derivative=eig.value,
                    direction=eig.vector,
                    gradient=op.gradient.cpu().double().numpy(),
                    n_hvp=eig.n_hvp,
                )
            )
    return results, loss


@dataclass
class GrowthDecision:
    """What one growth step computed and decided (plain data, for the history)."""

    derivatives: list[float]
    position: int | None
    inserted: bool
    reason: str
    scale: float = 0.0
    sign: float = 0.0
    backtracking_steps: int = 0
    n_hvp: int = 0
    loss_before: float = float("nan")
    loss_after: float = float("nan")
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _sample_loss(module, X, y, loss_fn) -> float:
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return float(loss_fn(module(X), y))
    finally:
        module.train(was_training)


def grow(
    module: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    threshold: float,
    max_layers: int,
    method: str = "lanczos",
    max_hvp: int = 40,
    init_scale: float = 0.1,
    min_scale: float = 1e-4,
    tolerance: float = 0.0,
    seed: int = 0,
    strategy: str = "topological",
) -> GrowthDecision:
    """Compute the derivatives and, if one exceeds ``threshold``, insert a layer there.

    The new residual layer starts at ``theta0 = eps * s * phi`` with ``s`` from
    :func:`choose_sign` and ``eps`` from :func:`backtracking_scale`. ``module`` is
    changed in place only when a layer is inserted; with ``threshold = inf`` nothing is
    computed. ``strategy`` (see
    ``INSERTION_STRATEGIES``) replaces where and how for ablation studies; the decision
    to grow is the same.

    A decision that cannot be computed (a non-finite sample loss, Hessian-vector product
    or eigenpair) inserts nothing and does not raise: its ``reason`` starts with
    ``"not computable"`` and names the cause, and a ``RuntimeWarning`` is issued.
    """
    if strategy not in INSERTION_STRATEGIES:
        raise ValueError(f"strategy must be one of {INSERTION_STRATEGIES}, got {strategy!r}")
    start = time.perf_counter()
    if module.num_layers >= max_layers:
        return GrowthDecision(
            derivatives=[], position=None, inserted=False, reason="max_layers reached",
            seconds=time.perf_counter() - start,
        )
    if threshold == math.inf:
        # No derivative can exceed it: skip the Hessian work (a fixed-depth network).
        return GrowthDecision(
            derivatives=[], position=None, inserted=False,
            reason="threshold is inf: growth disabled", seconds=time.perf_counter() - start,
        )
    found, loss = topological_derivatives(
        module, X, y, loss_fn, method=method, max_hvp=max_hvp, seed=seed
    )
    values = [d.derivative for d in found]
    n_hvp = sum(d.n_hvp for d in found)
    decision = GrowthDecision(
        derivatives=values, position=None, inserted=False, reason="", n_hvp=n_hvp,
        loss_before=loss, loss_after=loss,
    )
    if not all(math.isfinite(v) for v in values) or not math.isfinite(loss):
        causes = [f"position {d.position}: {d.error}" for d in found if d.error]
        cause = causes[0] if causes else f"non-finite derivatives {values} or loss {loss}"
        warnings.warn(
            f"growth decision skipped, no layer inserted: {cause}", RuntimeWarning,
            stacklevel=2,
        )
        decision.reason = f"not computable ({cause})"
    else:
        best = max(found, key=lambda d: d.derivative)
        if best.derivative <= threshold:
            decision.reason = (
                f"largest derivative {best.derivative:.4g} <= threshold {threshold:.4g}"
            )
        else:
            best = _ablate(best, found, strategy, seed + module.num_layers)
            decision.position = best.position
            decision.sign = choose_sign(best.gradient, best.direction)
            _insert_with_backtracking(
                module, X, y, loss_fn, best, decision,
                init_scale=init_scale, min_scale=min_scale, tolerance=tolerance,
            )
    decision.seconds = time.perf_counter() - start
    return decision


def _ablate(
    best: PositionDerivative, found: list[PositionDerivative], strategy: str, seed: int
) -> PositionDerivative:
    if strategy == "topological":
        return best
    if strategy == "append_zero":
        top = found[-1]
        return PositionDerivative(top.position, top.derivative, np.zeros_like(top.direction),
                                  top.gradient, top.n_hvp)
    rng = np.random.default_rng(seed)
    pick = found[int(rng.integers(len(found)))]
    direction = rng.standard_normal(pick.direction.shape)
    return PositionDerivative(pick.position, pick.derivative,
                              direction / np.linalg.norm(direction), pick.gradient, pick.n_hvp)


def _insert_with_backtracking(
    module, X, y, loss_fn, best: PositionDerivative, decision: GrowthDecision,
    *, init_scale: float, min_scale: float, tolerance: float,
) -> None:
    hidden_size = module.hidden_size
    reference = next(module.parameters())
    direction = torch.as_tensor(best.direction * decision.sign).to(reference)
    layer = module.insert_layer(best.position)
    params = dict(layer.lstm.named_parameters())

    def set_scale(scale: float) -> None:
        with torch.no_grad():
            for name, value in unflatten_lstm_parameters(scale * direction, hidden_size).items():
                params[name].copy_(value)

    def loss_at(scale: float) -> float:
        set_scale(scale)
        return _sample_loss(module, X, y, loss_fn)

    try:
        scale, steps, new_loss = backtracking_scale(
            loss_at, decision.loss_before,
            init_scale=init_scale, min_scale=min_scale, tolerance=tolerance,
        )
        set_scale(scale)
    except BaseException:
        del module.layers[best.position]
        raise
    decision.inserted = True
    decision.scale = scale
    decision.backtracking_steps = steps
    decision.loss_after = new_loss
    decision.reason = (
        f"derivative {best.derivative:.4g} at position {best.position} > threshold"
    )
