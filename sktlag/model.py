"""The network: a stack of LSTM layers that can grow in depth while it trains.

`GrowingLSTM` is a small `torch.nn.Module`; it knows nothing about training. Growth
changes it through :meth:`~sktlag.GrowingLSTM.insert_layer`, and its architecture can be written
as a plain spec (a dict of ints, floats and bools) and rebuilt from it, which is what the
``.pth`` files hold next to the weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["GrowingLSTM", "LSTMLayer", "set_forget_bias"]


def set_forget_bias(lstm: nn.LSTM, value: float) -> None:
    """Set the forget-gate bias of a single-layer ``nn.LSTM`` to ``value``.

    PyTorch orders the gates input, forget, cell, output, and adds two bias vectors
    (``bias_ih`` and ``bias_hh``); the forget gate's total bias becomes ``value``.
    """
    hidden = lstm.hidden_size
    with torch.no_grad():
        lstm.bias_hh_l0[hidden : 2 * hidden].fill_(value)
        lstm.bias_ih_l0[hidden : 2 * hidden].zero_()


class LSTMLayer(nn.Module):
    """One single-layer LSTM, plain (``LSTM(h)``) or residual (``h + LSTM(dropout(h))``).

    Parameters
    ----------
    input_size : int
        Features per time step of the input sequence.
    hidden_size : int
        Features per time step of the output sequence.
    residual : bool, default=False
        If True the layer adds its input to its output; requires
        ``input_size == hidden_size``. A residual layer whose parameters are all zero
        returns its input unchanged: gates are 0.5, the candidate is tanh(0) = 0, so the
        cell and hidden states stay 0.
    """

    def __init__(self, input_size: int, hidden_size: int, residual: bool = False):
        super().__init__()
        if residual and input_size != hidden_size:
            raise ValueError(
                f"a residual layer needs input_size == hidden_size, got {input_size} and "
                f"{hidden_size}"
            )
        self.residual = residual
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)

    def forward(self, x: torch.Tensor, dropout: nn.Module | None = None) -> torch.Tensor:
        inner = dropout(x) if dropout is not None else x
        out, _ = self.lstm(inner)
        # Dropout touches only the branch, never the skip path, so inserting a zero
        # residual layer preserves the network function in training mode too.
        return x + out if self.residual else out


class GrowingLSTM(nn.Module):
    """Stacked LSTM regressor whose depth can grow by inserting residual layers.

    Parameters
    ----------
    n_features : int
        Input variables per time step (stations, meteorological series).
    hidden_size : int
        Width of every LSTM layer.
    num_layers : int, default=1
        Initial depth: one LSTM from the inputs to ``hidden_size`` and
        ``num_layers - 1`` plain hidden-to-hidden LSTMs on top.
    n_outputs : int, default=1
        Targets predicted from the last time step of the top layer (e.g. gauges).
    dropout : float, default=0.0
        Dropout applied to the input of every layer after the first.
    residual : sequence of bool, optional
        Explicit per-layer residual flags (length ``num_layers``; the first must be
        False). Used when rebuilding a grown network from its spec.
    output_dropout : float, default=0.0
        Dropout on the top layer's last hidden state, before the linear head.
    initial_forget_bias : float, default=0.0
        Value the forget-gate biases of the layers built here start from (inserted
        layers are set by growth). A positive value (3 is common for streamflow) keeps
        the cell state, so gradients reach far back in long windows from the first
        epoch on.

    Notes
    -----
    Input is a batch of windows of shape ``(batch, lookback, n_features)``; output has
    shape ``(batch, n_outputs)``.
    """

    def __init__(
        self,
        n_features: int,
        hidden_size: int,
        num_layers: int = 1,
        n_outputs: int = 1,
        dropout: float = 0.0,
        residual: list[bool] | tuple[bool, ...] | None = None,
        output_dropout: float = 0.0,
        initial_forget_bias: float = 0.0,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        for name, rate in (("dropout", dropout), ("output_dropout", output_dropout)):
            if not 0.0 <= rate < 1.0:  # the estimator's range (NaN fails too)
                raise ValueError(f"{name} must be in [0, 1), got {rate}")
        flags = [False] * num_layers if residual is None else [bool(r) for r in residual]
        if len(flags) != num_layers or flags[0]:
            raise ValueError(
                f"residual must have num_layers={num_layers} entries and start with False, "
                f"got {flags}"
            )
        self.n_features = int(n_features)
        self.hidden_size = int(hidden_size)
        self.n_outputs = int(n_outputs)
        self.dropout_rate = float(dropout)
        self.layers = nn.ModuleList(
            LSTMLayer(self.n_features if i == 0 else self.hidden_size, self.hidden_size, res)
            for i, res in enumerate(flags)
        )
        self.dropout = nn.Dropout(self.dropout_rate)
        self.output_dropout_rate = float(output_dropout)
        self.output_dropout = nn.Dropout(self.output_dropout_rate)
        self.head = nn.Linear(self.hidden_size, self.n_outputs)
        if initial_forget_bias:
            for layer in self.layers:
                set_forget_bias(layer.lstm, initial_forget_bias)

    @property
    def num_layers(self) -> int:
        """Current depth (number of LSTM layers)."""
        return len(self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_hidden(x)[0]

    def forward_with_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Predictions and the output sequence of every layer.

        Returns
        -------
        y : Tensor of shape (batch, n_outputs)
        hidden : list of Tensor of shape (batch, lookback, hidden_size)
            ``hidden[l]`` is the output of layer ``l + 1``: the sequence a layer inserted
            after position ``l + 1`` would read.
        """
        hidden = []
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h, self.dropout if i > 0 else None)
            hidden.append(h)
        return self.head(self.output_dropout(h[:, -1, :])), hidden

    def insert_layer(
        self, position: int, params: dict[str, torch.Tensor] | None = None
    ) -> LSTMLayer:
        """Insert a residual hidden-to-hidden LSTM after layer ``position``.

        Parameters
        ----------
        position : int
            1-based index of the existing layer the new one follows
            (``1 <= position <= num_layers``).
        params : dict of str to Tensor, optional
            Values for the new LSTM's parameters, keyed like ``nn.LSTM``'s
            (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``).
            Missing entries are zero; with no params at all the network function is
            unchanged.

        Returns
        -------
        LSTMLayer
            The inserted layer.
        """
        if not 1 <= position <= self.num_layers:
            raise ValueError(
                f"position must be between 1 and {self.num_layers}, got {position}"
            )
        reference = next(self.parameters())
        layer = LSTMLayer(self.hidden_size, self.hidden_size, residual=True).to(
            device=reference.device, dtype=reference.dtype
        )
        params = params or {}
        unknown = set(params) - {name for name, _ in layer.lstm.named_parameters()}
        if unknown:
            raise ValueError(f"unknown LSTM parameter names: {sorted(unknown)}")
        for name, p in layer.lstm.named_parameters():
            if name in params and tuple(params[name].shape) != tuple(p.shape):
                # copy_ would broadcast a vector to every row.
                raise ValueError(f"{name} has shape {tuple(params[name].shape)}, the "
                                 f"layer's {tuple(p.shape)}")
        with torch.no_grad():
            for name, p in layer.lstm.named_parameters():
                p.copy_(params[name]) if name in params else p.zero_()
        self.layers.insert(position, layer)
        return layer

    def get_spec(self) -> dict[str, Any]:
        """The architecture as plain data (JSON- and ``weights_only``-safe)."""
        return {
            "n_features": self.n_features,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "n_outputs": self.n_outputs,
            "dropout": self.dropout_rate,
            "residual": [layer.residual for layer in self.layers],
            "output_dropout": self.output_dropout_rate,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> GrowingLSTM:
        """Build an (untrained) module with the architecture described by ``spec``."""
        return cls(
            n_features=int(spec["n_features"]),
            hidden_size=int(spec["hidden_size"]),
            num_layers=int(spec["num_layers"]),
            n_outputs=int(spec["n_outputs"]),
            dropout=float(spec["dropout"]),
            residual=[bool(r) for r in spec["residual"]],
            # Specs written before output dropout existed have none.
            output_dropout=float(spec.get("output_dropout", 0.0)),
        )

    def describe(self) -> str:
        """A human-readable summary, one line per layer."""
        lines = [f"GrowingLSTM: {self.num_layers} LSTM layers, hidden size {self.hidden_size}"]
        for i, layer in enumerate(self.layers, start=1):
            kind = "residual h + LSTM(h)" if layer.residual else "LSTM"
            n = sum(p.numel() for p in layer.parameters())
            lines.append(
                f"  layer {i}: {kind}, {layer.lstm.input_size} -> {layer.lstm.hidden_size}, "
                f"{n} parameters"
            )
        lines.append(f"  head: linear {self.hidden_size} -> {self.n_outputs} (last time step)")
        lines.append(f"  dropout between layers: {self.dropout_rate}")
        lines.append(f"  dropout before the head: {self.output_dropout_rate}")
        lines.append(f"  total parameters: {sum(p.numel() for p in self.parameters())}")
        return "\n".join(lines)
