"""scikit-learn's estimator checks, on fast settings."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sktlag import TLAGRegressor

from .conftest import FAST

# A prediction for row t reads rows t - lookback + 1 .. t: it depends on the rows
# before it, by design. These two checks assume rows are independent samples.
_ORDER_DEPENDENT = (
    "the prediction for a row reads the lookback - 1 rows before it, so predicting a "
    "subset or a permutation of the rows changes the inputs of every window"
)
EXPECTED_FAILURES = {
    "check_methods_subset_invariance": _ORDER_DEPENDENT,
    "check_methods_sample_order_invariance": _ORDER_DEPENDENT,
}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILURES


@parametrize_with_checks(
    [TLAGRegressor(**{**FAST, "lookback": 3}, random_state=0)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
