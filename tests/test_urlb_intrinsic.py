"""URLB's intrinsic-reward agents (Laskin et al. 2021, released code): RND (Burda et al. 2019), APT with the ICM
representation (Liu & Abbeel 2021), ICM (Pathak et al. 2017), Disagreement (Pathak et al. 2019).

Each reward is recomputed by hand from its formula; ``intrinsic_reward`` trains nothing (it is pure but for the
running reward statistics), ``update_representation`` trains only the intrinsic module, and pretraining never
reads the environment's reward.
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.algorithms.unsupervised.apt import APT
from rlkit.algorithms.unsupervised.disagreement import Disagreement
from rlkit.algorithms.unsupervised.icm import ICM
from rlkit.algorithms.unsupervised.rnd import RND
from rlkit.errors import ConfigError
from rlkit.replay import Batch

OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
SMALL = dict(hidden_dim=16, lr=1e-3)
AGENTS = {RND: dict(rnd_rep_dim=8), APT: dict(rep_dim=8, knn_k=4), ICM: {}, Disagreement: dict(n_models=3)}
MODULE = {RND: "rnd", APT: "icm", ICM: "icm", Disagreement: "disagreement"}


def make_batch(n: int = 32, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch({"obs": torch.randn(n, 5, generator=g) * 3 + 1, "action": torch.rand(n, 2, generator=g) * 2 - 1,
                  "reward": torch.randn(n, generator=g), "next_obs": torch.randn(n, 5, generator=g),
                  "discount": torch.full((n,), 0.99**3)})


def agent(cls, **kw):
    a = cls(OBS, ACT, **SMALL, **AGENTS[cls], **kw)
    a.setup_urlb(reward_free=True, seed_steps=0, episode_steps=100)
    return a


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def test_rnd_reward_is_the_prediction_error_over_its_running_std():
    a = agent(RND)
    batch = make_batch()
    reward = a.intrinsic_reward(batch, batch.obs, batch.next_obs)
    x = batch.obs.numpy().astype(np.float64)
    x = np.clip((x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), -5, 5)  # BatchNorm1d(affine=False), training mode
    xt = torch.as_tensor(x, dtype=torch.float32)
    error = (a.rnd.target(xt) - a.rnd.predictor(xt)).square().mean(-1).detach().numpy().astype(np.float64)
    n = 1e-4  # URLB's RMS after one batch: M = 0 + delta B/(n+B), S = (1 n + var B + delta^2 n B/(n+B))/(n+B)
    b = error.size
    var = (1.0 * n + error.var(ddof=1) * b + error.mean() ** 2 * n * b / (n + b)) / (n + b)
    np.testing.assert_allclose(reward.numpy(), error / (np.sqrt(var) + 1e-8), rtol=1e-4)
    assert a.reward_stats.count.item() == pytest.approx(b + 1e-4)


def test_rnd_trains_the_predictor_and_never_the_target():
    a = agent(RND)
    batch = make_batch()
    target, predictor = flat(a.rnd.target), flat(a.rnd.predictor)
    first = a.update_representation(batch, batch.obs, batch.next_obs)["train/rnd_loss"]
    for _ in range(20):
        a.update_representation(batch, batch.obs, batch.next_obs)
    assert torch.equal(flat(a.rnd.target), target) and not torch.equal(flat(a.rnd.predictor), predictor)
    assert a.update_representation(batch, batch.obs, batch.next_obs)["train/rnd_loss"] < first


def test_apt_reward_is_the_knn_particle_entropy_of_the_icm_representation():
    a = agent(APT)
    batch = make_batch()
    reward = a.intrinsic_reward(batch, batch.obs, batch.next_obs)
    rep = a.icm.trunk(batch.obs).detach().numpy().astype(np.float64)
    d = np.linalg.norm(rep[:, None] - rep[None], axis=-1)
    kept = np.sort(d, axis=1)[:, :4]  # its own 0 included
    np.testing.assert_allclose(reward.numpy(), np.log1p(kept.mean(1)), rtol=1e-5, atol=1e-6)
    # knn_rms: URLB's PBE divides by the running *mean* of the kept distances (and clips at knn_clip)
    b = agent(APT, knn_rms=True, knn_clip=0.01)
    b.icm.load_state_dict(a.icm.state_dict())
    n, x = 1e-4, kept.reshape(-1)
    mean = x.mean() * x.size / (n + x.size)
    expected = np.log1p(np.maximum(kept / mean - 0.01, 0).mean(1))
    np.testing.assert_allclose(b.intrinsic_reward(batch, batch.obs, batch.next_obs).numpy(), expected, rtol=1e-5)


def test_icm_reward_is_the_log_forward_error():
    a = agent(ICM, icm_scale=2.0)
    batch = make_batch()
    pred = a.icm.forward_net(torch.cat([batch.obs, batch.action], -1))
    error = (batch.next_obs - pred).norm(dim=-1).detach()
    torch.testing.assert_close(a.intrinsic_reward(batch, batch.obs, batch.next_obs), torch.log1p(2.0 * error))
    inverse = a.icm.backward_net(torch.cat([batch.obs, batch.next_obs], -1))
    expected = error.mean() + (batch.action - inverse).norm(dim=-1).mean()
    torch.testing.assert_close(a.update_representation(batch, batch.obs, batch.next_obs)["train/icm_loss"],
                               expected.detach())


def test_disagreement_reward_is_the_ensemble_variance():
    a = agent(Disagreement)
    batch = make_batch()
    x = torch.cat([batch.obs, batch.action], -1)
    preds = np.stack([m(x).detach().numpy() for m in a.disagreement.ensemble]).astype(np.float64)
    np.testing.assert_allclose(a.intrinsic_reward(batch, batch.obs, batch.next_obs).numpy(),
                               preds.var(axis=0, ddof=1).mean(-1), rtol=1e-4, atol=1e-7)
    # identical models agree everywhere: zero reward
    for m in a.disagreement.ensemble[1:]:
        m.load_state_dict(a.disagreement.ensemble[0].state_dict())
    assert a.intrinsic_reward(batch, batch.obs, batch.next_obs).abs().max() == 0


@pytest.mark.parametrize("cls", list(AGENTS))
def test_reward_is_pure_and_only_the_update_trains_the_intrinsic_module(cls):
    a = agent(cls)
    batch = make_batch()
    module = getattr(a, MODULE[cls])
    before = {n: flat(getattr(a, n)) for n in (MODULE[cls], "actor", "critic")}
    a.intrinsic_reward(batch, batch.obs, batch.next_obs)
    assert all(torch.equal(flat(getattr(a, n)), v) for n, v in before.items())
    a.update_representation(batch, batch.obs, batch.next_obs)
    assert not torch.equal(flat(module), before[MODULE[cls]])
    assert torch.equal(flat(a.actor), before["actor"]) and torch.equal(flat(a.critic), before["critic"])


@pytest.mark.parametrize("cls", list(AGENTS))
def test_pretraining_never_reads_the_env_reward_and_finetuning_does(cls):
    a = agent(cls)
    b = copy.deepcopy(a)
    batch = make_batch()
    other = Batch(dict(batch))
    other["reward"] = batch.reward * 100 + 7
    torch.manual_seed(0)
    a.update(batch)
    torch.manual_seed(0)
    b.update(other)
    for name in ("actor", "critic", MODULE[cls]):
        assert torch.equal(flat(getattr(a, name)), flat(getattr(b, name))), name
    for x in (a, b):
        x.setup_urlb(reward_free=False, seed_steps=0, episode_steps=100)
    torch.manual_seed(0)
    a.update(batch)
    torch.manual_seed(0)
    b.update(other)
    assert not torch.equal(flat(a.critic), flat(b.critic))


@pytest.mark.parametrize("cls", list(AGENTS))
def test_pixels_are_refused(cls):
    with pytest.raises(ConfigError, match="states-only"):
        cls(gym.spaces.Box(0, 255, (9, 84, 84), np.uint8), ACT, obs_type="pixels")


def test_diayn_reward_is_the_discriminator_log_likelihood_over_the_uniform_prior():
    from rlkit.algorithms.unsupervised.diayn import DIAYN

    a = DIAYN(OBS, ACT, skill_dim=4, **SMALL)
    a.setup_urlb(reward_free=True, seed_steps=0, episode_steps=100)
    batch = make_batch()
    skills = np.random.default_rng(0).integers(0, 4, 32)
    batch["skill"] = torch.eye(4)[skills]
    logits = a.diayn(batch.next_obs).detach().numpy().astype(np.float64)
    log_q = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = log_q[np.arange(32), skills] - np.log(1 / 4)
    np.testing.assert_allclose(a.intrinsic_reward(batch, batch.obs, batch.next_obs).numpy(), expected, rtol=1e-5,
                               atol=1e-6)  # float32 cancellation near 0
    first = a.update_representation(batch, batch.obs, batch.next_obs)["train/diayn_loss"]
    assert first == pytest.approx(-log_q[np.arange(32), skills].mean(), rel=1e-5)  # cross-entropy
    meta = a.init_meta(np.zeros(1000), 0, np.random.default_rng(0))["skill"]
    assert (meta.sum(1) == 1).all() and set(meta.argmax(1)) == {0, 1, 2, 3}  # uniform one-hot skills
    a.setup_urlb(reward_free=False, seed_steps=0, episode_steps=100)
    assert (a.init_meta(np.zeros(8), 0, np.random.default_rng(1))["skill"].sum(1) == 1).all()  # still resampled
