import pytest
import torch

from sktlag.model import GrowingLSTM


def _module(**kw):
    torch.manual_seed(0)
    params = dict(n_features=3, hidden_size=5, num_layers=2, n_outputs=2, dropout=0.0)
    params.update(kw)
    return GrowingLSTM(**params).double()


def test_shapes_and_hidden_sequences():
    m = _module()
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    y, hidden = m.forward_with_hidden(x)
    assert y.shape == (4, 2)
    assert [h.shape for h in hidden] == [(4, 7, 5), (4, 7, 5)]


class _FixedDropout(torch.nn.Module):
    """Dropout with the same mask at every call: train-mode outputs become comparable."""

    def forward(self, x):
        keep = (torch.arange(x.shape[-1]) % 3 != 0).to(x)
        return x * keep / 0.7


@pytest.mark.parametrize("position", [1, 2])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_zero_insertion_preserves_the_function(position, mode):
    m = _module(dropout=0.3)
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    if mode == "train":
        # nn.Dropout draws new masks, and an inserted layer shifts the draws of the
        # layers above it: a fixed mask isolates what insertion does in training mode.
        m.dropout = _FixedDropout()
        with torch.no_grad():
            undropped = _module(dropout=0.0).train()(x)
    getattr(m, mode)()
    with torch.no_grad():
        before = m(x)
        if mode == "train":
            assert not torch.allclose(before, undropped)  # the mask does act
        m.insert_layer(position)
        after = m(x)
    assert m.num_layers == 3 and m.layers[position].residual and m.training == (mode == "train")
    # Exactly: a zero residual branch adds 0.0, and dropout never touches the skip path.
    assert torch.equal(before, after)


def test_insert_with_params_changes_output_and_validates():
    m = _module().eval()
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    before = m(x)
    w = torch.full((20, 5), 0.3, dtype=torch.float64)
    m.insert_layer(2, {"weight_ih_l0": w})
    assert not torch.equal(before, m(x))
    assert torch.equal(m.layers[2].lstm.weight_ih_l0, w)
    assert torch.count_nonzero(m.layers[2].lstm.bias_hh_l0) == 0
    with pytest.raises(ValueError, match="position"):
        m.insert_layer(0)
    with pytest.raises(ValueError, match="unknown LSTM parameter"):
        m.insert_layer(1, {"weight": w})
    # A vector of 5 was broadcast to every row of the 20 x 5 matrix.
    with pytest.raises(ValueError, match=r"weight_ih_l0 has shape \(5,\), the layer's \(20, 5\)"):
        m.insert_layer(1, {"weight_ih_l0": w[0]})
    assert m.num_layers == 3


def test_spec_round_trip_rebuilds_the_same_network():
    m = _module()
    m.insert_layer(1)
    spec = m.get_spec()
    assert spec["residual"] == [False, True, False]
    rebuilt = GrowingLSTM.from_spec(spec).double()
    rebuilt.load_state_dict(m.state_dict())
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    assert torch.equal(m.eval()(x), rebuilt.eval()(x))
    assert "residual" in m.describe() and "3 LSTM layers" in m.describe()


def test_invalid_residual_flags():
    with pytest.raises(ValueError, match="start with False"):
        GrowingLSTM(2, 4, num_layers=2, residual=[True, False])
    with pytest.raises(ValueError, match="num_layers"):
        GrowingLSTM(2, 4, num_layers=0)


@pytest.mark.parametrize(("name", "value"), [("dropout", 1.5), ("output_dropout", -1.0)])
def test_a_dropout_rate_outside_zero_to_one_is_named(name, value):
    # torch's message named neither of the two rates.
    with pytest.raises(ValueError, match=f"{name} must be in \\[0, 1\\), got {value}"):
        GrowingLSTM(n_features=3, hidden_size=4, **{name: value})
