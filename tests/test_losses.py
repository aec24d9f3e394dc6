"""The training loss: mean squared error over the observed targets only."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sktlag.losses import MaskedMSELoss, masked_mse


def test_masked_mse_is_the_mean_over_observed_entries_only():
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(6, 2))
    true = rng.normal(size=(6, 2))
    true[[0, 3], 0] = np.nan
    true[5, 1] = np.nan
    observed = ~np.isnan(true)
    expected = np.mean((pred[observed] - true[observed]) ** 2)  # 9 entries, not 12
    y_pred = torch.tensor(pred, requires_grad=True)
    loss = masked_mse(y_pred, torch.tensor(true))
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    # No gradient reaches the prediction of a missing target.
    assert (y_pred.grad[torch.tensor(~observed)] == 0).all()
    assert (y_pred.grad[torch.tensor(observed)] != 0).all()


def test_masked_mse_without_gaps_is_the_mse_and_with_nothing_observed_is_zero():
    y_pred = torch.randn(5, 1, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y_true = torch.randn(5, 1, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(masked_mse(y_pred, y_true), F.mse_loss(y_pred, y_true))
    empty = masked_mse(y_pred, torch.full((5, 1), float("nan")))
    empty.backward()
    assert empty.item() == 0.0 and (y_pred.grad == 0).all()
    # The criterion module reshapes skorch's targets to the predictions' shape.
    torch.testing.assert_close(MaskedMSELoss()(y_pred, y_true.ravel()), F.mse_loss(y_pred, y_true))


def test_shapes_that_disagree_are_named():
    # (4, 1) against (4,) broadcast to a 4 x 4 difference: an MSE of 4 where it is 1.
    with pytest.raises(ValueError, match=r"y_pred has shape \(4, 1\), y_true \(4,\)"):
        masked_mse(torch.zeros(4, 1), torch.ones(4))
    with pytest.raises(ValueError, match=r"y_pred has shape \(4, 2\), y_true \(4,\)"):
        MaskedMSELoss()(torch.zeros(4, 2), torch.ones(4))
    # skorch hands one output's targets as a vector: the same values, reshaped.
    assert MaskedMSELoss()(torch.zeros(4, 1), torch.ones(4)).item() == 1.0
