"""Training loss that ignores missing targets."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MaskedMSELoss", "masked_mse"]


def masked_mse(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the observed (non-NaN) entries of ``y_true``.

    Without missing targets this equals ``torch.nn.functional.mse_loss``. If nothing is
    observed the loss is 0 (and so is its gradient), not NaN. The shapes must agree.
    """
    if y_pred.shape != y_true.shape:
        # Broadcasting would compare every prediction with every target.
        raise ValueError(f"y_pred has shape {tuple(y_pred.shape)}, y_true "
                         f"{tuple(y_true.shape)}: they must agree")
    observed = ~torch.isnan(y_true)
    diff = torch.where(observed, y_pred - torch.nan_to_num(y_true), torch.zeros_like(y_pred))
    return (diff * diff).sum() / observed.sum().clamp(min=1)


class MaskedMSELoss(nn.Module):
    """:func:`masked_mse` as a module, for use as a skorch ``criterion``."""

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        # skorch may hand one output's targets as a vector: the same values, reshaped.
        if y_true.numel() == y_pred.numel():
            y_true = y_true.reshape(y_pred.shape)
        return masked_mse(y_pred, y_true)
