"""The growth math, as pure functions.

For a candidate position ``l`` (after existing layer ``l``) and a fixed sample of training
windows, let ``h_l`` be the output sequence of layer ``l`` and ``a_l = dLoss/dh_l`` its
adjoint. A residual layer ``h -> h + LSTM_theta(h)`` inserted there changes the loss, to
first order in its output, by ``a_l . LSTM_theta(h_l)``. The Hamiltonian

    H_l(theta) = - sum_{b,t} a_l[b, t] . LSTM_theta(h_l)[b, t]

(``a_l`` and ``h_l`` held fixed) is the loss decrease a new layer promises to first
order in its output. At
``theta = 0`` the layer outputs exactly zero, so insertion there preserves the network
function; the *topological derivative* ``d_l`` is the largest algebraic eigenvalue of
the Hessian of ``H_l`` at 0, and its unit eigenvector ``phi_l`` is the direction the new
layer starts in.

Hessian-vector products come in three kinds (``HESSIAN_PRODUCTS``). ``"exact"`` ones are
one more backward pass through a retained gradient graph (double backward); on CUDA they
run without cuDNN, whose fused RNN kernels have no double backward. ``"difference"``
ones are central differences of first-order gradients,
``A v ~ (grad H(eps v) - grad H(-eps v)) / (2 eps)``: two forward-backward passes of the
virtual layer that the fused kernels can run. Their error is of order ``eps^2`` plus
rounding of order ``machine_eps / eps``, so the step ``eps`` grows with the cube root of
the machine epsilon (:func:`difference_step`).

The spectrum's symmetry has a reason that both kinds respect: flipping the sign of the
candidate block's input weights and biases and of the gates' recurrent weights flips
the sign of the layer's output at every step, so ``H(S theta) = -H(theta)`` for that
diagonal reflection ``S``. Then ``S A S = -A`` (each eigenvector ``v`` of ``A`` with
eigenvalue ``lambda`` gives ``S v`` with ``-lambda``) and ``S grad H(0) = -grad H(0)``;
the central difference inherits ``S D(v) = -D(S v)``. The reflection does not make
``H`` odd in ``theta`` itself (``H(-theta) != -H(theta)``), so the fourth derivative
that the central difference's ``eps^2`` error comes from does not vanish at 0: the
difference is no more accurate here than for any smooth function.

At ``theta = 0`` the virtual layer's state is zero at every step and its gates sit at
one half, so to second order in ``theta`` the layer is a fixed linear filter (the cell
keeps half of its last value) driven by products of two gates' pre-activations. The
Hamiltonian's second-order Taylor polynomial at 0 (:func:`hamiltonian_expansion`) is
therefore a quadratic form whose coefficients are moments of ``h_l`` and ``a_l`` over
the sample: sums over windows and steps, computed once per decision. Its gradient and
Hessian at 0 are those of ``H_l`` exactly, and ``"expansion"`` products, exact products
of this polynomial, cost a few small matrix products each, however many windows and
steps the sample has, with no recurrent pass (and no cuDNN question) at all. It
couples only the candidate block's input weights and biases with the other gates'
input weights and biases and with the candidate block's recurrent weights, which is
the reflection symmetry above seen from the other side.

With ``theta = eps * phi`` the Hamiltonian promises a loss change of
``-eps * (grad H_l(0) . phi) - eps^2 / 2 * d_l``. That is not the loss's own second-order
change: holding ``a_l`` fixed leaves out the loss's curvature in the new layer's output
(``J^T (d^2 Loss / dh_l^2) J`` for the layer's Jacobian ``J``, a Gauss-Newton term that
is positive semi-definite for the squared error at the head), so along ``phi_l`` the real
loss can even curve upwards where ``d_l > 0``. The first-order term is exact; the
backtracking search of :func:`grow` checks the real loss before a layer is kept. The
loss is a mean, so ``d_l`` scales with the loss (with the square of the target scale):
the *relative derivative* ``d_l / (2 * loss)`` (:func:`relative_derivative`), the
relative decrease the Hamiltonian promises per unit squared norm of the new layer's
parameters, is what one threshold can compare on every basin. It is the default
criterion of :func:`grow`.

The eigenvector is the best of thousands of directions on its sample, so ``d_l`` is
biased upwards by whatever noise it can fit. :func:`holdout_gains` re-measures each
direction's second-order gain on blocks of windows it was not chosen on, and
:func:`holdout_statistic` turns them into a t statistic (the ``"holdout"`` criterion).

The Hamiltonians of different positions share no parameters, so their joint Hessian is
block-diagonal: :func:`block_hessian_vector_product` builds one gradient graph for all
positions and :func:`top_eigenpairs` runs one eigen-solver per block in lockstep, every
backward pass serving every position still iterating.

Everything here takes tensors and callables and returns numbers; the only function that
changes a module is :func:`grow`, which inserts the layer it decided on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import nn
from torch.func import functional_call

__all__ = [
    "BlockHessianOperator",
    "EigenResult",
    "GrowthDecision",
    "HamiltonianExpansion",
    "PositionDerivative",
    "backtracking_scale",
    "block_hessian_vector_product",
    "choose_sign",
    "difference_step",
    "grow",
    "hamiltonian",
    "hamiltonian_expansion",
    "hessian_vector_product",
    "holdout_gains",
    "holdout_statistic",
    "layer_outputs_and_adjoints",
    "lstm_parameter_count",
    "relative_derivative",
    "top_eigenpair",
    "top_eigenpairs",
    "topological_derivatives",
    "unflatten_lstm_parameters",
]

EIGENSOLVERS = ("lanczos", "power")
#: What :func:`grow` compares with its threshold: the relative derivative
#: ``d / (2 * loss)``, the raw eigenvalue ``d`` (the research code's rule), or the
#: held-out statistic of :func:`holdout_statistic`.
CRITERIA = ("relative", "raw", "holdout")
#: Where and how a layer is inserted once the derivatives say "grow". Only
#: "topological" is the method; the others are ablations for benchmarks:
#: "random" puts a randomly initialized layer at a random position, "append_zero" puts a
#: zero layer on top. All three use the same schedule and the same stop rule.
INSERTION_STRATEGIES = ("topological", "random", "append_zero")
#: How the eigen-solvers' Hessian-vector products are computed: ``"expansion"`` (exact
#: products of the Hamiltonian's second-order expansion at zero, from moments of the
#: sample), ``"exact"`` (double backward through the virtual layers, without cuDNN on
#: CUDA), ``"difference"`` (central differences of gradients, with cuDNN), or ``"auto"``:
#: the expansion on every device.
HESSIAN_PRODUCTS = ("auto", "expansion", "exact", "difference")
#: The central difference's step is this factor times the cube root of the machine
#: epsilon of the dtype (see :func:`difference_step`). In float32, on trained networks,
#: factor 1 gave the top eigenvalues closest to the exact ones of 0.1, 0.3, 1, 3 and 10;
#: 0.1 (rounding) and 3 (truncation) were several times further off
#: (``docs/benchmarks.md``, section 5).
DIFFERENCE_STEP_FACTOR = 1.0


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
    """The Hamiltonian ``H(theta) = - sum a * LSTM_theta(h)`` of a virtual layer.

    ``theta`` holds the layer's flat parameters; the sum runs over batch, time and
    hidden units.

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
    with _quiet_weight_copies(h.device):
        out, _ = functional_call(template, unflatten_lstm_parameters(theta, hidden_size), (h,))
    return -(a * out).sum()


def _decayed(x: torch.Tensor, *, reverse: bool = False) -> torch.Tensor:
    """``y_t = x_t + y_{t-1} / 2`` along dim 1, or ``y_t = x_t + y_{t+1} / 2`` reversed.

    The zero-state LSTM's cell to first order: its forget gate keeps half of the cell.
    """
    y = x.clone()
    steps = range(y.shape[1] - 2, -1, -1) if reverse else range(1, y.shape[1])
    for t in steps:
        y[:, t] += 0.5 * y[:, t + 1 if reverse else t - 1]
    return y


def _without_subnormals(t: torch.Tensor) -> torch.Tensor:
    """``t`` with the entries below ``eps ** 2`` of its largest magnitude set to zero."""
    # Adjoints of a window's first steps vanish through the recurrence (and the
    # half-decayed sums halve them again at every step) into subnormal numbers, on
    # which a CPU's arithmetic is many times slower. Entries this small cannot move a
    # sum over the sample beyond its rounding, so they count as zero.
    cutoff = t.abs().max() * torch.finfo(t.dtype).eps ** 2
    return torch.where(t.abs() < cutoff, torch.zeros_like(t), t)


def _unit_moments(weights: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``M[j] = sum_n weights[n, j] * outer(left[n], right[n])`` for every unit ``j``."""
    # One matrix product per unit keeps the memory at one (n, k) copy, not (n, j, k).
    return torch.stack([(left * weights[:, j, None]).T @ right for j in range(weights.shape[1])])


@dataclass(frozen=True)
class HamiltonianExpansion:
    """The Hamiltonian ``H(theta)`` of a virtual layer to second order at ``theta = 0``.

    Built by :func:`hamiltonian_expansion`; calling it with a flat ``theta`` returns the
    polynomial's value. The fields are moments over the sample's windows and steps
    ``n``, with ``x = [h, 1]`` the layer's input and a constant for the biases, ``F`` its
    causal half-decayed sum (``F_t = x_t + F_{t-1} / 2``), ``P`` the same one step
    earlier (zero at the first step), ``a`` the adjoint and ``r`` its anti-causal
    half-decayed sum: ``linear[j] = sum a_j F``, ``input_gate[j] = sum r_j x x^T``,
    ``forget_gate[j] = sum r_j x P^T``, ``output_gate[j] = sum a_j x F^T``,
    ``recurrent[j] = sum r_j P``.
    """

    hidden_size: int
    linear: torch.Tensor
    input_gate: torch.Tensor
    forget_gate: torch.Tensor
    output_gate: torch.Tensor
    recurrent: torch.Tensor

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        hidden = self.hidden_size
        p = unflatten_lstm_parameters(theta, hidden)
        # Each gate's row j acts on x = [h, 1]: its input weights, then its two biases.
        bias = (p["bias_ih_l0"] + p["bias_hh_l0"])[:, None]
        i, f, g, o = torch.cat([p["weight_ih_l0"], bias], dim=1).chunk(4)
        recurrent_g = p["weight_hh_l0"][2 * hidden: 3 * hidden]

        def bilinear(left, moments, right):
            return torch.einsum("jk,jkm,jm->", left, moments, right)

        # Derivation: with c1 = F g^T / 2 and h1 = c1 / 2 the first-order cell and
        # output, the second-order output is h2 = c2 / 2 + (x o^T / 4) * c1, where the
        # second-order cell c2 is the half-decayed sum of
        # (x f^T / 4) * c1_{t-1} + W_hh,g h1_{t-1} / 2 + (x i^T / 4) * (x g^T); and
        # H = -sum a * (h1 + h2).
        first = -0.25 * (self.linear * g).sum()
        second = -(
            bilinear(i, self.input_gate, g) / 8
            + bilinear(f, self.forget_gate, g) / 16
            + (recurrent_g * (self.recurrent @ g.T)).sum() / 16
            + bilinear(o, self.output_gate, g) / 8
        )
        return first + second


def hamiltonian_expansion(h: torch.Tensor, a: torch.Tensor) -> HamiltonianExpansion:
    """The second-order Taylor polynomial of :func:`hamiltonian` at ``theta = 0``.

    Its value, gradient and Hessian at 0 are those of ``hamiltonian(theta, h, a)``;
    its Hessian is the same everywhere (a quadratic form), so exact products of it are
    the Hessian's at 0 at the cost of a few ``H x (H + 1)`` matrix products, whatever the
    number of windows and steps. Building it costs about three passes of ``H`` matrix
    products over the sample.

    Parameters
    ----------
    h : Tensor of shape (batch, time, H)
        Input sequence of the virtual layer (held fixed).
    a : Tensor of shape (batch, time, H)
        Adjoint of the loss with respect to ``h`` (held fixed).
    """
    h, a = h.detach(), a.detach()
    x = torch.cat([h, torch.ones_like(h[..., :1])], dim=-1)
    filtered = _decayed(x)
    earlier = torch.nn.functional.pad(filtered[:, :-1], (0, 0, 1, 0))
    a = _without_subnormals(a)
    reverse = _without_subnormals(_decayed(a, reverse=True))
    rows = x.shape[0] * x.shape[1]
    x, filtered, earlier, a, reverse = (
        t.reshape(rows, -1) for t in (x, filtered, earlier, a, reverse)
    )
    width = x.shape[1]
    with_reverse = _unit_moments(reverse, x, torch.cat([x, earlier], dim=1))
    return HamiltonianExpansion(
        hidden_size=h.shape[-1],
        linear=a.T @ filtered,
        input_gate=with_reverse[..., :width],
        forget_gate=with_reverse[..., width:],
        output_gate=_unit_moments(a, x, filtered),
        recurrent=reverse.T @ earlier,
    )


@contextlib.contextmanager
def _quiet_weight_copies(device: torch.device) -> Generator[None, None, None]:
    # The virtual layer's weights are views of one flat vector; where cuDNN wants them in
    # its own layout it copies them (8 H^2 + 8 H numbers, nothing next to the pass) and
    # says so. Only CUDA has cuDNN: elsewhere the warning filters are left alone.
    if device.type != "cuda":
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "RNN module weights are not part of single")
        yield


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


def difference_step(dtype: torch.dtype) -> float:
    """Step ``eps`` of the central-difference Hessian-vector products in ``dtype``.

    ``DIFFERENCE_STEP_FACTOR * machine_eps ** (1/3)``: the step that balances the
    truncation error ``O(eps^2)`` with the rounding error ``O(machine_eps / eps)`` when
    both have their constants near one. In float32 that is about 4.9e-3, in float64
    about 6.1e-6. The step is the norm of the perturbation: the direction is scaled to
    unit norm first, so the error does not depend on the length of the vector.
    """
    return DIFFERENCE_STEP_FACTOR * torch.finfo(dtype).eps ** (1.0 / 3.0)


def _resolve_products(hessian_products: str) -> str:
    if hessian_products not in HESSIAN_PRODUCTS:
        raise ValueError(
            f"hessian_products must be one of {HESSIAN_PRODUCTS}, got {hessian_products!r}"
        )
    if hessian_products == "auto":
        return "expansion"
    return hessian_products


@dataclass
class BlockHessianOperator:
    """Hessian-vector products of ``sum_l f_l(x_l)`` for separate blocks ``x_l``, counted.

    The blocks share no parameters, so the Hessian is block-diagonal; one call is one
    backward pass that returns the product of every block it is given. Blocks left out
    of a call are left out of that backward pass too (no work on blocks whose
    eigen-solver has finished). Built by :func:`block_hessian_vector_product`.

    ``products`` is ``"exact"`` (a backward pass through the retained gradient graph) or
    ``"difference"`` (the central difference of the gradients at ``x_l +- step * u_l``
    with ``u_l = v_l / ||v_l||``, times ``||v_l||``: a forward-backward pass of every
    block given, at both points, without a retained graph).
    """

    gradients: list[torch.Tensor]
    products: str
    step: float
    _points: list[torch.Tensor]
    _functions: list[Callable[[torch.Tensor], torch.Tensor]]
    _graph_gradients: list[torch.Tensor] | None
    calls: int = 0

    @property
    def sizes(self) -> list[int]:
        """Number of parameters of each block."""
        return [g.numel() for g in self.gradients]

    def __call__(self, vectors: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Products ``{l: Hessian_l @ v_l}`` for the blocks ``l`` in ``vectors``."""
        if not vectors:
            return {}
        self.calls += 1
        blocks = list(vectors)
        if self.products == "exact":
            return self._exact(blocks, vectors)
        return self._difference(blocks, vectors)

    def _on_device(self, i: int, v: torch.Tensor) -> torch.Tensor:
        # The eigen-solvers hand over CPU float64 vectors; the graph may live on a GPU.
        point = self._points[i]
        return v.to(device=point.device, dtype=point.dtype)

    def _exact(self, blocks, vectors) -> dict[int, torch.Tensor]:
        points = [self._points[i] for i in blocks]
        products = torch.autograd.grad(
            [self._graph_gradients[i] for i in blocks], points,
            [self._on_device(i, vectors[i]) for i in blocks],
            retain_graph=True, allow_unused=True,
        )
        # allow_unused: a block whose gradient does not depend on its parameters has a
        # zero Hessian, which autograd reports as None.
        return {
            i: torch.zeros_like(p) if hv is None else hv.detach()
            for i, p, hv in zip(blocks, points, products, strict=True)
        }

    def _difference(self, blocks, vectors) -> dict[int, torch.Tensor]:
        out = {i: torch.zeros_like(self._points[i]) for i in blocks}
        # The norms are taken on the solvers' float64 vectors, before the cast.
        norms = {i: float(torch.linalg.vector_norm(vectors[i].double())) for i in blocks}
        moved = [i for i in blocks if norms[i] > 0]
        if not moved:
            return out
        sides = [
            [(self._points[i] + sign * self.step * self._on_device(i, vectors[i] / norms[i]))
             .detach().requires_grad_(True) for i in moved]
            for sign in (1.0, -1.0)
        ]
        total = sum(
            self._functions[i](x) for side in sides for i, x in zip(moved, side, strict=True)
        )
        grads = torch.autograd.grad(total, [*sides[0], *sides[1]], allow_unused=True)
        plus, minus = grads[: len(moved)], grads[len(moved):]
        for i, gp, gm in zip(moved, plus, minus, strict=True):
            zero = out[i]
            out[i] = ((zero if gp is None else gp) - (zero if gm is None else gm)) * (
                norms[i] / (2.0 * self.step)
            )
        return out


def block_hessian_vector_product(
    functions: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    points: Sequence[torch.Tensor],
    *,
    products: str = "exact",
    step: float | None = None,
) -> BlockHessianOperator:
    """Prepare Hessian-vector products of ``sum_l f_l(x_l)`` at ``x_l = points[l]``.

    Parameters
    ----------
    functions : sequence of callable
        Scalar functions of one flat tensor each; block ``l`` is ``functions[l]``.
    points : sequence of Tensor
        The point of each block.
    products : {"exact", "difference"}, default="exact"
        ``"exact"``: double backward through one gradient graph built here
        (``create_graph=True``) and kept. ``"difference"``: central differences of
        first-order gradients, no graph kept (see :class:`BlockHessianOperator`).
    step : float, optional
        Step of the central differences; default :func:`difference_step` of the
        points' dtype. Ignored by exact products.

    Returns
    -------
    BlockHessianOperator
        Its ``gradients[l]`` is ``grad f_l(points[l])``; calling it with
        ``{l: v_l, ...}`` returns ``{l: Hessian of f_l @ v_l, ...}`` in one backward pass.
    """
    if len(functions) != len(points):
        raise ValueError(f"{len(functions)} functions but {len(points)} points")
    if products not in ("exact", "difference"):
        raise ValueError(f"products must be 'exact' or 'difference', got {products!r}")
    exact = products == "exact"
    xs = [p.detach().clone().requires_grad_(True) for p in points]
    total = sum(f(x) for f, x in zip(functions, xs, strict=True))
    # One gradient graph for every block: a single backward builds all of them.
    grads = torch.autograd.grad(total, xs, create_graph=exact)
    if step is None:
        step = difference_step(xs[0].dtype) if xs else 0.0
    return BlockHessianOperator(
        gradients=[g.detach() for g in grads], products=products, step=float(step),
        _points=xs if exact else [x.detach() for x in xs],
        _functions=list(functions), _graph_gradients=list(grads) if exact else None,
    )


@dataclass
class EigenResult:
    """Largest algebraic eigenvalue, its unit eigenvector and the products it cost.

    ``error`` is empty unless the solver failed (then ``value`` is NaN); only
    :func:`top_eigenpairs` returns failed results, :func:`top_eigenpair` raises.
    """

    value: float
    vector: np.ndarray
    n_hvp: int
    error: str = ""


#: An eigen-solver as a coroutine: it yields the vector it wants multiplied, is sent the
#: product, and returns ``(value, vector)``. Written this way, the same solver serves one
#: operator (:func:`top_eigenpair`) or many in lockstep (:func:`top_eigenpairs`).
_Solver = Generator[np.ndarray, np.ndarray, tuple[float, np.ndarray]]


def _start_vector(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(n)
    return v / np.linalg.norm(v)


def _lanczos(n: int, max_hvp: int, seed: int, tol: float) -> _Solver:
    # Lanczos with full reorthogonalization: exactly one product per step, so the budget
    # is exact, and the best Ritz pair so far is always available. Stops when the
    # residual norm |beta_k * s_k| of the top Ritz pair falls below tol * |theta|, or on
    # an invariant subspace (beta = 0), where the Ritz values are exact.
    steps = min(max_hvp, n)
    basis = np.zeros((steps, n))
    alphas, betas = [], []
    q = _start_vector(n, seed)
    # The operator's own scale, for the test of an invariant subspace: a Hessian of a
    # loss 1e-10 times as large has betas 1e-10 times as small, and an absolute floor
    # would stop it after one product on the start vector's Rayleigh quotient.
    size = 0.0
    for k in range(steps):
        basis[k] = q
        w = yield q
        size = max(size, float(np.linalg.norm(w)))
        alpha = float(q @ w)
        w = w - basis[: k + 1].T @ (basis[: k + 1] @ w)
        w = w - basis[: k + 1].T @ (basis[: k + 1] @ w)  # twice is enough (Kahan)
        beta = float(np.linalg.norm(w))
        alphas.append(alpha)
        values, vectors = eigh_tridiagonal(np.array(alphas), np.array(betas))
        theta, s = values[-1], vectors[:, -1]
        # (A beta that overflowed is no invariant subspace: eigh_tridiagonal refuses it.)
        if (math.isfinite(beta) and beta <= 1e-12 * size) or abs(beta * s[-1]) <= tol * max(
            abs(theta), 1e-30
        ):
            break
        betas.append(beta)
        q = w / beta
    return float(theta), basis[: len(alphas)].T @ s


def _shifted_power(n: int, max_hvp: int, seed: int, tol: float) -> _Solver:
    # Power iteration finds the eigenvalue of largest *magnitude*; the Hessians here have
    # spectra symmetric about 0, so it cannot tell +lambda from -lambda. Estimate the
    # spectral radius rho first, then iterate on H + rho*I, whose top eigenvalue is the
    # largest algebraic one of H, shifted.
    budget_radius = max(1, max_hvp // 2)
    v = _start_vector(n, seed)
    rho = 0.0
    for _ in range(budget_radius):
        w = yield v
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
        hv = yield v
        rayleigh = float(v @ hv)
        converged = abs(rayleigh - value) <= tol * max(abs(rayleigh), 1e-30)
        # The value returned is the Rayleigh quotient of the vector returned: when the
        # budget ends first, the next iterate has no product, so no value, of its own.
        value, vector = rayleigh, v
        if converged:
            break
        w = hv + rho * v
        v = w / np.linalg.norm(w)
    return value, vector


def _check_solver(method: str, max_hvp: int) -> None:
    if method not in EIGENSOLVERS:
        raise ValueError(f"method must be one of {EIGENSOLVERS}, got {method!r}")
    if max_hvp < 1:
        raise ValueError(f"max_hvp must be >= 1, got {max_hvp}")
    if method == "power" and max_hvp < 2:
        # One product for the spectral radius, at least one to iterate.
        raise ValueError(f"method='power' needs max_hvp >= 2, got {max_hvp}")


def _solver(method: str, n: int, max_hvp: int, seed: int, tol: float) -> _Solver:
    _check_solver(method, max_hvp)
    return (_lanczos if method == "lanczos" else _shifted_power)(n, max_hvp, seed, tol)


def _as_product(out: torch.Tensor, calls: int) -> np.ndarray:
    out = out.detach().cpu().double().numpy().ravel()
    if not np.isfinite(out).all():
        # Stop at once: one NaN spreads through every later Lanczos vector.
        raise FloatingPointError(f"Hessian-vector product {calls} returned non-finite values")
    return out


def _eigen_result(method: str, value: float, vector: np.ndarray, calls: int) -> EigenResult:
    vector = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(vector))
    if not (math.isfinite(value) and math.isfinite(norm) and norm > 0):
        raise FloatingPointError(
            f"the {method} iteration ended on a non-finite eigenpair "
            f"(value {value}, vector norm {norm}) after {calls} Hessian-vector products"
        )
    return EigenResult(value=float(value), vector=vector / norm, n_hvp=calls)


def _iteration_failed(method: str, calls: int, exc: Exception) -> FloatingPointError:
    # eigh_tridiagonal refuses entries that overflowed, or does not converge.
    return FloatingPointError(
        f"the {method} iteration failed after {calls} Hessian-vector products: {exc}"
    )


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

    See Also
    --------
    top_eigenpairs : the same solver on the blocks of a block-diagonal operator.
    """
    solver = _solver(method, n, max_hvp, seed, tol)
    calls = 0
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            v = next(solver)
            while True:
                calls += 1
                v = solver.send(_as_product(hvp(torch.as_tensor(v)), calls))
    except StopIteration as stop:
        value, vector = stop.value
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise _iteration_failed(method, calls, exc) from exc
    return _eigen_result(method, value, vector, calls)


def top_eigenpairs(
    hvp: Callable[[dict[int, torch.Tensor]], dict[int, torch.Tensor]],
    sizes: Sequence[int],
    *,
    method: str = "lanczos",
    max_hvp: int = 40,
    seeds: Sequence[int] | None = None,
    tol: float = 1e-6,
) -> list[EigenResult]:
    """Top eigenpair of every block of a block-diagonal operator, solvers in lockstep.

    Each block runs its own solver (the one of :func:`top_eigenpair`, with its own
    start vector, state and stopping test). At every step the vectors of all blocks
    still iterating go to ``hvp`` in one call, so one backward pass serves every block;
    a block that has converged or failed is no longer passed.

    Parameters
    ----------
    hvp : callable
        Maps ``{block: torch vector}`` to ``{block: operator block @ vector}`` for the
        blocks given (a :class:`BlockHessianOperator`).
    sizes : sequence of int
        Dimension of each block.
    method, max_hvp, tol
        As in :func:`top_eigenpair`, per block.
    seeds : sequence of int, optional
        Start-vector seed of each block; default ``0, 1, 2, ...``. With the same seed a
        block's result equals that of :func:`top_eigenpair` on the block alone.

    Returns
    -------
    list of EigenResult
        One per block. ``n_hvp`` is the number of products the block used; the number
        of calls to ``hvp`` is the largest of them. A block whose product was
        non-finite, or whose iteration failed, has value NaN, a zero vector and the
        cause in ``error``; the other blocks are unaffected.
    """
    seeds = list(range(len(sizes))) if seeds is None else list(seeds)
    if len(seeds) != len(sizes):
        raise ValueError(f"{len(sizes)} blocks but {len(seeds)} seeds")
    solvers = [_solver(method, n, max_hvp, s, tol) for n, s in zip(sizes, seeds, strict=True)]
    results: list[EigenResult | None] = [None] * len(sizes)
    calls = [0] * len(sizes)

    def fail(i: int, exc: Exception) -> None:
        if isinstance(exc, (ValueError, np.linalg.LinAlgError)):
            exc = _iteration_failed(method, calls[i], exc)
        solvers[i].close()
        results[i] = EigenResult(
            value=math.nan, vector=np.zeros(sizes[i]), n_hvp=calls[i],
            error=f"{type(exc).__name__}: {exc}",
        )

    def finish(i: int, stop: StopIteration) -> None:
        try:
            results[i] = _eigen_result(method, *stop.value, calls[i])
        except FloatingPointError as exc:
            fail(i, exc)

    pending: dict[int, np.ndarray] = {}
    with np.errstate(over="ignore", invalid="ignore"):
        for i, solver in enumerate(solvers):
            pending[i] = next(solver)  # every solver asks for at least one product
        while pending:
            products = hvp({i: torch.as_tensor(v) for i, v in pending.items()})
            for i in list(pending):
                calls[i] += 1
                try:
                    pending[i] = solvers[i].send(_as_product(products[i], calls[i]))
                except StopIteration as stop:
                    del pending[i]
                    finish(i, stop)
                except (FloatingPointError, ValueError, np.linalg.LinAlgError) as exc:
                    del pending[i]
                    fail(i, exc)
    return results


def relative_derivative(derivative: float, loss: float) -> float:
    """The topological derivative as a relative loss decrease: ``d / (2 * loss)``.

    With the new layer at ``theta = eps * phi`` the Hamiltonian promises a loss of
    ``loss - eps * (grad H(0) . phi) - eps^2 / 2 * d`` (a promise, not a prediction:
    the loss's own curvature in the layer's output is left out; see the module notes).
    The promised second-order decrease, relative to the loss and per unit
    ``eps^2 = ||theta||^2``, is ``d / (2 * loss)``:
    dimensionless, unchanged when the targets (and so the predictions) are rescaled,
    and independent of the sample size because the loss is a mean. A threshold on it
    means the same on every basin; a threshold on ``d`` does not (``d`` scales with the
    loss, i.e. with the square of the target scale).

    Parameters
    ----------
    derivative : float
        Topological derivative ``d`` (largest eigenvalue of the Hessian of ``H``).
    loss : float
        Sample loss of the current network (a mean, e.g. the masked MSE).

    Returns
    -------
    float
        ``d / (2 * loss)``. NaN when either is NaN or infinite, or when the loss is
        negative (a relative decrease of a negative loss means nothing). A loss of
        exactly 0 gives ``+inf`` for ``d > 0``, ``-inf`` for ``d < 0`` and NaN for
        ``d == 0``; :func:`grow` treats any non-finite value as not computable.
    """
    derivative, loss = float(derivative), float(loss)
    if not (math.isfinite(derivative) and math.isfinite(loss)) or loss < 0:
        return math.nan
    if loss == 0.0:
        return math.nan if derivative == 0.0 else math.copysign(math.inf, derivative)
    return derivative / (2.0 * loss)


def choose_sign(gradient: np.ndarray, direction: np.ndarray) -> float:
    """The sign ``s = sign(grad H(0) * phi)`` of the inserted layer's direction.

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
    """Largest scale of ``init``, ``init/2``, ``init/4`` ... (>= ``min_scale``) the loss accepts.

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
        # In eval mode cuDNN's RNN kernels have no backward at all.
        with _growth_backends(X.device):
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
    """The topological derivative of one candidate position.

    ``derivative`` is the raw eigenvalue ``d``; ``relative`` is
    :func:`relative_derivative` of it and the sample loss, ``d / (2 * loss)``.
    ``n_hvp`` counts the Hessian-vector products this position's solver used.
    """

    position: int
    derivative: float
    direction: np.ndarray = field(repr=False)
    gradient: np.ndarray = field(repr=False)
    n_hvp: int
    #: Why the derivative could not be computed (then ``derivative`` is NaN).
    error: str = ""
    relative: float = math.nan

    @property
    def first_order(self) -> float:
        """``grad H(0) . phi``."""
        return float(self.gradient @ self.direction)


def _growth_backends(device: torch.device, products: str = "exact"):
    """The CUDA backend settings of a growth decision: cuDNN off for exact products,
    and float32 arithmetic (no TF32) with cuDNN on for the other kinds."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    if products == "exact":
        # cuDNN's RNN kernels have no double backward; the native kernels do.
        return torch.backends.cudnn.flags(**_cudnn_flags(enabled=False))
    # Difference products need first-order gradients only, which the fused kernels
    # compute, but in float32: TF32 (which cuDNN and, if asked, matmul may use on Ampere
    # and later GPUs) rounds to about 5e-4, and dividing by 2 * step (about 1e-2) would
    # turn that into errors of a few per cent of a product instead of about 1e-5. The
    # expansion's moments are matrix products too, over the whole sample.
    return _without_tf32()


def _cudnn_flags(**changed) -> dict:
    # torch.backends.cudnn.flags resets every flag it is not given: keep the caller's.
    cudnn = torch.backends.cudnn
    return {"enabled": cudnn.enabled, "benchmark": cudnn.benchmark,
            "deterministic": cudnn.deterministic, "allow_tf32": cudnn.allow_tf32, **changed}


@contextlib.contextmanager
def _without_tf32():
    matmul = torch.backends.cuda.matmul
    was = matmul.allow_tf32
    try:
        with torch.backends.cudnn.flags(**_cudnn_flags(enabled=True, allow_tf32=False)):
            matmul.allow_tf32 = False
            yield
    finally:
        matmul.allow_tf32 = was


def _position_derivative(
    position: int, eig: EigenResult, gradient: torch.Tensor, loss: float
) -> PositionDerivative:
    return PositionDerivative(
        position=position,
        derivative=eig.value,
        direction=eig.vector,
        gradient=gradient.cpu().double().numpy(),
        n_hvp=eig.n_hvp,
        error=eig.error,
        relative=relative_derivative(eig.value, loss),
    )


def _one_position(op: BlockHessianOperator, **solver) -> EigenResult:
    n = op.sizes[0]
    try:
        return top_eigenpair(lambda v: op({0: v})[0], n, **solver)
    except (FloatingPointError, ValueError) as exc:
        # ValueError covers scipy's eigh_tridiagonal and its LinAlgError.
        return EigenResult(value=math.nan, vector=np.zeros(n), n_hvp=op.calls,
                           error=f"{type(exc).__name__}: {exc}")


def _hamiltonians(
    module, X, y, loss_fn, products: str
) -> tuple[list[Callable], list[torch.Tensor], float]:
    """The Hamiltonian of every position on ``(X, y)`` (for ``"expansion"`` products its
    second-order expansion at 0), its zero point, and the loss."""
    hidden, adjoints, loss = layer_outputs_and_adjoints(module, X, y, loss_fn)
    pairs = list(zip(hidden, adjoints, strict=True))
    if products == "expansion":
        functions = [hamiltonian_expansion(h, a) for h, a in pairs]
    else:
        functions = [lambda theta, h=h, a=a: hamiltonian(theta, h, a) for h, a in pairs]
    zeros = [torch.zeros(lstm_parameter_count(h.shape[-1])).to(h) for h in hidden]
    return functions, zeros, loss


def _products_operator(functions, zeros, products: str) -> BlockHessianOperator:
    # The expansion is a quadratic polynomial: its exact products are the Hessian's at 0.
    kind = "exact" if products == "expansion" else products
    return block_hessian_vector_product(functions, zeros, products=kind)


def topological_derivatives(
    module: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    method: str = "lanczos",
    max_hvp: int = 40,
    seed: int = 0,
    tol: float = 1e-3,
    lockstep: bool = True,
    hessian_products: str = "exact",
) -> tuple[list[PositionDerivative], float]:
    """Topological derivative and direction for every position ``1..num_layers``.

    Parameters
    ----------
    module : nn.Module
        A network with ``forward_with_hidden`` (:class:`sktlag.model.GrowingLSTM`).
    X, y : Tensor
        The sample the derivatives are computed on.
    loss_fn : callable
        ``loss_fn(prediction, y)``, a mean over the sample.
    method : {"lanczos", "power"}, default="lanczos"
        Eigen-solver (see :func:`top_eigenpair`).
    max_hvp : int, default=40
        Hessian-vector product budget of each position.
    seed : int, default=0
        Position ``l`` starts its solver from the vector of seed ``seed + l``.
    tol : float, default=1e-3
        Relative stopping tolerance of the solver (see :func:`top_eigenpair`); the
        Lanczos residual bound, so the eigenvalue itself is typically much closer.
        Enough to rank positions and to pick a direction.
    lockstep : bool, default=True
        If True, one gradient graph over all positions
        (:func:`block_hessian_vector_product`) and the solvers in lockstep
        (:func:`top_eigenpairs`): each backward pass serves every position still
        iterating, and the number of backward passes is the largest ``n_hvp``. If
        False, one graph and one solver per position in turn (the number of backward
        passes is the sum of the ``n_hvp``). Both give the same result.
    hessian_products : {"exact", "difference", "expansion", "auto"}, default="exact"
        How the Hessian-vector products are computed: ``"exact"`` and ``"difference"``
        through the virtual layers (see :func:`block_hessian_vector_product`; exact
        products run without cuDNN on CUDA), ``"expansion"`` as exact products of
        :func:`hamiltonian_expansion`; ``"auto"`` is the expansion.

    Returns
    -------
    derivatives : list of PositionDerivative
        A position whose eigen-solver failed numerically (a non-finite Hessian-vector
        product, an overflow in the iteration) has derivative NaN and the cause in
        ``error``; the other positions are still computed.
    loss : float
        Sample loss of the current network.
    """
    # Fail on a bad argument here, not as a NaN derivative at every position.
    _check_solver(method, max_hvp)
    products = _resolve_products(hessian_products)
    solver = {"method": method, "max_hvp": max_hvp, "tol": tol}
    with _growth_backends(X.device, products):
        functions, zeros, loss = _hamiltonians(module, X, y, loss_fn, products)
        positions = range(1, len(functions) + 1)
        if lockstep:
            op = _products_operator(functions, zeros, products)
            eigs = top_eigenpairs(op, op.sizes, seeds=[seed + p for p in positions], **solver)
            gradients = op.gradients
        else:
            eigs, gradients = [], []
            for position, f, zero in zip(positions, functions, zeros, strict=True):
                one = _products_operator([f], [zero], products)
                eigs.append(_one_position(one, seed=seed + position, **solver))
                gradients += one.gradients
    results = [
        _position_derivative(p, eig, g, loss)
        for p, eig, g in zip(positions, eigs, gradients, strict=True)
    ]
    return results, loss


def holdout_gains(
    module: nn.Module,
    blocks: Sequence[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    directions: Sequence[np.ndarray],
    *,
    hessian_products: str = "exact",
) -> np.ndarray:
    """The second-order gain of every candidate layer, measured on held-out windows.

    For block ``k`` (windows the directions were not computed on) and position ``l``,
    the Rayleigh quotient ``phi_l . Hess H_lk(0) phi_l`` of the Hamiltonian ``H_lk`` of
    that block (its own layer outputs and adjoints). On the sample that chose it,
    ``phi_l`` is the best of thousands of directions, so its eigenvalue is biased
    upwards by whatever noise it fits; on windows it never saw, its quotient is an
    unbiased estimate of the gain it promises, zero on average where the residuals hold
    nothing a new layer could learn.

    Parameters
    ----------
    module : nn.Module
        A network with ``forward_with_hidden`` (:class:`sktlag.model.GrowingLSTM`).
    blocks : sequence of (Tensor, Tensor)
        The held-out windows ``(X_k, y_k)``, block by block.
    loss_fn : callable
        ``loss_fn(prediction, y)``, a mean over the block.
    directions : sequence of ndarray
        The unit direction ``phi_l`` of every position ``1..num_layers``.
    hessian_products : {"exact", "difference", "expansion", "auto"}, default="exact"
        How the products are computed (as in :func:`topological_derivatives`).

    Returns
    -------
    ndarray of shape (n_blocks, n_positions)
        NaN where a direction is not finite or zero (its eigen-solver failed) or a
        product is not finite.
    """
    gains = np.full((len(blocks), len(directions)), np.nan)
    usable = [
        i for i, d in enumerate(directions)
        if np.isfinite(d).all() and np.linalg.norm(d) > 0
    ]
    for k, (X, y) in enumerate(blocks):
        kind = _resolve_products(hessian_products)
        with _growth_backends(X.device, kind):
            functions, zeros, _ = _hamiltonians(module, X, y, loss_fn, kind)
            if len(functions) != len(directions):
                raise ValueError(
                    f"{len(directions)} directions for a network of {len(functions)} layers"
                )
            op = _products_operator(functions, zeros, kind)
            products = op({i: torch.as_tensor(directions[i]) for i in usable})
        for i in usable:
            gains[k, i] = float(np.dot(directions[i], products[i].cpu().double().numpy()))
    return gains


def holdout_statistic(gains: np.ndarray) -> np.ndarray:
    """The mean held-out gain of each position in units of its standard error.

    ``mean_k g_k / (std_k g_k / sqrt(K))`` over the ``K`` blocks (sample standard
    deviation): a t statistic, so a threshold on it is a level of evidence that a new
    layer helps on windows it was not chosen on, the same on every basin, target scaling
    and fit quality (values near 0 where it would only fit noise; above 2 a positive
    gain is unlikely to be chance with 8 blocks). NaN with fewer than 2 blocks or a
    non-finite gain; ``+-inf`` when the blocks agree exactly on a non-zero gain, 0 on a
    zero one.

    Parameters
    ----------
    gains : ndarray of shape (n_blocks, n_positions)
        From :func:`holdout_gains`.

    Returns
    -------
    ndarray of shape (n_positions,)
    """
    gains = np.asarray(gains, dtype=np.float64)
    out = np.full(gains.shape[1], np.nan)
    for i, column in enumerate(gains.T):
        if not np.isfinite(column).all() or len(column) < 2:
            continue
        mean, std = column.mean(), column.std(ddof=1)
        if std > 0:
            out[i] = mean / (std / math.sqrt(len(column)))
        else:
            out[i] = 0.0 if mean == 0 else math.copysign(math.inf, mean)
    return out


@dataclass
class GrowthDecision:
    """What one growth step computed and decided (plain data, for the history).

    ``derivatives`` are the raw eigenvalues ``d_l`` of the positions 1..L,
    ``relative_derivatives`` the values ``d_l / (2 * loss)``, ``holdout_statistics``
    the held-out t statistics of their directions; ``criterion`` says which of them
    the threshold was compared with. ``n_hvp`` is the number of
    Hessian-vector backward passes the decision ran (over all positions, with the
    held-out blocks' one each), and
    ``hessian_products`` how they were computed (``"expansion"``, ``"exact"`` or
    ``"difference"``; None where no derivative was computed).
    """

    derivatives: list[float]
    position: int | None
    inserted: bool
    reason: str
    #: ``"inserted"``, or the rule that ended growth (``"threshold"``, ``"max_layers"``,
    #: ``"not_computable"``; the training loop adds ``"validation"``).
    rule: str = "threshold"
    relative_derivatives: list[float] = field(default_factory=list)
    #: :func:`holdout_statistic` of each position (empty without held-out windows).
    holdout_statistics: list[float] = field(default_factory=list)
    criterion: str = "relative"
    scale: float = 0.0
    sign: float = 0.0
    backtracking_steps: int = 0
    n_hvp: int = 0
    hessian_products: str | None = None
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
    criterion: str = "relative",
    tol: float = 1e-3,
    lockstep: bool = True,
    holdout: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
    hessian_products: str = "exact",
) -> GrowthDecision:
    """Compute the derivatives and, if one exceeds ``threshold``, insert a layer there.

    The new residual layer starts at ``theta0 = eps * s * phi`` with ``s`` from
    :func:`choose_sign` and ``eps`` from :func:`backtracking_scale`. ``module`` is
    changed in place only when a layer is inserted; with ``threshold = inf`` nothing is
    computed. ``strategy`` (see
    ``INSERTION_STRATEGIES``) replaces where and how for ablation studies; the decision
    to grow is the same.

    ``criterion`` says what ``threshold`` is compared with: ``"relative"`` (default),
    the relative derivative ``d / (2 * loss)`` of :func:`relative_derivative`, the
    predicted relative decrease of the sample loss per unit squared norm of the new
    layer's parameters, which does not depend on the scale of the targets; ``"raw"``,
    the eigenvalue ``d`` itself (the research code's rule, whose meaning changes with
    the loss scale); ``"holdout"``, the :func:`holdout_statistic` of each position's
    direction on the blocks of windows ``holdout`` (at least two; computed whenever
    they are given, so the record has it under any criterion). ``tol`` is the
    eigen-solver's relative tolerance and ``lockstep``
    chooses between the solvers of all positions in lockstep and one position after
    the other (see :func:`topological_derivatives`); neither changes what is decided
    beyond the solver's accuracy. ``hessian_products`` says how the Hessian-vector
    products are computed, for the derivatives and the held-out statistic alike
    (``"exact"``, ``"difference"``, ``"expansion"`` or ``"auto"``, see
    :func:`topological_derivatives`);
    the decision records the kind used.

    A decision that cannot be computed (a non-finite sample loss, Hessian-vector product
    or eigenpair, or relative derivative) inserts nothing and does not raise: its
    ``reason`` starts with ``"not computable"`` and names the cause, and a
    ``RuntimeWarning`` is issued.
    """
    if strategy not in INSERTION_STRATEGIES:
        raise ValueError(f"strategy must be one of {INSERTION_STRATEGIES}, got {strategy!r}")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    products = _resolve_products(hessian_products)
    if criterion == "holdout" and len(holdout or ()) < 2:
        raise ValueError(
            "criterion 'holdout' needs at least 2 blocks of held-out windows, got "
            f"{len(holdout or ())}"
        )
    start = time.perf_counter()
    if module.num_layers >= max_layers:
        return GrowthDecision(
            derivatives=[], position=None, inserted=False, reason="max_layers reached",
            rule="max_layers", criterion=criterion, seconds=time.perf_counter() - start,
        )
    if threshold == math.inf:
        # No derivative can exceed it: skip the Hessian work (a fixed-depth network).
        return GrowthDecision(
            derivatives=[], position=None, inserted=False,
            reason="threshold is inf: growth disabled", criterion=criterion,
            seconds=time.perf_counter() - start,
        )
    found, loss = topological_derivatives(
        module, X, y, loss_fn, method=method, max_hvp=max_hvp, seed=seed, tol=tol,
        lockstep=lockstep, hessian_products=products,
    )
    values = [d.derivative for d in found]
    relative = [d.relative for d in found]
    # In lockstep every backward pass serves all positions still iterating, so the
    # passes run are those of the position that iterated longest.
    counts = [d.n_hvp for d in found]
    n_hvp = max(counts, default=0) if lockstep else sum(counts)
    held_out = _holdout_values(module, holdout, loss_fn, found, products) if holdout else []
    # The held-out products: one pass per block serves every position.
    n_hvp += len(holdout) if holdout else 0
    decision = GrowthDecision(
        derivatives=values, position=None, inserted=False, reason="",
        relative_derivatives=relative, holdout_statistics=held_out, criterion=criterion,
        n_hvp=n_hvp, hessian_products=products, loss_before=loss, loss_after=loss,
    )
    compared = {"relative": relative, "raw": values, "holdout": held_out}[criterion]
    name = _CRITERION_NAMES[criterion]
    # A held-out statistic is +-inf where the blocks agree exactly: evidence, not a
    # failure; NaN is what it cannot compute.
    computed = (lambda v: not math.isnan(v)) if criterion == "holdout" else math.isfinite
    if not (all(math.isfinite(v) for v in [*values, loss])
            and all(computed(v) for v in compared)):
        causes = [f"position {d.position}: {d.error}" for d in found if d.error]
        cause = causes[0] if causes else f"non-finite {name}s {compared} or loss {loss}"
        warnings.warn(
            f"growth decision skipped, no layer inserted: {cause}", RuntimeWarning,
            stacklevel=2,
        )
        decision.reason = f"not computable ({cause})"
        decision.rule = "not_computable"
    else:
        index = int(np.argmax(compared))
        best, value = found[index], compared[index]
        if value <= threshold:
            decision.reason = f"largest {name} {value:.4g} <= threshold {threshold:.4g}"
        else:
            best = _ablate(best, found, strategy, seed + module.num_layers)
            decision.position = best.position
            decision.sign = choose_sign(best.gradient, best.direction)
            _insert_with_backtracking(
                module, X, y, loss_fn, best, decision,
                init_scale=init_scale, min_scale=min_scale, tolerance=tolerance,
            )
            # What decided to grow: the largest value, wherever an ablation then inserts.
            decision.reason = (
                f"{name} {value:.4g} at position {found[index].position} > threshold "
                f"{threshold:.4g}"
            )
            if strategy != "topological":
                decision.reason += f"; {_ABLATIONS[strategy]} at position {best.position}"
    decision.seconds = time.perf_counter() - start
    return decision


_ABLATIONS = {"random": "a layer along a random direction",
              "append_zero": "a zero layer on top"}

_CRITERION_NAMES = {
    "relative": "relative derivative", "raw": "derivative", "holdout": "held-out statistic",
}


def _holdout_values(
    module, holdout, loss_fn, found: list[PositionDerivative], products: str
) -> list[float]:
    try:
        gains = holdout_gains(module, holdout, loss_fn, [d.direction for d in found],
                              hessian_products=products)
    except (FloatingPointError, RuntimeError) as exc:
        warnings.warn(f"held-out statistic not computable: {exc}", RuntimeWarning,
                      stacklevel=3)
        return [math.nan] * len(found)
    return [float(v) for v in holdout_statistic(gains)]


def _ablate(
    best: PositionDerivative, found: list[PositionDerivative], strategy: str, seed: int
) -> PositionDerivative:
    if strategy == "topological":
        return best
    if strategy == "append_zero":
        top = found[-1]
        return dataclasses.replace(top, direction=np.zeros_like(top.direction))
    rng = np.random.default_rng(seed)
    pick = found[int(rng.integers(len(found)))]
    direction = rng.standard_normal(pick.direction.shape)
    return dataclasses.replace(pick, direction=direction / np.linalg.norm(direction))


def _insert_with_backtracking(
    module, X, y, loss_fn, best: PositionDerivative, decision: GrowthDecision,
    *, init_scale: float, min_scale: float, tolerance: float,
) -> None:
    hidden_size = module.hidden_size
    reference = next(module.parameters())
    direction = torch.as_tensor(best.direction * decision.sign).to(reference)
    params = {}

    def set_scale(scale: float) -> None:
        with torch.no_grad():
            for name, value in unflatten_lstm_parameters(scale * direction, hidden_size).items():
                params[name].copy_(value)

    def loss_at(scale: float) -> float:
        set_scale(scale)
        return _sample_loss(module, X, y, loss_fn)

    depth = module.num_layers
    # Building the layer draws its (then overwritten) initial weights from torch's CPU
    # generator: an insertion undone gives the draws back, so that a decision that
    # inserts nothing leaves the random streams of training as they were.
    random_state = torch.random.get_rng_state()
    try:  # whatever stops it (an error, an interrupt), no layer is left behind
        layer = module.insert_layer(best.position)
        params.update(layer.lstm.named_parameters())
        if np.any(best.direction):
            # Judged against the zero layer's loss by the same forward pass as the
            # scales: on a GPU the decision's own loss came under other backend settings
            # (no TF32), whose rounding is as large as the gains judged here.
            scale, steps, new_loss = backtracking_scale(
                loss_at, loss_at(0.0),
                init_scale=init_scale, min_scale=min_scale, tolerance=tolerance,
            )
        else:  # a zero layer ("append_zero"): every scale gives it, record none
            scale, steps, new_loss = 0.0, 0, loss_at(0.0)
        set_scale(scale)
        decision.inserted = True
        decision.rule = "inserted"
        decision.scale = scale
        decision.backtracking_steps = steps
        decision.loss_after = new_loss
    except BaseException:
        if module.num_layers > depth:
            del module.layers[best.position]
            torch.random.set_rng_state(random_state)
        raise
