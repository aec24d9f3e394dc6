"""Same random_state, same predictions: in another process and in parallel searches."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
from skorch.callbacks import Callback

from sktlag import TLAGRegressor

from .conftest import make_series

ROOT = Path(__file__).resolve().parents[1]

# hidden_size 16 and batches of 64 are large enough for the thread count to change the
# rounding of the matrix products: with n_threads=None (torch's default thread count in
# the main process, one thread in each of two joblib workers on a 2-core machine) the
# two searches below differ by about 1e-9 in their test scores, so one thread is pinned.
# Each fit takes a fraction of a second.
PARAMS = dict(
    hidden_size=16,
    lookback=5,
    max_epochs=3,
    max_epochs_per_layer=2,
    patience=1,
    moving_avg_window=1,
    batch_size=64,
    derivative_samples=32,
    num_power_iterations=8,
    max_layers=3,
    lr=1e-2,
    topo_derivative_threshold=-np.inf,
    n_threads=1,
)


def test_same_random_state_same_predictions_in_another_process(tmp_path):
    X, y = make_series(n_rows=160)
    est = TLAGRegressor(**PARAMS, random_state=7).fit(X, y)
    assert est.derivative_history_["inserted"].any()  # growth is part of what must repeat
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    script = textwrap.dedent(
        f"""
        import numpy as np
        from sktlag import TLAGRegressor
        inf = float("inf")
        X = np.load({str(tmp_path / "X.npy")!r})
        y = np.load({str(tmp_path / "y.npy")!r})
        est = TLAGRegressor(**{PARAMS!r}, random_state=7).fit(X, y)
        np.save({str(tmp_path / "pred.npy")!r}, est.predict(X))
        est.derivative_history_.to_pickle({str(tmp_path / "decisions.pkl")!r})
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "pred.npy"), est.predict(X))
    other = pd.read_pickle(tmp_path / "decisions.pkl")
    pd.testing.assert_frame_equal(
        other.drop(columns="seconds"), est.derivative_history_.drop(columns="seconds")
    )


def test_grid_search_gives_identical_results_with_one_or_two_jobs():
    X, y = make_series(n_rows=160)
    results = {}
    for n_jobs in (1, 2):
        search = GridSearchCV(
            TLAGRegressor(**PARAMS, random_state=0),
            {"lr": [5e-3, 1e-2]},
            cv=TimeSeriesSplit(n_splits=2),
            n_jobs=n_jobs,
            refit=False,
        ).fit(X, y)
        results[n_jobs] = search.cv_results_
    for key in ("split0_test_score", "split1_test_score", "mean_test_score"):
        np.testing.assert_array_equal(results[1][key], results[2][key])
    assert np.isfinite(results[1]["mean_test_score"]).all()


class ThreadProbe(Callback):
    """Records torch's thread count while the training loop runs."""

    def __init__(self):
        self.seen = []

    def on_epoch_begin(self, net, **kwargs):
        self.seen.append(torch.get_num_threads())

    def on_epoch_end(self, net, **kwargs):
        # After the growth callbacks, i.e. after any growth decision of the epoch.
        self.seen.append(torch.get_num_threads())


def test_fit_and_predict_run_on_n_threads_and_restore_the_count():
    X, y = make_series(n_rows=160)
    original = torch.get_num_threads()
    # A count that no n_threads below asks for: a fit that ignored n_threads, or one
    # that did not put the count back, is seen either way.
    outer = 3
    torch.set_num_threads(outer)
    try:
        for n_threads, expected in [(1, 1), (2, 2), (None, outer)]:
            probe = ThreadProbe()
            est = TLAGRegressor(**{**PARAMS, "max_epochs": 2, "n_threads": n_threads},
                                callbacks=[("probe", probe)], random_state=0)
            est.fit(X, y)
            assert len(probe.seen) == 4 and set(probe.seen) == {expected}, n_threads
            assert est.n_threads_ == expected
            assert torch.get_num_threads() == outer
            in_predict = []
            hook = est.net_.module_.register_forward_hook(
                lambda *_, seen=in_predict: seen.append(torch.get_num_threads()))
            try:
                est.predict(X)
            finally:
                hook.remove()
            assert in_predict and set(in_predict) == {expected}, n_threads
            assert torch.get_num_threads() == outer
    finally:
        torch.set_num_threads(original)


def test_the_default_thread_count_is_the_one_a_parallel_worker_was_given():
    # joblib starts its process workers with their share of the cores; the default
    # must take that share, not pin its own count.
    from joblib import Parallel, cpu_count, delayed

    def fitted_threads():
        X, y = make_series(n_rows=120)
        params = {k: v for k, v in PARAMS.items() if k != "n_threads"}
        return TLAGRegressor(**{**params, "max_epochs": 1}, random_state=0).fit(X, y).n_threads_

    assert TLAGRegressor().n_threads is None
    share = int(os.environ.get("OMP_NUM_THREADS", max(cpu_count() // 2, 1)))
    assert Parallel(n_jobs=2)(delayed(fitted_threads)() for _ in range(2)) == [share] * 2
    assert fitted_threads() == torch.get_num_threads()


def test_warm_start_and_clone_repeat_exactly():
    X, y = make_series(n_rows=160)

    def two_stage(est):
        est.fit(X, y)
        est.set_params(warm_start=True, max_epochs=2)
        return est.fit(X, y).predict(X)

    est = TLAGRegressor(**PARAMS, random_state=3)
    copy = clone(est)
    np.testing.assert_array_equal(two_stage(est), two_stage(copy))


def test_fit_leaves_the_callers_torch_random_state_as_it_was():
    # scikit-learn's random_state contract: an estimator draws from its own generator and
    # leaves the global one alone; after a fit the caller's torch draws go on as before.
    X, y = make_series(n_rows=120)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    TLAGRegressor(**PARAMS, random_state=0).fit(X, y)
    assert torch.equal(torch.rand(3), expected)


def test_an_accelerators_generator_is_seeded_and_put_back(monkeypatch):
    # Apple's mps (or another accelerator) has a generator of its own beside the CPU's:
    # seeded for the fit, restored after it. A stand-in module records the calls.
    from sktlag._training import seeded

    calls = []

    class Generator:
        def get_rng_state(self):
            calls.append("get")
            return "caller's state"

        def manual_seed(self, seed):
            calls.append(("seed", seed))

        def set_rng_state(self, state):
            calls.append(("set", state))

    monkeypatch.setattr(torch, "get_device_module", lambda kind: Generator())
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    with seeded(7, "xpu"):
        calls.append("block")
    assert calls == ["get", ("seed", 7), "block", ("set", "caller's state")]
    assert torch.equal(torch.rand(2), expected)
