"""Device handling: CPU-checkable parts always run, the CUDA path only where a GPU exists."""

import copy
import io
import pickle

import joblib
import numpy as np
import pytest
import torch
from skorch.exceptions import DeviceWarning

from sktlag import GrowingLSTM, TLAGRegressor
from sktlag.growth import hessian_vector_product, topological_derivatives
from sktlag.losses import masked_mse


def test_hvp_moves_solver_vectors_to_the_device_of_the_graph():
    # The eigen-solvers pass CPU float64 vectors. A graph on another device (here the
    # meta device, which stands in for a GPU on a CPU-only machine) must receive them
    # on its own device and dtype, or autograd rejects the product.
    op = hessian_vector_product(lambda x: (x**3).sum(), torch.ones(4, device="meta"))
    hv = op(torch.ones(4, dtype=torch.float64))
    assert hv.device.type == "meta"
    assert hv.dtype == torch.float32 and hv.shape == (4,)
    assert op.calls == 1


class _TensorSpy(pickle.Pickler):
    """A pickler that records every tensor pickled the ordinary way.

    skorch pickles the net's module, optimizer and criterion in a nested block whose
    unpickling maps tensors to an available device; those tensors are not seen here.
    Any tensor seen here would be restored on the device it was saved from.
    """

    def __init__(self, file):
        super().__init__(file)
        self.tensors = []

    def reducer_override(self, obj):
        if isinstance(obj, torch.Tensor):
            self.tensors.append(tuple(obj.shape))
        return NotImplemented


def test_fitted_pickle_keeps_tensors_where_skorch_maps_devices(series, fast_params):
    X, y = series
    est = TLAGRegressor(**fast_params, topo_derivative_threshold=-np.inf, random_state=0)
    est.fit(X, y)
    spy = _TensorSpy(io.BytesIO())
    spy.dump(est)
    assert spy.tensors == []
    loaded = pickle.loads(pickle.dumps(est))
    assert loaded.module_ is loaded.net_.module_
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a machine without CUDA")
def test_a_model_saved_for_cuda_loads_on_a_cpu_only_machine(tmp_path, series, fast_params):
    # The net of a CUDA-trained model says device="cuda"; on a machine without CUDA,
    # loading falls back to the CPU with a warning, and predict works there.
    X, y = series
    est = TLAGRegressor(**fast_params, random_state=0).fit(X, y)
    expected = est.predict(X)
    est.net_.device = "cuda"
    joblib.dump(est, tmp_path / "model.joblib")
    with pytest.warns(DeviceWarning) as caught:
        loaded = joblib.load(tmp_path / "model.joblib")
    assert any("no CUDA devices" in str(w.message) for w in caught)
    assert torch.device(loaded.net_.device).type == "cpu"
    assert next(loaded.module_.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(loaded.predict(X), expected)


# ---------------------------------------------------------------- CUDA (skipped without)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_fit_with_growth_predict_and_reload_on_cuda(tmp_path, series, fast_params):
    X, y = series
    params = {**fast_params, "max_epochs": 12}
    est = TLAGRegressor(**params, topo_derivative_threshold=-np.inf, device="cuda",
                        random_state=0).fit(X, y)
    decisions = est.derivative_history_
    # The growth step ran: Hessian-vector products with cuDNN off, then an insertion.
    assert decisions["inserted"].any()
    assert not decisions["reason"].str.startswith("not computable").any()
    assert max(est.history_[:, "n_layers"]) >= 2
    assert torch.backends.cudnn.enabled  # switched off only inside the growth step
    assert all(p.device.type == "cuda" for p in est.module_.parameters())
    pred = est.predict(X)
    assert pred.shape == y.shape and np.isfinite(pred).all()

    joblib.dump(est, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    assert next(loaded.module_.parameters()).device.type == "cuda"
    np.testing.assert_allclose(loaded.predict(X), pred, rtol=1e-6, atol=1e-6)

    # Moving the fitted network to the CPU: predict follows the module's device.
    loaded.module_.to("cpu")
    loaded.set_params(device="cpu")
    np.testing.assert_allclose(loaded.predict(X), pred, rtol=1e-3, atol=1e-4)


@needs_cuda
def test_topological_derivatives_agree_between_cpu_and_cuda():
    torch.manual_seed(0)
    module = GrowingLSTM(n_features=3, hidden_size=8, num_layers=2).double()
    X = torch.randn(16, 6, 3, dtype=torch.float64)
    y = torch.randn(16, 1, dtype=torch.float64)
    # A tight tolerance: both devices converge, whatever rounding does to the last step.
    on_cpu, loss_cpu = topological_derivatives(module, X, y, masked_mse, max_hvp=40, tol=1e-6)
    on_gpu, loss_gpu = topological_derivatives(
        copy.deepcopy(module).cuda(), X.cuda(), y.cuda(), masked_mse, max_hvp=40, tol=1e-6
    )
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-9)
    np.testing.assert_allclose(
        [d.derivative for d in on_gpu], [d.derivative for d in on_cpu], rtol=1e-6, atol=1e-9
    )
    assert torch.backends.cudnn.enabled


@needs_cuda
def test_difference_products_run_on_cudnn_and_agree_with_exact_ones(monkeypatch):
    import sktlag.growth as growth

    # Whether cuDNN was on each time the virtual layer ran.
    cudnn_on = {"exact": [], "difference": []}
    kind = "exact"
    original = growth.hamiltonian

    def spy(theta, h, a):
        cudnn_on[kind].append(torch.backends.cudnn.enabled)
        return original(theta, h, a)

    monkeypatch.setattr(growth, "hamiltonian", spy)
    torch.manual_seed(0)
    module = GrowingLSTM(n_features=3, hidden_size=16, num_layers=2).cuda()
    X, y = torch.randn(64, 20, 3, device="cuda"), torch.randn(64, 1, device="cuda")
    found = {}
    for kind in ("exact", "difference"):
        found[kind], _ = topological_derivatives(module, X, y, masked_mse, tol=1e-6,
                                                 hessian_products=kind)
    assert cudnn_on["exact"] and not any(cudnn_on["exact"])
    assert cudnn_on["difference"] and all(cudnn_on["difference"])
    for a, b in zip(found["difference"], found["exact"], strict=True):
        assert a.derivative == pytest.approx(b.derivative, rel=1e-3)
        assert abs(a.direction @ b.direction) > 0.999
    # The expansion runs no virtual layer at all, and agrees to rounding.
    calls = len(cudnn_on["difference"])
    expansion, _ = topological_derivatives(module, X, y, masked_mse, tol=1e-6,
                                           hessian_products="expansion")
    assert len(cudnn_on["difference"]) == calls
    for a, b in zip(expansion, found["exact"], strict=True):
        assert a.derivative == pytest.approx(b.derivative, rel=1e-4)
        assert abs(a.direction @ b.direction) > 0.9999
    assert torch.backends.cudnn.enabled


@pytest.mark.parametrize("products", ["exact", "difference", "expansion"])
def test_decision_backend_settings_on_cuda_keep_the_callers_flags(products):
    # Checkable without a GPU: the settings are process flags, the device only a name.
    from sktlag.growth import _growth_backends

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.enabled, cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32 = True, True, True
    try:
        with _growth_backends(torch.device("cuda"), products):
            # Exact products need the native kernels' double backward; difference
            # products run on cuDNN, in float32: TF32's rounding, divided by the small
            # step, would swamp the products (and it would round the expansion's sums).
            assert cudnn.enabled == (products != "exact")
            assert cudnn.deterministic
            if products != "exact":
                assert not cudnn.allow_tf32 and not matmul.allow_tf32
        assert cudnn.enabled and cudnn.deterministic
        assert cudnn.allow_tf32 and matmul.allow_tf32
        with _growth_backends(torch.device("cpu"), products):
            assert cudnn.allow_tf32 and matmul.allow_tf32
    finally:
        cudnn.enabled, cudnn.deterministic = before[0], before[1]
        cudnn.allow_tf32, matmul.allow_tf32 = before[2], before[3]
