"""Device handling: CPU-checkable parts always run, the CUDA path only where a GPU exists."""

import torch

from sktlag.growth import hessian_vector_product


def test_hvp_moves_solver_vectors_to_the_device_of_the_graph():
    # The eigen-solvers pass CPU float64 vectors. A graph on another device (here the
    # meta device, which stands in for a GPU on a CPU-only machine) must receive them
    # on its own device and dtype, or autograd rejects the product.
    op = hessian_vector_product(lambda x: (x**3).sum(), torch.ones(4, device="meta"))
    hv = op(torch.ones(4, dtype=torch.float64))
    assert hv.device.type == "meta"
    assert hv.dtype == torch.float32 and hv.shape == (4,)
    assert op.calls == 1
