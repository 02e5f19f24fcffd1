"""URLB agents (Laskin et al. 2021; CIC, Laskin et al. 2022; MOSS, Zhao et al. 2022): the DDPG backbone, CIC and MOSS.

Closed-form checks of the kNN particle-entropy reward (hand-computed distances and running statistics), the CIC
contrastive loss, the truncated-noise policy and std schedules, the DDPG critic target and EMA, reward-free
pretraining that never reads the env reward, MOSS's mode schedule / skill modes / reward sign flip / batch
ordering / finetune skill search, and the finetune initialisation from a snapshot (URLB's ``init_from``).
"""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.algorithms.unsupervised import (
    CIC,
    DDPG,
    MOSS,
    RunningMeanVar,
    SkillSearch,
    cic_contrastive_loss,
    knn_distances,
    mixture_reward,
    moss_mode,
    moss_skill,
    particle_entropy_reward,
)
from rlkit.algorithms.unsupervised.ddpg import random_shift, sample_truncated, stddev_at
from rlkit.errors import ConfigError
from rlkit.replay import Batch

OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
SMALL = dict(hidden_dim=16, lr=1e-3)


def make_batch(n: int = 32, skill_dim: int = 0, seed: int = 0, mode: np.ndarray | None = None) -> Batch:
    g = torch.Generator().manual_seed(seed)
    batch = Batch({
        "obs": torch.randn(n, 5, generator=g),
        "action": torch.rand(n, 2, generator=g) * 2 - 1,
        "reward": torch.randn(n, generator=g),
        "next_obs": torch.randn(n, 5, generator=g),
        "discount": torch.full((n,), 0.99**3),
    })
    if skill_dim:
        batch["skill"] = torch.rand(n, skill_dim, generator=g)
    if mode is not None:
        batch["mode"] = torch.as_tensor(mode, dtype=torch.float32)
    return batch


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# ----------------------------------------------------------------------------- kNN particle entropy (CIC)
POINTS = torch.tensor([[0.0, 0.0], [3.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
# pairwise distances: |p0 p1| = 3, |p0 p2| = 5, |p0 p3| = 1, |p1 p2| = 4, |p1 p3| = sqrt(10), |p2 p3| = sqrt(18)
KEPT3 = np.array([[0.0, 1.0, 3.0],                            # p0: itself, p3, p1
                  [0.0, 3.0, math.sqrt(10.0)],                # p1: itself, p0, p3
                  [0.0, 4.0, math.sqrt(18.0)],                # p2: itself, p1, p3
                  [0.0, 1.0, math.sqrt(10.0)]])               # p3: itself, p0, p1


def test_knn_distances_are_the_k_smallest_of_each_row_including_self():
    kept = knn_distances(POINTS, POINTS, k=3)
    torch.testing.assert_close(kept, torch.tensor(KEPT3, dtype=torch.float32))
    with pytest.raises(ValueError, match="knn_k"):
        knn_distances(POINTS, POINTS, k=5)


def running_stats(batches: list[np.ndarray], unbiased: bool) -> tuple[float, float, float]:
    """The released code's update, written out: M=0, S=1, n=1e-4, then per batch X (all kept distances)."""
    m, s, n = 0.0, 1.0, 1e-4
    for x in batches:
        b = x.size
        delta = x.mean() - m
        var = x.var(ddof=1 if unbiased else 0)
        m, s = m + delta * b / (n + b), (s * n + var * b + delta**2 * n * b / (n + b)) / (n + b)
        n += b
    return m, s, n


def test_cic_entropy_reward_matches_the_formula_on_a_known_point_set():
    stats = RunningMeanVar(unbiased=True)
    reward = particle_entropy_reward(POINTS, POINTS, stats, k=3, clip=0.0005)
    kept = KEPT3
    m, s, n = running_stats([kept.ravel()], unbiased=True)
    expected = np.log1p(np.maximum(kept / s - 0.0005, 0.0).mean(1))  # divided by the variance, no sqrt
    np.testing.assert_allclose(reward.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose([stats.mean.item(), stats.var.item(), stats.count.item()], [m, s, n], rtol=1e-5)
    assert s != pytest.approx(math.sqrt(s))  # the case distinguishes variance from standard deviation


def test_moss_entropy_reward_subtracts_the_running_mean_and_uses_the_biased_variance():
    stats = RunningMeanVar(unbiased=False)
    first = POINTS * 0.5
    particle_entropy_reward(first, first, stats, k=2)  # a first batch: the statistics carry over
    source, target = POINTS, POINTS + torch.tensor([1.0, 0.0])
    reward = particle_entropy_reward(source, target, stats, k=2, subtract_mean=True)
    d = torch.cdist(source, target).numpy()
    kept_first = np.sort(torch.cdist(first, first).numpy(), axis=1)[:, :2]
    kept = np.sort(d, axis=1)[:, :2]
    m, s, _ = running_stats([kept_first.ravel(), kept.ravel()], unbiased=False)
    expected = np.log1p(np.maximum((kept - m) / s - 0.0005, 0.0).mean(1))
    np.testing.assert_allclose(reward.numpy(), expected, rtol=1e-5)


def test_kth_neighbour_variant_and_no_normalisation():
    reward = particle_entropy_reward(POINTS, POINTS, None, k=3, clip=0.5, average=False)
    kth = KEPT3[:, -1]
    np.testing.assert_allclose(reward.numpy(), np.log1p(kth - 0.5), rtol=1e-6)


# ----------------------------------------------------------------------------- CIC contrastive loss
def test_cic_loss_closed_form():
    eye = torch.eye(2)
    loss = cic_contrastive_loss(eye, eye, temperature=0.5)
    # logits diag 2, off-diag 0: negatives = e^2 + 1 - e^2 = 1, positives = e^2
    np.testing.assert_allclose(loss.numpy(), [-2.0 + math.log(1 + 1e-6)] * 2, rtol=1e-6)
    swapped = cic_contrastive_loss(eye, eye.flip(0), temperature=0.5)
    # positives e^0 = 1; negatives e^0 + e^2 - e^2 = 1
    np.testing.assert_allclose(swapped.numpy(), [math.log(1 + 1e-6)] * 2, atol=1e-6)
    scaled = cic_contrastive_loss(3 * eye, 0.5 * eye, temperature=0.5)  # unit-normalised first
    torch.testing.assert_close(scaled, loss)


def test_cic_loss_denominator_is_clamped_and_gradients_are_correct():
    q = torch.tensor([[1.0, 0.0, 0.0]])
    loss = cic_contrastive_loss(q, q, temperature=0.5)  # one sample: sum - e^{1/tau} = 0 -> clamped to 1e-6
    np.testing.assert_allclose(loss.item(), -(2.0 - math.log(2e-6)), rtol=1e-5)
    g = torch.Generator().manual_seed(0)
    query = torch.randn(6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    key = torch.randn(6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: cic_contrastive_loss(a, b, 0.5).mean(), (query, key))


# ----------------------------------------------------------------------------- DDPG backbone
def test_stddev_schedules():
    assert stddev_at(0.2, 10**6) == 0.2
    assert stddev_at("linear(1.0,0.1,100)", 50) == pytest.approx(0.55)
    assert stddev_at("linear(1.0,0.1,100)", 500) == pytest.approx(0.1)
    assert stddev_at("step_linear(1.0,0.5,10,0.1,20)", 5) == pytest.approx(0.75)
    assert stddev_at("step_linear(1.0,0.5,10,0.1,20)", 20) == pytest.approx(0.3)
    with pytest.raises(ConfigError, match="stddev_schedule"):
        stddev_at("cosine(1, 2)", 0)


def test_truncated_sample_clips_noise_clamps_and_passes_gradients_straight_through():
    torch.manual_seed(0)
    mu = torch.full((20000, 1), 0.9, requires_grad=True)
    x = sample_truncated(mu, std=1.0, clip=0.3)
    assert x.max().item() <= 1 - 1e-6 + 1e-7 and x.min().item() >= 0.6 - 1e-6
    assert (x == 1 - 1e-6).float().mean().item() > 0.3  # everything past 1 is clamped
    x.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))
    unclipped = sample_truncated(torch.zeros(20000, 1), std=0.2)
    assert unclipped.std().item() == pytest.approx(0.2, rel=0.05)


def test_ddpg_networks_follow_urlb():
    algo = DDPG(OBS, ACT, hidden_dim=32)
    assert [type(m).__name__ for m in algo.actor.trunk] == ["Linear", "LayerNorm", "Tanh"]
    assert algo.actor.trunk[0].out_features == 32  # states: trunk width = hidden_dim
    assert algo.critic.trunk[0].in_features == 5 + 2
    weight = algo.critic.q1[0].weight
    torch.testing.assert_close(weight @ weight.T, torch.eye(32), atol=1e-5, rtol=0)  # orthogonal
    assert torch.count_nonzero(algo.critic.q1[0].bias) == 0


def test_ddpg_critic_target_and_ema_follow_the_equations():
    algo = DDPG(OBS, ACT, hidden_dim=16, tau=0.01)
    for p in algo.critic_target.parameters():  # make target != critic so the check means something
        p.data.add_(0.1 * torch.randn_like(p))
    batch = make_batch()
    before = copy.deepcopy(algo)
    torch.manual_seed(123)
    metrics = algo.update(batch).metrics
    torch.manual_seed(123)
    with torch.no_grad():
        mu_next = before.actor(batch.next_obs)
        next_action = (mu_next + (torch.randn_like(mu_next) * 0.2).clamp(-0.3, 0.3)).clamp(-1 + 1e-6, 1 - 1e-6)
        t1, t2 = before.critic_target(batch.next_obs, next_action)
        y = batch.reward + batch.discount * torch.min(t1, t2)  # R^(n) + gamma^n min Q_bar
        q1, q2 = before.critic(batch.obs, batch.action)
        expected = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
    torch.testing.assert_close(metrics["train/critic_loss"], expected)
    for new, old_target, target in zip(algo.critic.parameters(), before.critic_target.parameters(),
                                       algo.critic_target.parameters(), strict=True):
        torch.testing.assert_close(target, 0.99 * old_target + 0.01 * new)


@pytest.mark.parametrize("simultaneous", [False, True])
def test_update_order_urlb_vs_moss(simultaneous):
    """URLB steps the actor against the updated critic; MOSS (JAX) uses the pre-update critic, so its actor
    step is the one it would take if the critic did not move at all."""
    algo = DDPG(OBS, ACT, hidden_dim=16, lr=1e-2, simultaneous_update=simultaneous)
    frozen_critic = copy.deepcopy(algo)
    for group in frozen_critic.critic_opt.param_groups:
        group["lr"] = 0.0
    batch = make_batch()
    torch.manual_seed(5)
    algo.update(batch)
    torch.manual_seed(5)
    frozen_critic.update(batch)
    assert not same(params(algo.critic), params(frozen_critic.critic))
    assert same(params(algo.actor), params(frozen_critic.actor)) is simultaneous


def test_pixel_encoder_shapes_shift_and_gradients():
    obs_space = gym.spaces.Box(0, 255, (9, 84, 84), np.uint8)
    algo = DDPG(obs_space, ACT, obs_type="pixels", hidden_dim=32, feature_dim=8)
    assert algo.encoder.repr_dim == 32 * 35 * 35
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    torch.manual_seed(0)
    shifted = random_shift(images, pad=2)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
    for b in range(2):  # each image is a crop of its replicate-padded self
        crops = [padded[b, :, i:i + 6, j:j + 6] for i in range(5) for j in range(5)]
        assert any(torch.equal(shifted[b], c) for c in crops)
    g = torch.Generator().manual_seed(0)
    batch = Batch({"obs": torch.randint(0, 255, (4, 9, 84, 84), generator=g, dtype=torch.uint8),
                   "next_obs": torch.randint(0, 255, (4, 9, 84, 84), generator=g, dtype=torch.uint8),
                   "action": torch.rand(4, 2, generator=g) * 2 - 1, "reward": torch.rand(4, generator=g),
                   "discount": torch.full((4,), 0.97)})
    encoder_before = params(algo.encoder)
    algo.update(batch)
    assert not same(encoder_before, params(algo.encoder))  # trained through the critic loss
    action, _ = algo.act(batch.obs.numpy(), deterministic=True)
    assert action.shape == (4, 2)
    with pytest.raises(ConfigError, match="obs_type"):
        DDPG(OBS, ACT, obs_type="pixels")
    with pytest.raises(ConfigError, match="states-only"):
        CIC(obs_space, ACT, obs_type="pixels")


def test_ddpg_refuses_reward_free_pretraining():
    with pytest.raises(ConfigError, match="use an intrinsic-reward agent"):
        DDPG(OBS, ACT, **SMALL).setup_urlb(reward_free=True, seed_steps=0, episode_steps=1000)


# ----------------------------------------------------------------------------- reward-free pretraining
@pytest.mark.parametrize("cls", [CIC, MOSS])
def test_pretraining_never_reads_the_env_reward(cls):
    a = cls(OBS, ACT, skill_dim=4, knn_k=4, **SMALL)
    a.setup_urlb(reward_free=True, seed_steps=10, episode_steps=100)
    b = copy.deepcopy(a)
    batch = make_batch(skill_dim=4, mode=np.arange(32) % 2)
    other = Batch(dict(batch))
    other["reward"] = batch.reward * 100 + 7
    torch.manual_seed(0)
    a.update(batch)
    torch.manual_seed(0)
    b.update(other)
    for name in ("actor", "critic", "cic"):
        assert same(params(getattr(a, name)), params(getattr(b, name))), name
    # finetuning does learn from it
    a.setup_urlb(reward_free=False, seed_steps=10, episode_steps=100)
    b.setup_urlb(reward_free=False, seed_steps=10, episode_steps=100)
    torch.manual_seed(0)
    a.update(batch)
    torch.manual_seed(0)
    b.update(other)
    assert not same(params(a.critic), params(b.critic))


def test_cic_reward_is_the_knn_entropy_of_next_state_embeddings_after_the_cic_update():
    algo = CIC(OBS, ACT, skill_dim=4, knn_k=4, **SMALL)
    algo.setup_urlb(reward_free=True, seed_steps=0, episode_steps=100)
    batch = make_batch(skill_dim=4)
    stats = copy.deepcopy(algo.reward_stats)
    metrics = algo.update_representation(batch, batch.obs, batch.next_obs)  # the CIC step first
    reward = algo.intrinsic_reward(batch, batch.obs, batch.next_obs)
    embedding = algo.cic.state_net(batch.next_obs).detach()
    expected = particle_entropy_reward(embedding, embedding, stats, k=4)
    torch.testing.assert_close(reward, expected)
    assert "train/cic_loss" in metrics


# ----------------------------------------------------------------------------- MOSS
@pytest.mark.parametrize(("partitions", "length", "explore_steps"), [(2, 1000, 500), (1.5, 1000, 700), (1.5, 250, 200)])
def test_moss_mode_schedule_table(partitions, length, explore_steps):
    """MOSS's released code: the mode is re-evaluated every 50 steps, so the splits are coarse."""
    algo = MOSS(OBS, ACT, skill_dim=4, partitions=partitions, **SMALL)
    algo.setup_urlb(reward_free=True, seed_steps=0, episode_steps=length)
    rng = np.random.default_rng(0)
    modes = []
    for t in range(length):
        if t % algo.meta_interval == 0:
            meta = algo.init_meta(np.array([t]), t, rng)
        modes.append(int(meta["mode"][0]))
    assert modes == [0] * explore_steps + [1] * (length - explore_steps)
    np.testing.assert_array_equal(moss_mode(np.array([0, 499, 500, 999]), 1000, 2), [0, 0, 1, 1])


def test_moss_skill_modes():
    rng = np.random.default_rng(0)
    mode = np.array([0, 1, 0, 1])
    sign = moss_skill(mode, "sign", 6, rng)
    assert (sign[mode == 0] >= 0).all() and (sign[mode == 1] <= 0).all()
    half = moss_skill(mode, "half", 6, rng)
    assert (half[mode == 0, 3:] == 0).all() and (half[mode == 0, :3] > 0).all()
    assert (half[mode == 1, :3] == 0).all() and (half[mode == 1, 3:] > 0).all()
    np.testing.assert_array_equal(moss_skill(mode, "discrete", 3, rng), [[1] * 3, [-1] * 3, [1] * 3, [-1] * 3])
    assert (moss_skill(mode, "same", 6, rng) >= 0).all()
    odd = moss_skill(np.array([0, 1]), "half", 5, rng)  # int(5/2) = 2 zeros, 3 uniforms
    assert (odd[0, 3:] == 0).all() and (odd[1, :2] == 0).all()
    with pytest.raises(ConfigError, match="skill_mode"):
        MOSS(OBS, ACT, skill_mode="quarter")


def test_moss_reward_sign_flip_and_batch_ordering():
    mode = np.array([0, 1] * 16)
    algo = MOSS(OBS, ACT, skill_dim=4, knn_k=4, **SMALL)
    algo.setup_urlb(reward_free=True, seed_steps=0, episode_steps=100)
    batch = make_batch(skill_dim=4, mode=mode)
    fresh = copy.deepcopy(algo)
    reward = algo.intrinsic_reward(batch, batch.obs, batch.next_obs)
    entropy = fresh.entropy_reward(batch.obs, batch.next_obs)
    assert (entropy >= 0).all()
    torch.testing.assert_close(reward, torch.where(batch.mode > 0, -entropy, entropy))
    assert (reward[mode == 1] <= 0).all() and (reward[mode == 0] >= 0).all()
    # the reference's [mode 0 ; mode 1] reordering: every term is permutation-equivariant
    order = np.concatenate([np.flatnonzero(mode == 0), np.flatnonzero(mode == 1)])
    reordered = Batch({k: v[torch.as_tensor(order)] for k, v in batch.items()})
    again = copy.deepcopy(fresh).intrinsic_reward(reordered, reordered.obs, reordered.next_obs)
    torch.testing.assert_close(again, reward[torch.as_tensor(order)], rtol=1e-4, atol=1e-5)  # summation order
    torch.testing.assert_close(mixture_reward(torch.ones(2), torch.tensor([0.0, 1.0])), torch.tensor([1.0, -1.0]))


def test_moss_reward_uses_the_cic_parameters_from_before_the_update():
    algo = MOSS(OBS, ACT, skill_dim=4, knn_k=4, **SMALL)
    algo.setup_urlb(reward_free=True, seed_steps=0, episode_steps=100)
    batch = make_batch(skill_dim=4, mode=np.arange(32) % 2)
    before = copy.deepcopy(algo)
    metrics = algo.update(batch).metrics
    expected = copy.deepcopy(before).intrinsic_reward(batch, batch.obs, batch.next_obs)
    torch.testing.assert_close(metrics["train/intrinsic_reward"], expected.mean())
    later = copy.deepcopy(before)
    later.update_representation(batch, batch.obs, batch.next_obs)  # the post-update reward differs
    assert not torch.allclose(later.intrinsic_reward(batch, batch.obs, batch.next_obs), expected)
    assert not same(params(before.cic), params(algo.cic))


def feed_search(search: SkillSearch, reward_of, steps: int, rng) -> list[np.ndarray]:
    skills = []
    for step in range(steps):
        if step % search.interval == 0:
            skill = search.next_skill(step, rng)
        skills.append(skill)
        search.observe(np.array([reward_of(skill)]))
    return skills


def test_grid_search_keeps_the_best_candidate_but_never_scores_the_last():
    rng = np.random.default_rng(0)
    grid = np.linspace(-1.0, 0.0, 80)
    search = SkillSearch("grid_search", skill_dim=3, search_steps=4000)
    skills = feed_search(search, lambda z: -abs(z[0] + 0.3), 4000, rng)
    np.testing.assert_allclose([s[0] for s in skills[::50]], grid)  # candidate k for steps [50k, 50k + 50)
    best = grid[np.argmin(abs(grid + 0.3))]
    np.testing.assert_allclose(search.next_skill(4000, rng), np.full(3, best, np.float32))
    np.testing.assert_allclose(search.result(), np.full(3, best, np.float32))
    # quirk: the last candidate (c = 0) would win but is never compared
    last = SkillSearch("grid_search", skill_dim=3, search_steps=4000)
    feed_search(last, lambda z: z[0], 4000, rng)
    np.testing.assert_allclose(last.next_skill(4000, rng), np.full(3, grid[-2], np.float32))


def test_other_search_modes():
    rng = np.random.default_rng(0)
    band = SkillSearch("random_grid_search", skill_dim=4, search_steps=400)
    skills = feed_search(band, lambda z: 0.0, 400, rng)
    for k in range(8):  # candidate k is uniform in [k/8, (k+1)/8]
        assert (skills[50 * k] >= k / 8).all() and (skills[50 * k] <= (k + 1) / 8).all()
    for mode, value in (("constant", 0.5), ("explore", 1.0), ("control", -1.0)):
        fixed = SkillSearch(mode, skill_dim=2, search_steps=400)
        assert all((s == value).all() for s in feed_search(fixed, lambda z: 1.0, 400, rng))
    none = SkillSearch("grid_search", skill_dim=2, search_steps=0)
    np.testing.assert_array_equal(none.next_skill(0, rng), [0.5, 0.5])  # nothing scored: the constant skill


def test_moss_finetune_meta_and_warmup_actions():
    algo = MOSS(OBS, ACT, skill_dim=4, search_mode="grid_search", **SMALL)
    algo.setup_urlb(reward_free=False, seed_steps=200, episode_steps=1000)
    rng = np.random.default_rng(0)
    meta = algo.init_meta(np.array([0, 0]), 0, rng)
    np.testing.assert_array_equal(meta["skill"], -np.ones((2, 4), np.float32))  # first grid candidate
    np.testing.assert_array_equal(algo.eval_meta(2)["skill"], np.full((2, 4), 0.5, np.float32))
    obs = np.random.default_rng(1).standard_normal((2, 5)).astype(np.float32)
    np.testing.assert_array_equal(algo.warmup_actions(obs, meta), algo.act(obs, meta, deterministic=True)[0])
    algo.setup_urlb(reward_free=True, seed_steps=200, episode_steps=1000)
    assert algo.warmup_actions(obs, meta) is None  # pretraining: uniform random seed actions


# ----------------------------------------------------------------------------- finetune initialisation
@pytest.mark.parametrize("fresh_target", [True, False])
def test_init_from_snapshot_copies_actor_and_critic_trunk_only(fresh_target):
    torch.manual_seed(0)
    pretrained = MOSS(OBS, ACT, skill_dim=4, **SMALL)
    state = pretrained.state_dict()
    torch.manual_seed(1)
    agent = MOSS(OBS, ACT, skill_dim=4, target_from_fresh_critic=fresh_target, **SMALL)
    agent.init_from_snapshot(state)
    assert same(params(agent.actor), params(pretrained.actor))
    assert same(params(agent.critic.trunk), params(pretrained.critic.trunk))
    for head in ("q1", "q2"):
        assert not same(params(getattr(agent.critic, head)), params(getattr(pretrained.critic, head)))
    target_trunk_is_pretrained = same(params(agent.critic_target.trunk), params(pretrained.critic.trunk))
    assert target_trunk_is_pretrained is not fresh_target  # URLB quirk: the target keeps a random trunk
    assert agent.actor_opt.state_dict()["state"] == {}  # fresh optimizers


@pytest.mark.parametrize(("env", "expected"), [
    ("urlb-quadruped_run", dict(skill_dim=32, skill_mode="half", partitions=2.0, search_mode="grid_search")),
    ("urlb-jaco", dict(skill_dim=64, skill_mode="sign", partitions=1.5, search_mode="constant")),
])
def test_moss_per_domain_defaults_follow_the_released_configs_and_readme(env, expected):
    """MOSS's conf/ files (skill_dim 32, half, 2, grid_search) everywhere but jaco, whose README commands set
    skill_dim 64, sign, 1.5 and constant."""
    from rlkit.config import compose

    cfg = compose(["algo=moss", f"env={env}"])
    assert {key: cfg.algo[key] for key in expected} == expected
