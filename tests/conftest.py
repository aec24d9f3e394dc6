"""Shared fixtures: small synthetic series and fast estimator settings."""

import numpy as np
import pytest

# Tiny network, few epochs: every fit in the suite takes a second or two.
FAST = dict(
    hidden_size=6,
    lookback=5,
    max_epochs=8,
    max_epochs_per_layer=3,
    patience=2,
    moving_avg_window=2,
    batch_size=32,
    derivative_samples=32,
    num_power_iterations=12,
    max_layers=3,
    lr=1e-2,
    # Growth runs its course here (the tests exercise growing networks); the validation
    # rule that ends growth early has tests of its own.
    min_improvement=-float("inf"),
    # One torch thread: small matrices gain nothing from more, and a fixed count keeps
    # results bit-identical across processes (the estimator's default leaves torch's).
    n_threads=1,
)


def make_series(n_rows=240, n_features=3, n_outputs=1, seed=0):
    """A rainfall-runoff-like toy series: y is a smoothed, lagged response to X."""
    rng = np.random.default_rng(seed)
    X = rng.gamma(0.6, 2.0, size=(n_rows, n_features))
    kernel = np.exp(-np.arange(6) / 2.0)
    response = np.stack(
        [np.convolve(X[:, k % n_features], kernel)[:n_rows] for k in range(n_outputs)], axis=1
    )
    y = response + 0.05 * rng.standard_normal((n_rows, n_outputs))
    return X, (y[:, 0] if n_outputs == 1 else y)


@pytest.fixture
def series():
    return make_series()


@pytest.fixture
def fast_params():
    return dict(FAST)


# --------------------------------------------------------------- the documentation site
_SITE_BUILD = pytest.StashKey()


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(session, config, items):
    # Tests of the site run last, and its build starts now, in the background: it takes
    # minutes (the gallery runs every example) and runs while the other tests do.
    site = [item for item in items if "built_site" in getattr(item, "fixturenames", ())]
    if site:
        from .site import SiteBuild

        items[:] = [item for item in items if item not in site] + site
        config.stash[_SITE_BUILD] = SiteBuild()


def pytest_unconfigure(config):
    build = config.stash.get(_SITE_BUILD, None)
    if build is not None:
        build.stop()


@pytest.fixture(scope="session")
def built_site(request):
    """The built documentation site (docs/_build/html); fails with the build's output."""
    from .site import SITE, SiteBuild

    build = request.config.stash.get(_SITE_BUILD, None) or SiteBuild()
    code, output = build.result()
    if code != 0:
        pytest.fail(f"the documentation site did not build cleanly:\n{output[-6000:]}",
                    pytrace=False)
    return SITE
