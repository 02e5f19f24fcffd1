"""SPR as mila-iqia/spr computes it (the points bench/fidelity/spr.py checks against the released code, pinned
here without it): noisy-layer init, the projection, the dueling gradient scale, exact renormalisation, the
end-inclusive window mask, batch-max PER weights, KL priorities, the SPR loss over k = 1..K weighted by the PER
weights, and the SPR target's update timing."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.algorithms.world_models.spr import SPR
from rlkit.algorithms.world_models.vcr import VCRDiscrete
from rlkit.errors import ConfigError
from rlkit.nets import C51Head, NoisyLinear, renormalize
from rlkit.replay import ColumnarStorage, PrioritizedSampler, transition_columns, window_rows

OBS = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
ACTIONS = gym.spaces.Discrete(3)
SMALL = {"batch_size": 4, "prediction_depth": 2, "nstep": 3}


def batch_for(b: int = 4, k: int = 2, weights=None) -> dict:
    g = torch.Generator().manual_seed(3)
    obs = torch.randint(0, 256, (b, k + 1, 4, 84, 84), generator=g, dtype=torch.uint8)
    return {"obs": obs[:, 0], "window_obs": obs, "window_action": torch.randint(0, 3, (b, k), generator=g),
            "window_valid": torch.ones(b, k + 1), "action": torch.randint(0, 3, (b,), generator=g),
            "reward": torch.randn(b, generator=g), "discount": torch.full((b,), 0.9),
            "weights": torch.ones(b) if weights is None else weights,
            "next_obs": torch.randint(0, 256, (b, 4, 84, 84), generator=g, dtype=torch.uint8)}


def test_noisy_linear_sigma_init_and_mean():
    layer = NoisyLinear(16, 4, sigma0=0.5)
    assert torch.allclose(layer.weight_sigma, torch.full((4, 16), 0.5 / math.sqrt(16)))
    assert torch.allclose(layer.bias_sigma, torch.full((4,), 0.5 / math.sqrt(4)))  # 1/sqrt(out), not in
    x = torch.randn(3, 16)
    layer.train()
    assert not torch.allclose(layer(x), layer.mean(x))  # noise on in train mode
    assert torch.equal(layer.mean(x), layer.eval()(x))


def test_projection_is_value_and_advantage_first_layers_mean_weights_no_relu():
    torch.manual_seed(0)
    head = C51Head(20, 3, atoms=5, hidden=8, dueling=True, noisy=True)
    x = torch.randn(6, 20)
    out = head.projection(x)
    assert out.shape == (6, 16) and head.projection_dim == 16
    value = x @ head.value_hidden.weight_mu.T + head.value_hidden.bias_mu
    adv = x @ head.advantage_hidden.weight_mu.T + head.advantage_hidden.bias_mu
    assert torch.allclose(out, torch.cat([value, adv], -1), atol=1e-6)
    assert (out < 0).any()  # no ReLU
    head.reset_noise(torch.Generator().manual_seed(5))
    assert torch.equal(head.projection(x), out)  # no noise
    assert C51Head(20, 3, atoms=5, hidden=8, dueling=False).projection(x).shape == (6, 8)


def test_dueling_head_scales_its_input_gradient_by_one_over_sqrt2():
    torch.manual_seed(0)
    head = C51Head(10, 3, atoms=5, hidden=8, dueling=True, noisy=False)
    x = torch.randn(4, 10, requires_grad=True)
    head(x).square().sum().backward()
    scaled = x.grad.clone()
    x2 = x.detach().clone().requires_grad_(True)
    head.grad_scale = 1.0
    head(x2).square().sum().backward()
    assert torch.allclose(scaled, x2.grad / math.sqrt(2.0), atol=1e-7)
    # the projection does not pass through the scaled forward
    x3 = x.detach().clone().requires_grad_(True)
    head.projection(x3).sum().backward()
    assert torch.allclose(x3.grad, (head.value_hidden.weight.sum(0) + head.advantage_hidden.weight.sum(0)))


def test_renormalize_is_exact_min_max():
    x = torch.tensor([[[[0.0, 2.0], [1.0, 4.0]]]])
    assert torch.equal(renormalize(x), torch.tensor([[[[0.0, 0.5], [0.25, 1.0]]]]))


def test_window_rows_end_inclusive_masks_the_episodes_last_row():
    storage = ColumnarStorage(8, transition_columns((1,), ()))
    for t in [0, 0, 1, 0, 0]:
        storage.add(obs=np.zeros((1, 1)), action=np.zeros(1), reward=np.zeros(1), next_obs=np.zeros((1, 1)),
                    terminated=np.array([t]), truncated=np.zeros(1))
    _, valid = window_rows(storage, np.array([0, 2]), 3, end_inclusive=True)
    assert valid.tolist() == [[True, True, False], [False, False, False]]  # row 2 ends the episode
    _, valid = window_rows(storage, np.array([0, 2]), 3)
    assert valid.tolist() == [[True, True, True], [True, False, False]]


def test_per_batch_max_weights():
    storage = ColumnarStorage(16, transition_columns((1,), ()))
    for _ in range(10):
        storage.add(obs=np.zeros((1, 1)), action=np.zeros(1), reward=np.zeros(1), next_obs=np.zeros((1, 1)),
                    terminated=np.zeros(1), truncated=np.zeros(1))
    sampler = PrioritizedSampler(alpha=0.5, beta=0.4, seed=0, weight_norm="batch_max")
    sampler.bind(storage)
    sampler.update_priorities(np.arange(10), np.linspace(0.1, 3.0, 10))
    idx, w = sampler.sample(6, storage)
    leaf = sampler.tree.leaves[idx]
    expected = (leaf + 1e-5) ** -0.4
    assert np.allclose(w, expected / expected.max(), rtol=1e-6) and w.max() == 1.0
    buffer_min = PrioritizedSampler(alpha=0.5, beta=0.4, seed=0)
    buffer_min.bind(storage)
    buffer_min.update_priorities(np.arange(10), np.linspace(0.1, 3.0, 10))
    idx2, w2 = buffer_min.sample(6, storage)
    assert np.allclose(w2, (buffer_min.tree.leaves[idx2] / buffer_min.tree.min) ** -0.4, rtol=1e-6)
    with pytest.raises(ConfigError, match="weight_norm"):
        PrioritizedSampler(weight_norm="global")


def test_per_initial_priority_is_fixed_not_the_running_max():
    storage = ColumnarStorage(16, transition_columns((1,), ()))

    def add(n):
        for _ in range(n):
            storage.add(obs=np.zeros((1, 1)), action=np.zeros(1), reward=np.zeros(1), next_obs=np.zeros((1, 1)),
                        terminated=np.zeros(1), truncated=np.zeros(1))

    add(2)
    fixed, running = (PrioritizedSampler(alpha=0.5, initial_priority=1.0), PrioritizedSampler(alpha=0.5))
    for sampler in (fixed, running):
        sampler.bind(storage)
        sampler.update_priorities(np.arange(2), np.array([4.0, 9.0]))
    add(1)
    for sampler in (fixed, running):
        sampler.on_add(np.array([2]))
    assert fixed.tree.leaves[2] == pytest.approx(1.0)
    assert running.tree.leaves[2] == pytest.approx((9.0 + 1e-6) ** 0.5)
    with pytest.raises(ConfigError, match="initial_priority"):
        PrioritizedSampler(initial_priority=0.0)


def test_priorities_are_the_clamped_kl_and_the_loss_the_cross_entropy():
    torch.manual_seed(0)
    spr = SPR(OBS, ACTIONS, **SMALL)
    spr.priority_feedback = True
    batch = batch_for()
    logits = spr.q_net.logits(spr.q_net.encoder(spr._pixels(batch["obs"])))
    ce, kl = spr.rl_loss(logits, batch)
    # KL = CE - H(target) (the clamp at 1e-6 moves it by < 51e-6 log 1e-6): 0 < KL < CE
    assert (kl >= 1e-6).all() and (kl < ce).all()
    result = spr.update(batch)
    assert result.priorities.shape == (4,) and (result.priorities >= 1e-6).all()


def test_spr_loss_skips_k0_averages_k_1_to_K_and_takes_the_per_weights():
    torch.manual_seed(0)
    spr = SPR(OBS, ACTIONS, **SMALL, noisy=False)
    latents = renormalize(torch.rand(4, 3, 64, 7, 7))
    target = renormalize(torch.rand(4, 3, 64, 7, 7))
    batch = {"window_valid": torch.ones(4, 3)}
    per_step = spr.spr_loss(latents, target, batch["window_valid"])
    aux = spr.auxiliary_losses(latents, target, batch)
    assert set(aux) == {"spr"} and aux["spr"][0] == 5.0
    assert torch.allclose(aux["spr"][1], per_step[:, 1:].mean(1))
    changed = target.clone()
    changed[:, 0] = renormalize(torch.rand(4, 64, 7, 7))  # k = 0 has weight 0
    assert torch.equal(spr.auxiliary_losses(latents, changed, batch)["spr"][1], aux["spr"][1])
    assert (per_step >= 0).all() and (per_step <= 4.0 + 1e-6).all()  # ||u - v||^2 of unit vectors
    t0 = SPR(OBS, ACTIONS, **SMALL, noisy=False, spr_t0_weight=1.0)
    assert set(t0.auxiliary_losses(latents, target, batch)) == {"spr", "spr_t0"}
    # the whole update multiplies every per-row loss by the PER weight: zero weights -> zero loss
    zero = spr.update(batch_for(weights=torch.zeros(4)))
    assert zero.metrics["train/loss"].item() == 0.0 and zero.metrics["train/spr_loss"].item() > 0


def test_spr_target_update_before_step_lags_one_update():
    torch.manual_seed(0)
    spr = SPR(OBS, ACTIONS, **SMALL, spr_target_update="before_step")
    before = [p.detach().clone() for p in spr.q_net.parameters()]
    spr.update(batch_for())
    assert all(torch.equal(a, b) for a, b in zip(spr.spr_target_net.parameters(), before))
    assert all(torch.equal(a, b) for a, b in zip(spr.target_net.parameters(), spr.q_net.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(spr.q_net.parameters(), before))
    default = SPR(OBS, ACTIONS, **SMALL)
    assert default._spr_target() is default.target_net
    with pytest.raises(ConfigError, match="spr_target_update"):
        SPR(OBS, ACTIONS, **SMALL, spr_target_update="never")


def test_vcr_weight_zero_with_the_spr_loss_is_spr():
    torch.manual_seed(0)
    spr = SPR(OBS, ACTIONS, **SMALL, seed=1)
    vcr = VCRDiscrete(OBS, ACTIONS, discrete=SMALL, vcr_weight=0.0, keep_spr_loss=True, seed=1)
    vcr.load_state_dict(spr.state_dict())
    for _ in range(2):
        a, b = spr.update(batch_for()), vcr.update(batch_for())
        assert torch.equal(a.metrics["train/loss"], b.metrics["train/loss"])
    assert all(torch.equal(p, q) for p, q in zip(spr.q_net.parameters(), vcr.q_net.parameters()))
