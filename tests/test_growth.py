"""The growth math on tiny float64 models, against dense truth."""

import copy
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sktlag import TLAGRegressor
from sktlag.growth import (
    backtracking_scale,
    block_hessian_vector_product,
    choose_sign,
    difference_step,
    grow,
    hamiltonian,
    hamiltonian_expansion,
    hessian_vector_product,
    holdout_gains,
    holdout_statistic,
    layer_outputs_and_adjoints,
    lstm_parameter_count,
    relative_derivative,
    top_eigenpair,
    top_eigenpairs,
    topological_derivatives,
    unflatten_lstm_parameters,
)
from sktlag.losses import masked_mse
from sktlag.model import GrowingLSTM
from sktlag.windows import holdout_blocks

from .conftest import FAST, make_series


def _problem(hidden=4, batch=5, steps=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, steps, hidden, generator=g, dtype=torch.float64)
    a = 0.1 * torch.randn(batch, steps, hidden, generator=g, dtype=torch.float64)
    n = lstm_parameter_count(hidden)
    f = lambda theta: hamiltonian(theta, h, a)  # noqa: E731
    return f, n


def _dense_hessian(f, n):
    zero = torch.zeros(n, dtype=torch.float64)
    return torch.autograd.functional.hessian(f, zero, vectorize=True).numpy()


def test_parameter_count_matches_nn_lstm():
    for hidden in (1, 4, 8):
        lstm = torch.nn.LSTM(hidden, hidden)
        assert lstm_parameter_count(hidden) == sum(p.numel() for p in lstm.parameters())
    assert lstm_parameter_count(8) == 576


def test_unflatten_order_matches_nn_lstm():
    theta = torch.arange(lstm_parameter_count(2), dtype=torch.float64)
    params = unflatten_lstm_parameters(theta, 2)
    lstm = torch.nn.LSTM(2, 2)
    assert [k for k, _ in lstm.named_parameters()] == list(params)
    assert all(params[k].shape == p.shape for k, p in lstm.named_parameters())
    with pytest.raises(ValueError, match="entries"):
        unflatten_lstm_parameters(theta[:-1], 2)


def test_layer_output_is_zero_at_zero_but_gradient_is_not():
    f, n = _problem()
    zero = torch.zeros(n, dtype=torch.float64)
    assert f(zero).item() == 0.0
    op = hessian_vector_product(f, zero)
    assert torch.linalg.norm(op.gradient) > 0


def test_hvp_matches_finite_differences_of_gradients():
    f, n = _problem(hidden=3)
    theta0 = 0.05 * torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    op = hessian_vector_product(f, theta0)
    v = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    eps = 1e-5

    def grad_at(x):
        x = x.clone().requires_grad_(True)
        return torch.autograd.grad(f(x), x)[0]

    fd = (grad_at(theta0 + eps * v) - grad_at(theta0 - eps * v)) / (2 * eps)
    hv = op(v)
    rel = torch.linalg.norm(hv - fd) / torch.linalg.norm(fd)
    assert rel < 1e-4
    assert op.calls == 1


def test_hessian_spectrum_is_symmetric_about_zero():
    f, n = _problem(hidden=3)
    values = np.linalg.eigvalsh(_dense_hessian(f, n))
    np.testing.assert_allclose(np.sort(values), np.sort(-values), atol=1e-10)


@pytest.mark.parametrize("hidden", [2, 4, 8])
def test_lanczos_matches_dense_top_eigenpair(hidden):
    f, n = _problem(hidden=hidden, seed=hidden)
    dense = _dense_hessian(f, n)
    truth = np.linalg.eigvalsh(dense)[-1]
    op = hessian_vector_product(f, torch.zeros(n, dtype=torch.float64))
    res = top_eigenpair(op, n, method="lanczos", max_hvp=120, tol=1e-10)
    assert abs(res.value - truth) <= 1e-6 * abs(truth)
    assert res.n_hvp <= 120 and res.n_hvp == op.calls
    assert np.isclose(np.linalg.norm(res.vector), 1.0)
    assert np.linalg.norm(dense @ res.vector - res.value * res.vector) < 1e-4


def test_power_iteration_finds_the_largest_algebraic_not_largest_magnitude():
    f, n = _problem(hidden=3, seed=7)
    truth = np.linalg.eigvalsh(_dense_hessian(f, n))[-1]
    op = hessian_vector_product(f, torch.zeros(n, dtype=torch.float64))
    res = top_eigenpair(op, n, method="power", max_hvp=3000, tol=1e-12)
    assert res.value > 0
    assert abs(res.value - truth) <= 1e-3 * abs(truth)
    assert res.n_hvp <= 3000


@pytest.mark.parametrize("method", ["lanczos", "power"])
@pytest.mark.parametrize("max_hvp", [4, 10])
def test_the_eigenvalue_is_the_rayleigh_quotient_of_the_vector_returned(method, max_hvp):
    # A budget too small to converge: the pair must still belong together, since the
    # value decides growth and the vector is the layer inserted.
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((50, 50)))
    dense = q @ np.diag(np.r_[np.linspace(-1, 1, 48), 3.0, -3.0]) @ q.T
    res = top_eigenpair(lambda v: torch.as_tensor(dense @ v.numpy()), 50, method=method,
                        max_hvp=max_hvp, tol=0.03)
    assert res.value == pytest.approx(res.vector @ dense @ res.vector, rel=1e-9)


def test_eigen_solver_budget_is_never_exceeded():
    f, n = _problem(hidden=8)
    op = hessian_vector_product(f, torch.zeros(n, dtype=torch.float64))
    for method in ("lanczos", "power"):
        before = op.calls
        res = top_eigenpair(op, n, method=method, max_hvp=7, tol=0.0)
        assert res.n_hvp == op.calls - before <= 7
    with pytest.raises(ValueError, match="method"):
        top_eigenpair(op, n, method="qr")
    # The power iteration needs a product for the spectral radius and one to iterate:
    # with a budget of one it made two.
    with pytest.raises(ValueError, match="method='power' needs max_hvp >= 2, got 1"):
        top_eigenpair(op, n, method="power", max_hvp=1)


def test_zero_operator_gives_zero():
    res = top_eigenpair(lambda v: torch.zeros_like(v), 10, method="lanczos", max_hvp=5)
    assert res.value == 0.0


@settings(max_examples=60, deadline=None)
@given(
    losses=st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=20),
    base=st.floats(0.01, 5),
    tol=st.floats(0, 0.5),
)
def test_backtracking_never_accepts_a_scale_that_breaks_its_rule(losses, base, tol):
    tried = []

    def loss_at(scale):
        tried.append(scale)
        return losses[min(len(tried) - 1, len(losses) - 1)]

    scale, steps, loss = backtracking_scale(
        loss_at, base, init_scale=1.0, min_scale=1e-3, tolerance=tol
    )
    assert steps == len(tried)
    assert all(s >= 1e-3 for s in tried)
    assert tried == [1.0 / 2**i for i in range(len(tried))]
    if scale > 0:
        assert loss <= (1 + tol) * base and scale == tried[-1]
        # The largest acceptable scale: every larger one tried before was refused.
        assert all(losses[min(i, len(losses) - 1)] > (1 + tol) * base
                   for i in range(len(tried) - 1))
    else:
        assert loss == base and all(
            losses[min(i, len(losses) - 1)] > (1 + tol) * base for i in range(len(tried))
        )


def test_backtracking_rejects_nan_losses():
    scale, steps, _ = backtracking_scale(
        lambda s: float("nan"), 1.0, init_scale=1.0, min_scale=0.25, tolerance=0.0
    )
    assert scale == 0.0 and steps == 3


def _tiny_network(seed=0, layers=2):
    torch.manual_seed(seed)
    m = GrowingLSTM(n_features=2, hidden_size=3, num_layers=layers, n_outputs=1).double()
    X = torch.randn(16, 5, 2, dtype=torch.float64)
    y = torch.randn(16, 1, dtype=torch.float64)
    return m, X, y


def test_adjoints_match_a_perturbation_of_the_hidden_sequence():
    m, X, y = _tiny_network()
    hidden, adjoints, loss = layer_outputs_and_adjoints(m, X, y, masked_mse)
    assert len(hidden) == len(adjoints) == 2 and m.training
    # Directional derivative of the loss wrt layer-1 output, by adding delta inside layer 1.
    delta = 1e-6 * torch.randn_like(hidden[0])
    layer = m.layers[0]
    original = layer.forward
    layer.forward = lambda x, d=None: original(x, d) + delta
    m.eval()
    with torch.no_grad():
        perturbed = float(masked_mse(m(X), y))
    layer.forward = original
    assert np.isclose(perturbed - loss, float((adjoints[0] * delta).sum()), rtol=1e-4)


def test_derivatives_cover_every_position_and_equal_dense_truth():
    m, X, y = _tiny_network(layers=2)
    found, loss = topological_derivatives(m, X, y, masked_mse, max_hvp=200)
    assert [d.position for d in found] == [1, 2]
    hidden, adjoints, _ = layer_outputs_and_adjoints(m, X, y, masked_mse)
    n = lstm_parameter_count(3)
    for d, h, a in zip(found, hidden, adjoints, strict=True):
        truth = np.linalg.eigvalsh(_dense_hessian(lambda t, h=h, a=a: hamiltonian(t, h, a), n))
        assert np.isclose(d.derivative, truth[-1], rtol=1e-6)


def test_backtracking_judges_scales_against_the_same_forward_pass(monkeypatch):
    # On a GPU the decision's loss is computed under other backend settings (no TF32)
    # than the scales tried: a base rounded lower refused every scale and recorded that
    # base as the loss after; one rounded higher would accept a scale that raises it.
    import sktlag.growth as growth_module

    found_by = growth_module.topological_derivatives

    def rounded_lower(*args, **kwargs):
        found, loss = found_by(*args, **kwargs)
        return found, 0.5 * loss

    monkeypatch.setattr(growth_module, "topological_derivatives", rounded_lower)
    decision, before, after = _grown_at_scale_one()
    assert decision.inserted and decision.scale > 0
    assert decision.loss_after == pytest.approx(after, rel=1e-12) and after <= before


def test_blocks_that_agree_exactly_are_the_strongest_evidence(monkeypatch):
    # Identical held-out gains give a t statistic of +inf, which holdout_statistic
    # documents; grow took it for a value it could not compute and stopped growth.
    import sktlag.growth as growth_module

    m, X, y = _tiny_network(layers=2)
    monkeypatch.setattr(growth_module, "holdout_gains",
                        lambda *args, **kwargs: np.array([[0.5, 0.2]] * 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        decision = grow(m, X, y, masked_mse, threshold=2.0, max_layers=5, max_hvp=20,
                        criterion="holdout", holdout=[(X, y)] * 3)
    assert decision.holdout_statistics[0] == np.inf
    assert decision.inserted and decision.position == 1


def _grown_at_scale_one():
    """A growth decision on the tiny network from scale 1, and its sample loss before
    and after."""
    m, X, y = _tiny_network(layers=2)
    m.eval()
    with torch.no_grad():
        before = float(masked_mse(m(X), y))
    decision = grow(m, X, y, masked_mse, threshold=-np.inf, max_layers=5, max_hvp=60,
                    init_scale=1.0, min_scale=1e-3, tolerance=0.0)
    assert m.num_layers == 2 + decision.inserted
    with torch.no_grad():
        after = float(masked_mse(m(X), y))
    return decision, before, after


def test_grow_inserts_where_largest_and_never_raises_the_sample_loss():
    decision, before, after = _grown_at_scale_one()
    assert decision.inserted
    assert decision.position == 1 + int(np.argmax(decision.derivatives))
    # A zero layer would also keep the loss: here the first scale is taken and lowers it.
    assert decision.scale == 1.0 and after < before
    assert np.isclose(after, decision.loss_after)
    assert decision.sign in (-1.0, 1.0)


def test_grow_respects_threshold_and_max_layers():
    m, X, y = _tiny_network(layers=2)
    decision = grow(m, X, y, masked_mse, threshold=np.inf, max_layers=5)
    assert not decision.inserted and m.num_layers == 2 and "threshold" in decision.reason
    decision = grow(m, X, y, masked_mse, threshold=-np.inf, max_layers=2)
    assert not decision.inserted and decision.reason == "max_layers reached"


@pytest.mark.parametrize("strategy", ["random", "append_zero"])
def test_ablation_strategies_insert_where_they_say(strategy):
    m, X, y = _tiny_network(layers=2)
    m.eval()
    with torch.no_grad():
        before = m(X)
    decision = grow(m, X, y, masked_mse, threshold=-np.inf, max_layers=5, max_hvp=20,
                    strategy=strategy)
    assert decision.inserted and m.num_layers == 3
    # The reason names what decided to grow: the largest derivative, not the one of
    # the position an ablation inserts at.
    largest = max(decision.relative_derivatives)
    assert decision.reason.startswith(f"relative derivative {largest:.4g} at position ")
    if strategy == "append_zero":
        assert decision.reason.endswith("; a zero layer on top at position 2")
        # A zero layer: no scale, and the loss it leaves is the loss before.
        assert decision.position == 2 and decision.scale == 0.0
        assert decision.backtracking_steps == 0
        assert decision.loss_after == pytest.approx(decision.loss_before, rel=1e-12)
        with torch.no_grad():
            assert torch.equal(before, m(X))  # a zero layer changes nothing
    else:
        assert f"random direction at position {decision.position}" in decision.reason
    with pytest.raises(ValueError, match="strategy"):
        grow(m, X, y, masked_mse, threshold=0.0, max_layers=5, strategy="best")


def test_infinite_threshold_skips_the_derivatives():
    m, X, y = _tiny_network(layers=2)
    calls = []
    decision = grow(
        m, X, y, lambda p, t: calls.append(1) or masked_mse(p, t),
        threshold=np.inf, max_layers=5,
    )
    assert calls == [] and decision.n_hvp == 0 and decision.derivatives == []
    assert not decision.inserted and m.num_layers == 2 and "threshold" in decision.reason


# ---------------------------------------------------------------- relative derivative
def test_relative_derivative_is_half_the_derivative_over_the_loss():
    assert relative_derivative(0.3, 1.5) == pytest.approx(0.1)
    assert relative_derivative(-0.3, 0.5) == pytest.approx(-0.3)
    assert relative_derivative(0.3, 0.0) == np.inf
    assert relative_derivative(-0.3, 0.0) == -np.inf
    for derivative, loss in [(0.0, 0.0), (0.3, -1.0), (np.nan, 1.0), (0.3, np.inf)]:
        assert np.isnan(relative_derivative(derivative, loss))


def _scaled_copy(m, c):
    """The same network with predictions multiplied by ``c``."""
    scaled = copy.deepcopy(m)
    with torch.no_grad():
        scaled.head.weight.mul_(c)
        scaled.head.bias.mul_(c)
    return scaled


@pytest.mark.parametrize("c", [7.0, 1e-5])
def test_relative_derivative_does_not_depend_on_the_target_scale(c):
    # 1e-5: a loss 1e-10 times as large, whose Lanczos betas an absolute floor took for
    # an invariant subspace after one product.
    m, X, y = _tiny_network(seed=1, layers=3)
    scaled = _scaled_copy(m, c)
    with torch.no_grad():
        torch.testing.assert_close(scaled(X), c * m(X))
    found, loss = topological_derivatives(m, X, y, masked_mse, max_hvp=200, tol=1e-10)
    found_c, loss_c = topological_derivatives(scaled, X, c * y, masked_mse, max_hvp=200,
                                              tol=1e-10)
    assert loss_c == pytest.approx(c**2 * loss, rel=1e-12)
    raw = np.array([d.derivative for d in found])
    raw_c = np.array([d.derivative for d in found_c])
    relative = np.array([d.relative for d in found])
    relative_c = np.array([d.relative for d in found_c])
    assert np.all(raw > 0)
    np.testing.assert_allclose(raw_c, c**2 * raw, rtol=1e-6)
    np.testing.assert_allclose(relative_c, relative, rtol=1e-6)
    np.testing.assert_allclose(relative, raw / (2 * loss), rtol=1e-12)
    # The sample size does not matter either: the loss is a mean.
    doubled, loss_2 = topological_derivatives(
        m, torch.cat([X, X]), torch.cat([y, y]), masked_mse, max_hvp=200, tol=1e-10
    )
    assert loss_2 == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose([d.relative for d in doubled], relative, rtol=1e-6)


def test_relative_criterion_decides_the_same_at_every_target_scale():
    m, X, y = _tiny_network(seed=1, layers=2)
    c = 10.0
    kwargs = {"max_layers": 5, "max_hvp": 60, "tol": 1e-8}
    probe = grow(copy.deepcopy(m), X, y, masked_mse, threshold=np.inf, **kwargs)
    found, _ = topological_derivatives(m, X, y, masked_mse, max_hvp=60, tol=1e-8)
    top_raw = max(d.derivative for d in found)
    top_relative = max(d.relative for d in found)
    assert probe.derivatives == []  # an infinite threshold computes nothing
    for criterion, top in [("raw", top_raw), ("relative", top_relative)]:
        threshold = 2 * top  # above the unscaled value, below c**2 times it
        plain = grow(copy.deepcopy(m), X, y, masked_mse, threshold=threshold,
                     criterion=criterion, **kwargs)
        big = grow(_scaled_copy(m, c), X, c * y, masked_mse, threshold=threshold,
                   criterion=criterion, **kwargs)
        assert not plain.inserted and plain.criterion == criterion
        assert big.inserted == (criterion == "raw")
        np.testing.assert_allclose(big.derivatives, c**2 * np.array(plain.derivatives),
                                   rtol=1e-6)
        np.testing.assert_allclose(big.relative_derivatives, plain.relative_derivatives,
                                   rtol=1e-6)
    with pytest.raises(ValueError, match="criterion"):
        grow(m, X, y, masked_mse, threshold=0.0, max_layers=5, criterion="absolute")


# ---------------------------------------------------------------- lockstep solvers
def _block_diagonal_problem(sizes=(5, 30, 12), seed=0):
    rng = np.random.default_rng(seed)
    blocks = []
    for n in sizes:
        a = rng.standard_normal((n, n))
        blocks.append(torch.as_tensor((a + a.T) / 2))
    return blocks


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_lockstep_solvers_equal_one_solver_per_block(method):
    blocks = _block_diagonal_problem()
    passed = []

    def hvp(vectors):
        passed.append(sorted(vectors))
        return {i: blocks[i] @ v for i, v in vectors.items()}

    budget = 200 if method == "lanczos" else 3000
    seeds = [3, 4, 5]
    results = top_eigenpairs(hvp, [len(b) for b in blocks], method=method, max_hvp=budget,
                             seeds=seeds, tol=1e-10)
    assert len(passed) == max(r.n_hvp for r in results)
    for i, (block, res, seed) in enumerate(zip(blocks, results, seeds, strict=True)):
        alone = top_eigenpair(lambda v, b=block: b @ v, len(block), method=method,
                              max_hvp=budget, seed=seed, tol=1e-10)
        assert res.value == pytest.approx(alone.value, rel=1e-12) and res.error == ""
        np.testing.assert_allclose(res.vector, alone.vector, atol=1e-10)
        # A block takes part in exactly its own number of products, then drops out.
        assert sum(i in keys for keys in passed) == res.n_hvp == alone.n_hvp
        assert all(i in keys for keys in passed[: res.n_hvp])
        if method == "lanczos":
            assert res.value == pytest.approx(np.linalg.eigvalsh(block.numpy())[-1], rel=1e-8)


def test_block_operator_equals_one_operator_per_block():
    problems = [_problem(hidden=3, seed=s) for s in range(3)]
    zeros = [torch.zeros(n, dtype=torch.float64) for _, n in problems]
    op = block_hessian_vector_product([f for f, _ in problems], zeros)
    assert op.sizes == [n for _, n in problems]
    v = {i: torch.randn(n, dtype=torch.float64) for i, (_, n) in enumerate(problems)}
    both = op({0: v[0], 2: v[2]})
    assert sorted(both) == [0, 2] and op.calls == 1
    for i in (0, 2):
        f, n = problems[i]
        single = hessian_vector_product(f, zeros[i])
        torch.testing.assert_close(both[i], single(v[i]), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(op.gradients[i], single.gradient)
    assert op({}) == {} and op.calls == 1


def test_lockstep_derivatives_equal_per_position_and_dense_truth():
    torch.manual_seed(2)
    m = GrowingLSTM(n_features=2, hidden_size=4, num_layers=3, n_outputs=1).double()
    X = torch.randn(12, 5, 2, dtype=torch.float64)
    y = torch.randn(12, 1, dtype=torch.float64)
    kwargs = {"max_hvp": 300, "tol": 1e-10}
    lockstep, loss = topological_derivatives(m, X, y, masked_mse, lockstep=True, **kwargs)
    looped, loss_2 = topological_derivatives(m, X, y, masked_mse, lockstep=False, **kwargs)
    assert loss == loss_2
    hidden, adjoints, _ = layer_outputs_and_adjoints(m, X, y, masked_mse)
    n = lstm_parameter_count(4)
    for d, e, h, a in zip(lockstep, looped, hidden, adjoints, strict=True):
        assert d.position == e.position and d.n_hvp == e.n_hvp
        assert d.derivative == pytest.approx(e.derivative, rel=1e-6)
        assert abs(d.direction @ e.direction) == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(d.gradient, e.gradient, rtol=1e-12)
        dense = _dense_hessian(lambda t, h=h, a=a: hamiltonian(t, h, a), n)
        assert d.derivative == pytest.approx(np.linalg.eigvalsh(dense)[-1], rel=1e-6)
    # The decision counts backward passes: one per lockstep step, one per product in turn.
    steps = grow(copy.deepcopy(m), X, y, masked_mse, threshold=1e300, max_layers=5,
                 lockstep=True, **kwargs)
    turns = grow(copy.deepcopy(m), X, y, masked_mse, threshold=1e300, max_layers=5,
                 lockstep=False, **kwargs)
    assert steps.n_hvp == max(d.n_hvp for d in lockstep)
    assert turns.n_hvp == sum(d.n_hvp for d in looped)
    np.testing.assert_allclose(steps.derivatives, turns.derivatives, rtol=1e-6)


def test_a_looser_tolerance_needs_fewer_products_and_still_ranks_positions():
    m, X, y = _tiny_network(seed=1, layers=3)
    tight, _ = topological_derivatives(m, X, y, masked_mse, max_hvp=200, tol=1e-10)
    loose, _ = topological_derivatives(m, X, y, masked_mse, max_hvp=200, tol=1e-3)
    assert sum(d.n_hvp for d in loose) < sum(d.n_hvp for d in tight)
    for a, b in zip(loose, tight, strict=True):
        assert a.derivative == pytest.approx(b.derivative, rel=1e-3)
    assert np.argmax([d.derivative for d in loose]) == np.argmax([d.derivative for d in tight])


# ---------------------------------------------------------------- difference products
def _reflection(hidden):
    """The diagonal S that flips the candidate block's input weights and biases and the
    gates' recurrent weights: it flips the sign of the layer's output."""
    s = torch.ones(lstm_parameter_count(hidden), dtype=torch.float64)
    blocks = unflatten_lstm_parameters(s, hidden)
    candidate, gates = slice(2 * hidden, 3 * hidden), [slice(0, 2 * hidden),
                                                       slice(3 * hidden, 4 * hidden)]
    for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
        blocks[name][candidate] = -1
    for rows in gates:
        blocks["weight_hh_l0"][rows] = -1
    return s


def test_hamiltonian_is_odd_under_the_reflection_but_not_under_negation():
    f, n = _problem(hidden=3, seed=4)
    s = _reflection(3)
    theta = 0.7 * torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert f(s * theta).item() == pytest.approx(-f(theta).item(), rel=1e-12)
    # Not odd in theta itself: the even-order terms a central difference misses are there.
    assert abs(f(-theta).item() + f(theta).item()) > 1e-2 * abs(f(theta).item())
    # Hence S A S = -A: the spectrum is symmetric about zero.
    dense = _dense_hessian(f, n)
    np.testing.assert_allclose(np.diag(s) @ dense @ np.diag(s), -dense, atol=1e-12)


def test_difference_products_match_dense_truth_to_second_order_in_the_step():
    f, n = _problem(hidden=3, seed=5)
    dense = _dense_hessian(f, n)
    zero = torch.zeros(n, dtype=torch.float64)
    v = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    truth = dense @ v.numpy()
    errors = []
    for step in (4e-3, 2e-3, 1e-3):
        op = block_hessian_vector_product([f], [zero], products="difference", step=step)
        errors.append(np.linalg.norm(op({0: v})[0].numpy() - truth) / np.linalg.norm(truth))
    # Halving the step quarters the error: a central difference, no first-order term.
    assert errors[0] < 1e-4
    np.testing.assert_allclose(np.array(errors[:-1]) / np.array(errors[1:]), 4.0, rtol=0.05)
    op = block_hessian_vector_product([f], [zero], products="difference")
    assert op.step == difference_step(torch.float64)
    # The step applies to the unit direction: the product is linear in the vector's length.
    long, short = op({0: 1e3 * v})[0].numpy(), 1e3 * op({0: v})[0].numpy()
    assert np.linalg.norm(long - short) < 1e-9 * np.linalg.norm(short)
    assert not op({0: torch.zeros(n, dtype=torch.float64)})[0].any()
    # Its gradient is the exact one, computed once when it is built.
    exact = block_hessian_vector_product([f], [zero])
    np.testing.assert_allclose(op.gradients[0], exact.gradients[0], rtol=1e-12)
    with pytest.raises(ValueError, match="products"):
        block_hessian_vector_product([f], [zero], products="forward")


# ---------------------------------------------------------------- expansion products
@pytest.mark.parametrize(("hidden", "steps", "seed"), [(1, 1, 0), (3, 6, 1), (4, 9, 2)])
def test_expansion_has_the_hamiltonians_gradient_and_hessian_at_zero(hidden, steps, seed):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(4, steps, hidden, generator=g, dtype=torch.float64)
    a = torch.randn(4, steps, hidden, generator=g, dtype=torch.float64)
    f = lambda theta: hamiltonian(theta, h, a)  # noqa: E731
    expansion = hamiltonian_expansion(h, a)
    n = lstm_parameter_count(hidden)
    zero = torch.zeros(n, dtype=torch.float64)
    assert expansion(zero).item() == 0.0 == f(zero).item()
    gradient = torch.autograd.functional.jacobian(f, zero).numpy()
    np.testing.assert_allclose(torch.autograd.functional.jacobian(expansion, zero).numpy(),
                               gradient, atol=1e-12 * np.abs(gradient).max())
    dense = _dense_hessian(f, n)
    np.testing.assert_allclose(_dense_hessian(expansion, n), dense,
                               atol=1e-12 * np.abs(dense).max())
    # A quadratic polynomial: away from 0 it leaves the Hamiltonian at third order.
    v = torch.randn(n, generator=g, dtype=torch.float64)
    gaps = [abs(f(eps * v).item() - expansion(eps * v).item()) for eps in (0.04, 0.02)]
    assert gaps[0] / gaps[1] > 6.0


def test_expansion_counts_subnormal_adjoints_as_zero_without_moving_the_hessian():
    # The first steps' adjoints of a long window underflow; the moments must not slow
    # down on them, nor change beyond rounding.
    from sktlag.growth import _without_subnormals

    g = torch.Generator().manual_seed(3)
    h = torch.randn(3, 8, 2, generator=g)
    a = torch.randn(3, 8, 2, generator=g)
    a[:, :4] *= 1e-40  # subnormal in float32
    cleaned = _without_subnormals(a)
    assert not cleaned[:, :4].any() and torch.equal(cleaned[:, 4:], a[:, 4:])
    n = lstm_parameter_count(2)
    dense = _dense_hessian(lambda t: hamiltonian(t, h.double(), a.double()), n)
    expansion = hamiltonian_expansion(h, a)
    np.testing.assert_allclose(_dense_hessian(lambda t: expansion(t.float()).double(), n),
                               dense, atol=1e-6 * np.abs(dense).max())


def test_expansion_products_are_the_exact_products_of_a_trained_float32_network(
    trained_float32, one_thread
):
    module, X, y = trained_float32
    hidden, adjoints, _ = layer_outputs_and_adjoints(module, X, y, masked_mse)
    zero = torch.zeros(lstm_parameter_count(8))
    rng = np.random.default_rng(1)
    for h, a in zip(hidden, adjoints, strict=True):
        exact = block_hessian_vector_product([lambda t, h=h, a=a: hamiltonian(t, h, a)], [zero])
        expansion = block_hessian_vector_product([hamiltonian_expansion(h, a)], [zero])
        np.testing.assert_allclose(expansion.gradients[0], exact.gradients[0], rtol=1e-4,
                                   atol=1e-5 * float(exact.gradients[0].abs().max()))
        for v in (torch.from_numpy(rng.standard_normal(zero.numel())) for _ in range(3)):
            truth = exact({0: v})[0].double()
            error = expansion({0: v})[0].double() - truth
            assert float(error.norm() / truth.norm()) < 1e-4
    # Through the whole decision: the same derivatives as exact products, in as many steps.
    found, loss = topological_derivatives(module, X, y, masked_mse, tol=1e-6)
    fast, fast_loss = topological_derivatives(module, X, y, masked_mse, tol=1e-6,
                                              hessian_products="expansion")
    assert fast_loss == loss
    for a, b in zip(fast, found, strict=True):
        assert a.relative == pytest.approx(b.relative, rel=1e-4)
        assert abs(a.direction @ b.direction) > 0.9999
    gains = [holdout_gains(module, [(X, y)], masked_mse, [d.direction for d in found],
                           hessian_products=kind) for kind in ("exact", "expansion")]
    np.testing.assert_allclose(gains[1], gains[0], rtol=1e-4)


@pytest.fixture
def one_thread():
    # Small matrices gain nothing from more threads and lose much on a busy machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained_float32():
    """A float32 network fitted for a few epochs, and a sample of its windows."""
    X, y = make_series(n_rows=400, seed=3)
    params = {**FAST, "hidden_size": 8, "lookback": 12, "max_epochs": 6,
              "initial_num_layers": 2, "max_layers": 2}
    est = TLAGRegressor(**params, topo_derivative_threshold=np.inf, random_state=0).fit(X, y)
    ends = np.arange(11, 400, 6)
    Xs = torch.from_numpy(np.stack([X[e - 11: e + 1] for e in ends])).float()
    ys = torch.from_numpy(((y[ends] - y.mean()) / y.std())[:, None]).float()
    return est.module_, Xs, ys


def test_difference_products_agree_with_exact_ones_on_a_trained_float32_network(
    trained_float32, one_thread
):
    module, X, y = trained_float32
    hidden, adjoints, _ = layer_outputs_and_adjoints(module, X, y, masked_mse)
    functions = [lambda t, h=h, a=a: hamiltonian(t, h, a) for h, a in zip(hidden, adjoints,
                                                                          strict=True)]
    zeros = [torch.zeros(lstm_parameter_count(8)) for _ in functions]
    exact = block_hessian_vector_product(functions, zeros)
    difference = block_hessian_vector_product(functions, zeros, products="difference")
    found, loss = topological_derivatives(module, X, y, masked_mse, tol=1e-6)
    rng = np.random.default_rng(0)
    for i, d in enumerate(found):
        # The spectrum is symmetric, so the top eigenvalue is the operator's norm: errors
        # relative to it are what moves the eigenvalues.
        vectors = [rng.standard_normal(d.direction.shape) for _ in range(5)] + [d.direction]
        for v in map(torch.from_numpy, vectors):
            error = difference({i: v})[i].double() - exact({i: v})[i].double()
            assert float(error.norm() / v.norm()) < 1e-3 * d.derivative
    fd, fd_loss = topological_derivatives(module, X, y, masked_mse, tol=1e-6,
                                          hessian_products="difference")
    assert fd_loss == loss
    for a, b in zip(fd, found, strict=True):
        assert a.derivative == pytest.approx(b.derivative, rel=1e-3)
        assert a.relative == pytest.approx(b.relative, rel=1e-3)
        assert abs(a.direction @ b.direction) > 0.999
        # The same first-order gradient (a graph kept for double backward rounds apart).
        assert np.linalg.norm(a.gradient - b.gradient) < 1e-5 * np.linalg.norm(b.gradient)
    # The held-out statistic's Rayleigh quotients too.
    gains = [holdout_gains(module, [(X, y)], masked_mse, [d.direction for d in found],
                           hessian_products=kind) for kind in ("exact", "difference")]
    np.testing.assert_allclose(gains[1], gains[0], rtol=1e-3)


def test_the_default_tolerance_decides_as_a_tight_solve(trained_float32, one_thread):
    # The estimator's default stops Lanczos early; the decision it feeds must not move:
    # the same position, relative derivatives within 1 %, nearly the same signed direction.
    module, X, y = trained_float32
    tol = TLAGRegressor().eigensolver_tol
    tight, _ = topological_derivatives(module, X, y, masked_mse, max_hvp=200, tol=1e-10)
    found, _ = topological_derivatives(module, X, y, masked_mse, tol=tol)
    assert sum(d.n_hvp for d in found) < sum(d.n_hvp for d in tight)
    for a, b in zip(found, tight, strict=True):
        assert a.relative == pytest.approx(b.relative, rel=1e-2)
    chosen = [max(f, key=lambda d: d.relative) for f in (found, tight)]
    assert chosen[0].position == chosen[1].position
    signed = [choose_sign(d.gradient, d.direction) * d.direction for d in chosen]
    assert float(signed[0] @ signed[1]) > 0.99


def test_both_products_insert_at_the_same_position_with_the_same_sign(trained_float32,
                                                                    one_thread):
    module, X, y = trained_float32
    decisions, layers = {}, {}
    for kind in ("exact", "difference", "expansion"):
        grown = copy.deepcopy(module)
        decisions[kind] = grow(grown, X, y, masked_mse, threshold=-np.inf, max_layers=3,
                               hessian_products=kind)
        assert decisions[kind].inserted and grown.num_layers == 3
        assert decisions[kind].hessian_products == kind
        layers[kind] = _inserted_parameters(grown, decisions[kind].position).double()
    exact = decisions["exact"]
    for kind in ("difference", "expansion"):
        other = decisions[kind]
        assert exact.position == other.position and exact.scale == other.scale
        # The inserted layer, sign included (an eigenvector's own sign is arbitrary).
        cos = layers["exact"] @ layers[kind] / exact.scale**2
        assert float(cos) > 0.999
        np.testing.assert_allclose(other.relative_derivatives, exact.relative_derivatives,
                                   rtol=1e-3)
    # "auto" is the expansion; an unknown kind is refused before any work.
    auto = grow(copy.deepcopy(module), X, y, masked_mse, threshold=np.inf, max_layers=3,
                hessian_products="auto")
    assert auto.hessian_products is None  # nothing computed at an infinite threshold
    auto = grow(copy.deepcopy(module), X, y, masked_mse, threshold=1e300, max_layers=3,
                hessian_products="auto")
    assert auto.hessian_products == "expansion"
    with pytest.raises(ValueError, match="hessian_products"):
        grow(copy.deepcopy(module), X, y, masked_mse, threshold=0.0, max_layers=3,
             hessian_products="forward")


def test_the_default_products_are_the_expansion_and_an_explicit_kind_holds():
    from sktlag.growth import HESSIAN_PRODUCTS, _resolve_products

    assert _resolve_products(TLAGRegressor().hessian_products) == "expansion"
    for kind in set(HESSIAN_PRODUCTS) - {"auto"}:
        assert _resolve_products(kind) == kind


# ---------------------------------------------------------------- end to end
def _loss(m, X, y):
    m.eval()
    with torch.no_grad():
        return float(masked_mse(m(X), y))


def _inserted_parameters(m, position):
    return torch.cat([p.detach().ravel() for p in m.layers[position].lstm.parameters()])


def _loss_with_layer(m, X, y, position, theta):
    grown = copy.deepcopy(m)
    grown.insert_layer(position, unflatten_lstm_parameters(torch.as_tensor(theta),
                                                           m.hidden_size))
    return _loss(grown, X, y)


def test_chosen_sign_lowers_the_measured_loss_to_first_order():
    m, X, y = _tiny_network(seed=3, layers=2)
    found, _ = topological_derivatives(m, X, y, masked_mse, max_hvp=40)
    rng = np.random.default_rng(0)
    eps = 1e-5
    signs = []
    for d in found:
        other = rng.standard_normal(d.direction.shape)
        # phi and -phi: a rule that ignores the gradient picks the wrong sign for one.
        for phi in (d.direction, -d.direction, other, -other):
            s = choose_sign(d.gradient, phi)
            signs.append(s)
            # Central difference of forward-pass losses along s * phi: the slope of the
            # loss, independent of the formula; the second-order term cancels.
            slope = (_loss_with_layer(m, X, y, d.position, eps * s * phi)
                     - _loss_with_layer(m, X, y, d.position, -eps * s * phi)) / (2 * eps)
            assert slope < 0, (d.position, s)
            # ... and its size is the first-order term |grad H(0) . phi|.
            assert slope == pytest.approx(-abs(d.gradient @ phi), rel=1e-4)
    assert set(signs) == {-1.0, 1.0}
    # No first-order term: either sign will do, the convention is +1.
    assert choose_sign(np.zeros(3), np.ones(3)) == 1.0


@pytest.mark.parametrize("eps", [1e-3, 1e-4])
def test_inserted_layer_lowers_the_loss_as_the_first_order_term_predicts(eps):
    torch.manual_seed(0)
    m = GrowingLSTM(n_features=2, hidden_size=4, num_layers=3, n_outputs=1).double()
    X = torch.randn(16, 5, 2, dtype=torch.float64)
    y = torch.randn(16, 1, dtype=torch.float64)
    base = _loss(m, X, y)
    found, _ = topological_derivatives(m, X, y, masked_mse, max_hvp=40)
    best = max(found, key=lambda d: d.relative)
    # Accept the first scale tried, eps, whatever it does (tolerance 1 = twice the loss).
    grown = copy.deepcopy(m)
    decision = grow(grown, X, y, masked_mse, threshold=-np.inf, max_layers=5, max_hvp=40,
                    init_scale=eps, min_scale=eps, tolerance=1.0)
    assert decision.inserted and decision.position == best.position and decision.scale == eps
    theta = _inserted_parameters(grown, best.position).numpy()
    np.testing.assert_allclose(theta, eps * decision.sign * best.direction, rtol=1e-12)
    # Measured by forward passes, not by the formula.
    change = _loss(grown, X, y) - base
    first_order = -eps * abs(best.first_order)
    predicted = first_order - eps**2 / 2 * best.derivative
    assert abs(best.first_order) > 1e-2  # the first-order term is what is tested
    assert change < 0
    assert change == pytest.approx(first_order, rel=0.02)
    assert change == pytest.approx(predicted, rel=0.02)
    # The sign matters: the opposite direction raises the loss.
    flipped = copy.deepcopy(m)
    flipped.insert_layer(
        best.position,
        unflatten_lstm_parameters(torch.as_tensor(-eps * decision.sign * best.direction), 4),
    )
    assert _loss(flipped, X, y) - base == pytest.approx(-first_order, rel=0.02)


def _backtracking_problem():
    # A network whose best direction lowers the loss only at small scales: scale 1 is
    # refused and backtracking has to search (see the first test below).
    torch.manual_seed(2)
    m = GrowingLSTM(n_features=2, hidden_size=4, num_layers=3, n_outputs=1).double()
    X = torch.randn(16, 5, 2, dtype=torch.float64)
    y = torch.randn(16, 1, dtype=torch.float64)
    return m, X, y


def test_backtracking_inserts_the_largest_halved_scale_that_keeps_the_loss():
    m, X, y = _backtracking_problem()
    base = _loss(m, X, y)
    found, _ = topological_derivatives(m, X, y, masked_mse, max_hvp=40)
    grown = copy.deepcopy(m)
    decision = grow(grown, X, y, masked_mse, threshold=-np.inf, max_layers=5, max_hvp=40,
                    init_scale=1.0, min_scale=1e-3, tolerance=0.0)
    assert decision.inserted and grown.num_layers == 4
    phi = found[decision.position - 1].direction
    # The descent sign of phi, from the slope of forward-pass losses (not choose_sign).
    eps = 1e-5
    slope = (_loss_with_layer(m, X, y, decision.position, eps * phi)
             - _loss_with_layer(m, X, y, decision.position, -eps * phi)) / (2 * eps)
    descent = -np.sign(slope)
    assert descent != 0

    # A non-zero scale from the halving sequence 1, 1/2, 1/4, ..., after refusals.
    assert 0 < decision.scale < 1.0
    assert decision.scale == 0.5 ** (decision.backtracking_steps - 1)
    theta = _inserted_parameters(grown, decision.position).numpy()
    np.testing.assert_allclose(theta, decision.scale * descent * phi, rtol=1e-12)

    # The accepted scale keeps the loss at or below the base, measured by forward passes;
    # every larger scale of the sequence (its double first) raises it.
    def loss_at(scale):
        return _loss_with_layer(m, X, y, decision.position, scale * descent * phi)

    assert loss_at(decision.scale) <= base
    for step in range(decision.backtracking_steps - 1):
        assert loss_at(0.5**step) > base, 0.5**step
    assert decision.loss_before == pytest.approx(base, rel=1e-12)
    after = _loss(grown, X, y)
    assert after == pytest.approx(decision.loss_after, rel=1e-12) and after < base


def test_backtracking_refuses_a_direction_that_raises_the_loss(monkeypatch):
    from sktlag import growth

    m, X, y = _backtracking_problem()
    base = _loss(m, X, y)
    # Small scales, where the first-order term decides: the descent direction is taken
    # at once, the opposite one at no scale down to the smallest.
    kwargs = dict(threshold=-np.inf, max_layers=5, max_hvp=40, init_scale=1e-2,
                  min_scale=1e-4, tolerance=0.0)
    good = copy.deepcopy(m)
    decision = grow(good, X, y, masked_mse, **kwargs)
    assert decision.scale == 1e-2 and decision.backtracking_steps == 1
    assert _loss(good, X, y) < base

    right_sign = growth.choose_sign
    monkeypatch.setattr(growth, "choose_sign", lambda g, phi: -right_sign(g, phi))
    bad = copy.deepcopy(m)
    decision = grow(bad, X, y, masked_mse, **kwargs)
    # 1e-2, 5e-3, ..., 1e-2 / 64 >= 1e-4: seven scales tried, all refused.
    assert decision.inserted and decision.scale == 0.0
    assert decision.backtracking_steps == 7
    assert not _inserted_parameters(bad, decision.position).any()
    assert decision.loss_after == decision.loss_before
    assert _loss(bad, X, y) == base  # a zero residual layer changes nothing


def test_an_insertion_undone_leaves_no_layer_and_the_random_streams_as_they_were(
        monkeypatch):
    # A failure while backtracking (e.g. out of memory) removes the layer; the draws of
    # its initial weights stayed taken, so training went on with other dropout masks and
    # batch orders than a decision that inserts nothing promises.
    from sktlag import growth

    m, X, y = _backtracking_problem()

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(growth, "_sample_loss", out_of_memory)
    before = torch.random.get_rng_state()
    with pytest.raises(RuntimeError, match="out of memory"):
        grow(m, X, y, masked_mse, threshold=-np.inf, max_layers=5, max_hvp=40)
    assert m.num_layers == 3
    assert torch.equal(torch.random.get_rng_state(), before)


# ---------------------------------------------------------------- held-out statistic
def _held_out_blocks(n_blocks=4, seed=5):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(6, 5, 2, generator=g, dtype=torch.float64),
             torch.randn(6, 1, generator=g, dtype=torch.float64)) for _ in range(n_blocks)]


def test_holdout_gains_are_the_dense_rayleigh_quotients_of_each_block():
    m, X, y = _tiny_network(layers=2)
    found, _ = topological_derivatives(m, X, y, masked_mse, max_hvp=200)
    blocks = _held_out_blocks()
    gains = holdout_gains(m, blocks, masked_mse, [d.direction for d in found])
    assert gains.shape == (4, 2)
    n = lstm_parameter_count(3)
    for k, (Xk, yk) in enumerate(blocks):
        hidden, adjoints, _ = layer_outputs_and_adjoints(m, Xk, yk, masked_mse)
        for position, (h, a) in enumerate(zip(hidden, adjoints, strict=True)):
            dense = _dense_hessian(lambda t, h=h, a=a: hamiltonian(t, h, a), n)
            phi = found[position].direction
            assert gains[k, position] == pytest.approx(phi @ dense @ phi, rel=1e-8, abs=1e-14)
    # On the windows that chose it, a direction's quotient is its eigenvalue.
    on_sample = holdout_gains(m, [(X, y)], masked_mse, [d.direction for d in found])
    np.testing.assert_allclose(on_sample[0], [d.derivative for d in found], rtol=1e-6)


def test_a_held_out_decision_counts_the_passes_of_its_blocks():
    kwargs = dict(threshold=1e9, max_layers=5, max_hvp=20)  # decide, never insert
    m, X, y = _tiny_network(layers=2)
    plain = grow(m, X, y, masked_mse, **kwargs)
    held_out = grow(m, X, y, masked_mse, criterion="holdout", holdout=_held_out_blocks(4),
                    **kwargs)
    assert len(held_out.holdout_statistics) == 2 and not held_out.inserted
    assert held_out.n_hvp == plain.n_hvp + 4


def test_holdout_gains_skip_a_failed_direction():
    m, X, y = _tiny_network(layers=2)
    found, _ = topological_derivatives(m, X, y, masked_mse, max_hvp=50)
    directions = [np.zeros_like(found[0].direction), found[1].direction]
    gains = holdout_gains(m, _held_out_blocks(2), masked_mse, directions)
    assert np.isnan(gains[:, 0]).all() and np.isfinite(gains[:, 1]).all()
    with pytest.raises(ValueError, match="3 directions for a network of 2 layers"):
        holdout_gains(m, _held_out_blocks(2), masked_mse, [*directions, directions[1]])


def test_holdout_statistic_is_the_mean_over_its_standard_error():
    gains = np.array([[1.0, -1.0, 2.0, 0.0, 1.0],
                      [2.0, -1.0, 2.0, 0.0, np.nan],
                      [3.0, -1.0, 2.0, 0.0, 1.0]])
    t = holdout_statistic(gains)
    # mean 2, sample std 1 over 3 blocks: 2 / (1 / sqrt 3)
    assert t[0] == pytest.approx(2 * np.sqrt(3))
    assert t[1] == -np.inf and t[2] == np.inf and t[3] == 0.0 and np.isnan(t[4])
    assert np.isnan(holdout_statistic(np.ones((1, 2)))).all()
    # Scale-free: the same statistic for gains 1000 times larger.
    assert holdout_statistic(1000 * gains[:, :1])[0] == pytest.approx(t[0])


def test_holdout_blocks_are_evenly_spread_over_consecutive_stretches():
    blocks = holdout_blocks(100, 24, n_blocks=4)
    assert [len(b) for b in blocks] == [6, 6, 6, 6]
    flat = np.concatenate(blocks)
    assert (np.diff(flat) > 0).all() and flat[0] == 0 and flat[-1] == 99
    for k, block in enumerate(blocks):
        assert 25 * k <= block.min() and block.max() < 25 * (k + 1)
    # Fewer windows than asked for: every window once, never more blocks than windows.
    few = holdout_blocks(3, 128)
    assert [b.tolist() for b in few] == [[0], [1], [2]]
    # At least one window per block.
    assert [len(b) for b in holdout_blocks(40, 4)] == [1] * 8
