"""The pure parts of the offline fidelity adapters (bench/fidelity/offline_data.py, cql.py): they run without
the reference clones and without JAX."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.fidelity.cql import DrawQueue, LegacyAdam
from bench.fidelity.offline_data import member_layers, pairs, rlkit_dataset, synthetic_d4rl
from rlkit.nets import QEnsemble


def test_synthetic_dataset_is_laid_out_as_episodes():
    data = synthetic_d4rl(n=600)
    ends = data["terminals"] | data["timeouts"]
    inside = ~ends[:-1]
    assert np.array_equal(data["next_observations"][:-1][inside], data["observations"][1:][inside])
    assert not np.any(np.all(data["next_observations"][:-1][~inside] == data["observations"][1:][~inside], axis=1))
    dataset = rlkit_dataset(data)
    assert len(dataset.episode_lengths) == int(ends[:-1].sum()) + 1


def test_legacy_adam_steps_through_data_aliases():
    """The graph recorded before the step back-propagates after it, through the stepped weight (PyTorch < 1.5's
    behaviour), and the steps themselves are Adam's."""
    torch.manual_seed(0)
    layer, twin = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    twin.load_state_dict(layer.state_dict())
    legacy, plain = LegacyAdam(layer.parameters(), lr=0.1), torch.optim.Adam(twin.parameters(), lr=0.1)
    x = torch.randn(4, 3, requires_grad=True)
    recorded = layer(x).sum()
    for net, opt in ((layer, legacy), (twin, plain)):
        opt.zero_grad()
        net(torch.randn(5, 3, generator=torch.Generator().manual_seed(1))).pow(2).sum().backward()
        opt.step()
    assert torch.equal(layer.weight, twin.weight) and torch.equal(layer.bias, twin.bias)
    recorded.backward()  # refused with a version-counter error under torch.optim.Adam
    assert torch.allclose(x.grad, layer.weight.detach().expand(4, 3))


def test_draw_queue_hands_out_draws_in_order_and_checks_shapes():
    queue = DrawQueue()
    queue.items.extend([torch.zeros(2, 3), torch.ones(4)])
    assert torch.equal(queue.take((2, 3)), torch.zeros(2, 3))
    with pytest.raises(RuntimeError, match="shape"):
        queue.take((3,))


def test_member_layers_are_nn_linear_layouts_of_the_stack():
    q = QEnsemble(4, 2, (8,), 2)
    (w0, b0), (w1, b1) = member_layers(q, 1)
    x = torch.randn(5, 6)
    ours = q(x[:, :4], x[:, 4:])[1]
    assert torch.allclose(ours, (torch.relu(x @ w0.T + b0) @ w1.T + b1)[:, 0], atol=1e-6)
    ((w, b),) = pairs({"a.weight": w0, "a.bias": b0})
    assert w is w0 and b is b0
    with pytest.raises(ValueError, match="weight/bias pairs"):
        pairs({"a.bias": b0})
