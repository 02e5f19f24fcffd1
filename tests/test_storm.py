"""STORM (algorithms/world_models/storm.py): distribution heads, every loss term on closed-form cases,
the parameter counts of the released layer layout, KV-cached vs re-run imagination, acting context, a world-model
overfit, the configs, a reduced end-to-end Atari run, exact resume and (slow) a learning check on TinyCatch."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlkit import trainer
from rlkit.algorithms.world_models.storm import STORM
from rlkit.algorithms.world_models.storm_losses import (
    ReturnNormalizer,
    kl_balance,
    lambda_returns,
    percentile,
    reconstruction_loss,
)
from rlkit.algorithms.world_models.storm_nets import ActorCritic, WorldModel, WorldModelConfig
from rlkit.envs.tiny_pixels import TinyCatchEnv, random_policy_return
from rlkit.errors import ConfigError
from rlkit.nets.heads import (
    TwoHotSymlog,
    categorical_kl,
    full_precision,
    sample_categorical,
    straight_through_sample,
    symexp,
    symlog,
    unimix_logits,
)
from tests.helpers import at_step, interrupt, metric_records

# A structurally complete but small STORM (two conv layers on 16x16 frames, 8x8 latent, 64-wide
# 2-layer transformer): the reduced size of the CI runs.
SMALL = dict(encoder_channels=[16, 32], latent_vars=8, latent_classes=8,
             transformer=dict(d_model=64, n_heads=4, d_ff=128, max_len=32), head_hidden=64, agent_hidden=64,
             wm_batch_size=4, wm_seq_len=16, imagine_batch_size=32, imagine_context=4, imagine_horizon=8,
             act_context=8)
SMALL_OVERRIDES = [
    "algo.encoder_channels=[16,32]", "algo.latent_vars=8", "algo.latent_classes=8",
    "algo.transformer.d_model=64", "algo.transformer.n_heads=4", "algo.transformer.d_ff=128",
    "algo.transformer.max_len=32", "algo.head_hidden=64", "algo.agent_hidden=64",
]


def tiny_spaces(size: int = 16, actions: int = 3):
    return gym.spaces.Box(0, 255, (size, size, 3), np.uint8), gym.spaces.Discrete(actions)


def small_storm(**overrides) -> STORM:
    torch.manual_seed(0)
    return STORM(*tiny_spaces(), **{**SMALL, **overrides})


def random_sequences(algo: STORM, n: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    h, w, c = algo.wm_cfg.obs_shape
    return {
        "obs": torch.randint(0, 256, (n, length, h, w, c), dtype=torch.uint8, generator=g),
        "action": torch.randint(0, algo.wm_cfg.action_dim, (n, length), generator=g),
        "reward": torch.randn(n, length, generator=g),
        "terminated": (torch.rand(n, length, generator=g) < 0.1).float(),
        "life_loss": (torch.rand(n, length, generator=g) < 0.1).float(),
    }


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- distribution heads
def test_symlog_symexp_are_inverse_and_odd():
    x = torch.tensor([-1e4, -3.0, -1e-3, 0.0, 1e-3, 2.5, 1e5], dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(x)), x)
    torch.testing.assert_close(symlog(torch.tensor([np.e - 1.0])), torch.tensor([1.0]))
    torch.testing.assert_close(symlog(-x), -symlog(x))


def test_two_hot_encode_decode_round_trip_and_clipping():
    th = TwoHotSymlog(255, -20.0, 20.0)
    y = torch.tensor([-300.0, -1.0, 0.0, 0.37, 5.0, 1234.5])
    probs = th.encode(y)
    assert probs.shape == (6, 255)
    torch.testing.assert_close(probs.sum(-1), torch.ones(6))
    assert ((probs > 0).sum(-1) <= 2).all()
    # two-hot expectation in symlog space is symlog(y); decode(log twohot) = symexp(E[bins]) = y
    torch.testing.assert_close(probs @ th.bins, symlog(y), atol=1e-5, rtol=0)
    torch.testing.assert_close(th.decode(torch.log(probs + 1e-30)), y, rtol=1e-4, atol=1e-4)
    # outside the range: clipped to the end bins
    big = th.encode(torch.tensor([1e12, -1e12]))
    assert big[0, -1] == 1.0 and big[1, 0] == 1.0


def test_two_hot_loss_is_cross_entropy_against_the_encoding():
    th = TwoHotSymlog(11, -5.0, 5.0)
    logits = torch.randn(4, 3, 11)
    y = torch.randn(4, 3) * 10
    expected = -(th.encode(y) * F.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(th.loss(logits, y), expected)
    # uniform logits: CE = log(K) for any target
    torch.testing.assert_close(th.loss(torch.zeros(5, 11), torch.randn(5)), torch.full((5,), np.log(11.0)))


def test_unimix_floor_and_normalisation():
    logits = torch.tensor([[50.0, 0.0, -50.0, 0.0]])
    probs = unimix_logits(logits, 0.01).exp()
    torch.testing.assert_close(probs.sum(-1), torch.ones(1))
    assert probs.min() >= 0.01 / 4 - 1e-7
    torch.testing.assert_close(probs[0, 0], torch.tensor(0.99 + 0.0025), atol=1e-6, rtol=0)
    torch.testing.assert_close(unimix_logits(logits, 0.0), F.log_softmax(logits, -1))


def test_straight_through_sample_value_gradient_and_frequencies():
    torch.manual_seed(0)
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0], requires_grad=True)
    weights = torch.tensor([0.3, -1.0, 2.0, 0.5])
    z = straight_through_sample(logits.expand(5, 4))
    onehot = z.detach().round()
    torch.testing.assert_close(z.detach(), onehot)  # one-hot up to the float error of +p - sg(p)
    assert torch.equal(onehot.sum(-1), torch.ones(5)) and set(onehot.unique().tolist()) <= {0.0, 1.0}
    (z * weights).sum().backward()
    ref = logits.detach().clone().requires_grad_(True)
    (F.softmax(ref, -1).expand(5, 4) * weights).sum().backward()
    torch.testing.assert_close(logits.grad, ref.grad)
    # Gumbel-max draws match the softmax probabilities (200k draws: 4-sigma band)
    draws = sample_categorical(logits.detach().expand(200_000, 4))
    freq = torch.bincount(draws, minlength=4).float() / 200_000
    p = F.softmax(logits.detach(), -1)
    assert (freq - p).abs().max() < 4 * torch.sqrt(p * (1 - p) / 200_000).max()


def test_categorical_kl_matches_torch_distributions():
    q, p = torch.randn(6, 5, 7), torch.randn(6, 5, 7)
    expected = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=q),
                                                 torch.distributions.Categorical(logits=p))
    torch.testing.assert_close(categorical_kl(q, p), expected)
    assert categorical_kl(q, q).abs().max() < 1e-6


# --------------------------------------------------------------------------- loss terms
def test_reconstruction_loss_sums_pixels_and_averages_frames():
    obs = torch.zeros(2, 3, 3, 4, 4)
    obs_hat = torch.full((2, 3, 3, 4, 4), 0.5)
    torch.testing.assert_close(reconstruction_loss(obs_hat, obs), torch.tensor(0.25 * 48))


def test_kl_balance_free_bits_gradient_routing_and_modes():
    torch.manual_seed(0)
    post = (torch.randn(2, 5, 3, 4) * 3).requires_grad_(True)
    prior = (torch.randn(2, 5, 3, 4) * 3).requires_grad_(True)
    dyn, rep, kl = kl_balance(post, prior, free_bits=0.0)
    manual = categorical_kl(post[:, 1:], prior[:, :-1]).sum(-1).mean()
    torch.testing.assert_close(kl, manual.detach())
    torch.testing.assert_close(dyn, manual)
    # dyn trains only the prior (and not its last step), rep only the posterior (and not its first step)
    g_post, g_prior = torch.autograd.grad(dyn, (post, prior), allow_unused=True)
    assert g_post is None and g_prior[:, :-1].abs().sum() > 0 and g_prior[:, -1].abs().sum() == 0
    g_post, g_prior = torch.autograd.grad(rep, (post, prior), allow_unused=True)
    assert g_prior is None and g_post[:, 1:].abs().sum() > 0 and g_post[:, 0].abs().sum() == 0
    # free bits above the KL: constant loss, no gradient
    dyn, rep, _ = kl_balance(post, prior, free_bits=float(kl) + 1.0)
    assert dyn.item() == rep.item() == pytest.approx(float(kl) + 1.0)
    assert not dyn.requires_grad or torch.autograd.grad(dyn, prior)[0].abs().sum() == 0
    # batch-mean clip vs per-step clip (DreamerV3) differ when steps straddle the threshold
    per_step = categorical_kl(post[:, 1:], prior[:, :-1]).sum(-1).detach()
    threshold = float(per_step.median())
    d_batch, _, _ = kl_balance(post, prior, threshold, "batch_mean")
    d_step, _, _ = kl_balance(post, prior, threshold, "per_step")
    torch.testing.assert_close(d_batch.detach(), per_step.mean().clamp(min=threshold))
    torch.testing.assert_close(d_step.detach(), per_step.clamp(min=threshold).mean())
    assert d_step > d_batch
    with pytest.raises(ValueError):
        kl_balance(post, prior, 1.0, "per_token")


def naive_lambda_returns(r, v, c, gamma, lam, bootstrap):
    B, L = r.shape
    out = np.zeros((B, L))
    for b in range(B):
        g = v[b, L]
        for t in reversed(range(L)):
            mix = v[b, t] if bootstrap == "t" else v[b, t + 1]
            g = r[b, t] + gamma * c[b, t] * ((1 - lam) * mix + lam * g)
            out[b, t] = g
    return out


@pytest.mark.parametrize("bootstrap", ["t", "t+1"])
def test_lambda_returns_match_the_recursion(bootstrap):
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=(3, 6)), rng.normal(size=(3, 7))
    c = (rng.random((3, 6)) > 0.2).astype(np.float64)
    got = lambda_returns(torch.tensor(r), torch.tensor(v), torch.tensor(c), 0.9, 0.7, bootstrap)
    np.testing.assert_allclose(got.numpy(), naive_lambda_returns(r, v, c, 0.9, 0.7, bootstrap), rtol=1e-12)


def test_lambda_returns_closed_forms():
    r = torch.tensor([[1.0, 2.0, 3.0]])
    v = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    ones = torch.ones(1, 3)
    # lambda = 1: discounted reward sum bootstrapped from V(s_L)
    torch.testing.assert_close(lambda_returns(r, v, ones, 0.5, 1.0),
                               torch.tensor([[1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 40, 2 + 0.5 * 3 + 0.25 * 40,
                                              3 + 0.5 * 40]]))
    # lambda = 0: one-step targets with V(s_{t+1}) ("t+1") or STORM's V(s_t) ("t")
    torch.testing.assert_close(lambda_returns(r, v, ones, 0.5, 0.0, "t+1"), r + 0.5 * v[:, 1:])
    torch.testing.assert_close(lambda_returns(r, v, ones, 0.5, 0.0, "t"), r + 0.5 * v[:, :-1])
    # a termination cuts the bootstrap
    cont = torch.tensor([[1.0, 0.0, 1.0]])
    torch.testing.assert_close(lambda_returns(r, v, cont, 0.5, 1.0)[0, :2], torch.tensor([1 + 0.5 * 2, 2.0]))


def test_percentile_is_the_floor_order_statistic():
    x = torch.randperm(200).float()
    assert percentile(x, 0.05).item() == 9.0   # k = 10 (1-based) -> value 9
    assert percentile(x, 0.95).item() == 189.0
    assert percentile(torch.tensor([3.0]), 0.05).item() == 3.0


def test_return_normalizer_ema_from_zero_and_debias():
    returns = torch.arange(100).float()  # P5 = 4, P95 = 94
    norm, ema = ReturnNormalizer(0.99, 0.05, 0.95, 1.0), torch.zeros(3)
    scale = norm.update(returns, ema)
    torch.testing.assert_close(ema[:2], torch.tensor([0.04, 0.94]))
    assert scale.item() == 1.0  # 0.9 < floor
    for _ in range(2000):
        scale = norm.update(returns, ema)
    assert scale.item() == pytest.approx(90.0, rel=1e-3)
    debiased, ema = ReturnNormalizer(0.99, 0.05, 0.95, 1.0, debias=True), torch.zeros(3)
    assert debiased.update(returns, ema).item() == pytest.approx(90.0, rel=1e-5)


# --------------------------------------------------------------------------- networks
def test_parameter_counts_match_the_spec_table():
    wm = WorldModel(WorldModelConfig(action_dim=18))
    assert n_params(wm.encoder) == 690_624
    assert n_params(wm.posterior_head) == 4_195_328
    assert n_params(wm.prior_head) == 525_312
    assert n_params(wm.decoder) == 4_884_931
    assert n_params(wm.stem) + n_params(wm.transformer) == 5_032_960
    assert n_params(wm.reward_head) == 657_151
    assert n_params(wm.termination_head) == 526_849
    assert n_params(wm) == 16_513_155  # "~16.51 M"
    assert n_params(WorldModel(WorldModelConfig(action_dim=19)).stem) - n_params(wm.stem) == 512
    ac = ActorCritic(1536, 18)
    assert n_params(ac.actor) == 1_059_858
    assert n_params(ac.critic) == 1_181_439


def test_paper_size_shapes():
    torch.manual_seed(0)
    wm = WorldModel(WorldModelConfig(action_dim=6)).eval()
    obs = torch.randint(0, 256, (1, 3, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        post = wm.posterior_logits(obs)
        z = wm.sample(post)
        h = wm.sequence(z, torch.zeros(1, 3, dtype=torch.long))
        assert post.shape == (1, 3, 32, 32) and z.shape == (1, 3, 1024) and h.shape == (1, 3, 512)
        assert wm.decode(z).shape == (1, 3, 3, 64, 64)
        assert wm.prior_logits(h).shape == (1, 3, 32, 32)
        assert wm.reward_logits(h).shape == (1, 3, 255) and wm.termination_logit(h).shape == (1, 3)


@pytest.mark.parametrize("variant", [{}, {"transformer": {**SMALL["transformer"], "norm": "siamese",
                                                            "attention": "slide", "window": 3},
                                          "encoder_attention": "slide", "encoder_attention_stage": 0}],
                         ids=["paper", "siamese-slide"])
def test_imagination_shapes_and_kv_cache_equals_rerunning_the_context(variant):
    """The cached imagination (KV cache, or slide's ring buffer with window 3 < 12 positions) equals
    re-running the context at every step; also with SiameseNorm and a slide block in the encoder."""
    algo = small_storm(**variant)
    seq = random_sequences(algo, 6, 4)
    torch.manual_seed(1)
    cached = algo.imagine(seq["obs"], seq["action"], use_cache=True)
    torch.manual_seed(1)
    rerun = algo.imagine(seq["obs"], seq["action"], use_cache=False)
    states, actions, rewards, cont = cached
    assert states.shape == (6, 9, 64 + 64) and actions.shape == rewards.shape == cont.shape == (6, 8)
    assert set(cont.unique().tolist()) <= {0.0, 1.0}
    for a, b in zip(cached, rerun):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # the first state's h is the context's last output; its z a prior sample (one-hot per variable)
    z0 = states[:, 0, :64].view(6, 8, 8)
    torch.testing.assert_close(z0.sum(-1), torch.ones(6, 8))
    # soft termination (hard_termination=False): continuation = sigmoid(-logit), strictly inside (0, 1)
    algo.hard_termination = False
    soft = algo.imagine(seq["obs"], seq["action"])[3]
    assert ((soft > 0) & (soft < 1)).all()


# --------------------------------------------------------------------------- losses of the algorithm
def test_world_model_losses_on_tiny_inputs():
    algo = small_storm()
    batch = random_sequences(algo, 2, 5)
    algo.world_model.eval()  # no dropout: recompute the heads' terms by hand with the same samples
    torch.manual_seed(3)
    losses = algo.world_model_losses(batch)
    w = algo.loss_weights
    total = (losses["reconstruction"] + losses["reward"] + losses["termination"]
             + w["dynamics"] * losses["dynamics"] + w["representation"] * losses["representation"])
    torch.testing.assert_close(losses["loss"], total)
    assert losses["dynamics"] >= 1.0 and losses["representation"] >= 1.0
    torch.manual_seed(3)
    wm = algo.world_model
    z = wm.sample(wm.posterior_logits(batch["obs"]))
    h = wm.sequence(z, batch["action"])
    done = torch.maximum(batch["terminated"], batch["life_loss"])  # life loss counts as termination
    torch.testing.assert_close(losses["termination"],
                               F.binary_cross_entropy_with_logits(wm.termination_logit(h), done))
    torch.testing.assert_close(losses["reward"], wm.two_hot.loss(wm.reward_logits(h), batch["reward"]).mean())
    target = batch["obs"].permute(0, 1, 4, 2, 3).float() / 255
    torch.testing.assert_close(losses["reconstruction"], ((wm.decode(z) - target) ** 2).sum((2, 3, 4)).mean())


def test_agent_losses_with_a_uniform_actor_and_flat_critic():
    algo = small_storm()
    ac = algo.actor_critic
    with torch.no_grad():
        for net in (ac.actor, ac.critic):
            net[-1].weight.zero_()
            net[-1].bias.zero_()
        algo.slow_critic.load_state_dict(ac.critic.state_dict())
    B, L, A = 8, 4, 3
    states = torch.randn(B, L + 1, algo.wm_cfg.state_dim)
    actions = torch.randint(0, A, (B, L))
    rewards = torch.randn(B, L)
    cont = torch.ones(B, L)
    losses = algo.agent_losses(states, actions, rewards, cont)
    # V = symexp(mean of bins) = 0 for flat logits; lambda-returns are then pure reward sums
    returns = lambda_returns(rewards, torch.zeros(B, L + 1), cont, algo.gamma, algo.lam, "t")
    torch.testing.assert_close(losses["entropy"], torch.tensor(np.log(A), dtype=torch.float32))
    scale = max(1.0, 0.01 * float(percentile(returns, 0.95) - percentile(returns, 0.05)))
    torch.testing.assert_close(losses["policy"], np.log(A) * returns.mean() / scale, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses["value"], torch.tensor(np.log(255.0), dtype=torch.float32))
    torch.testing.assert_close(losses["slow_value_reg"], losses["value"])
    expected = losses["policy"] + 2 * losses["value"] - algo.entropy_coef * losses["entropy"]
    torch.testing.assert_close(losses["loss"], expected)


def test_agent_update_moves_the_policy_towards_positive_advantage_and_tracks_slow_critic():
    algo = small_storm(ac_lr=1e-3)
    B, L = 64, 4
    states = torch.randn(B, L + 1, algo.wm_cfg.state_dim)
    actions = torch.zeros(B, L, dtype=torch.long)
    before = F.log_softmax(algo.actor_critic.actor(states[:, :-1]), -1)[..., 0].mean()
    slow_before = [p.clone() for p in algo.slow_critic.parameters()]
    for _ in range(5):
        losses = algo.agent_losses(states, actions, torch.ones(B, L), torch.ones(B, L))
        algo.ac_opt.zero_grad()
        losses["loss"].backward()
        algo.ac_opt.step()
    after = F.log_softmax(algo.actor_critic.actor(states[:, :-1]), -1)[..., 0].mean()
    assert after > before  # action 0 earned returns above the (zero) value baseline
    metrics = algo.update_agent(random_sequences(algo, 16, 4))
    for slow, old, new in zip(algo.slow_critic.parameters(), slow_before, algo.actor_critic.critic.parameters()):
        torch.testing.assert_close(slow, 0.98 * old + 0.02 * new.detach())
        break
    assert all(torch.isfinite(v).all() for v in metrics.values())


def test_world_model_overfits_a_fixed_sequence():
    """The whole world model (VAE, transformer, heads) fits one short fixed batch: loss falls >10x."""
    algo = small_storm(wm_lr=2e-3)
    env = TinyCatchEnv()
    obs, _ = env.reset(seed=0)
    frames, actions, rewards, terms = [], [], [], []
    rng = np.random.default_rng(0)
    for _ in range(16):
        a = int(rng.integers(3))
        frames.append(obs)
        obs, r, term, _, _ = env.step(a)
        actions.append(a)
        rewards.append(r)
        terms.append(float(term))
        if term:
            obs, _ = env.reset()
    batch = {"obs": torch.as_tensor(np.stack(frames))[None].repeat(2, 1, 1, 1, 1),
             "action": torch.tensor(actions)[None].repeat(2, 1), "reward": torch.tensor(rewards)[None].repeat(2, 1),
             "terminated": torch.tensor(terms)[None].repeat(2, 1), "life_loss": torch.zeros(2, 16)}
    first = algo.update_world_model(batch)
    for _ in range(150):
        last = algo.update_world_model(batch)
    assert last["wm/reconstruction"] < first["wm/reconstruction"] / 10
    assert last["wm/loss"] < first["wm/loss"] / 10
    assert last["wm/reward"] < first["wm/reward"] / 5


def test_bf16_autocast_update_runs():
    algo = small_storm(precision="bf16")
    assert algo.use_bf16
    metrics = algo.update({"wm": random_sequences(algo, 2, 8), "ctx": random_sequences(algo, 8, 4)}).metrics
    assert all(torch.isfinite(v).all() for v in metrics.values())


def test_a_float64_model_computes_in_float64():
    """bf16 autocast outputs are promoted to float32 for the losses, but a float64 model (the fidelity checks
    against the authors' code) keeps every loss, imagined tensor and return in float64."""
    assert full_precision(torch.ones(2, dtype=torch.bfloat16)).dtype == torch.float32
    assert full_precision(torch.ones(2, dtype=torch.uint8)).dtype == torch.float32
    assert full_precision(torch.ones(2, dtype=torch.float64)).dtype == torch.float64
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        algo = small_storm(precision="fp32")
        batch = random_sequences(algo, 2, 8)
        batch["reward"] = batch["reward"].double()
        losses = algo.world_model_losses(batch)
        ctx = random_sequences(algo, 8, 4)
        imagined = algo.imagine(ctx["obs"], ctx["action"])
        agent = algo.agent_losses(*imagined)
    finally:
        torch.set_default_dtype(before)
    assert all(v.dtype == torch.float64 for v in losses.values())
    assert [t.dtype for t in imagined] == [torch.float64, torch.long, torch.float64, torch.float64]
    assert all(v.dtype == torch.float64 for v in agent.values())


# --------------------------------------------------------------------------- acting
def test_act_context_grows_slides_and_resets():
    algo = small_storm(act_context=3)
    obs = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    action, state = algo.act(obs)
    assert action.shape == (2,) and state["length"].tolist() == [1, 1]
    for _ in range(4):
        action, state = algo.act(obs, state)
    assert state["length"].tolist() == [3, 3] and state["obs"].shape == (2, 3, 16, 16, 3)
    assert torch.equal(state["action"][:, -1], torch.as_tensor(action))
    assert algo.reset_state(state, np.array([True, False])) is state  # STORM's code: never reset by default
    algo.reset_context_on_episode_end = True
    state = algo.reset_state(state, np.array([True, False]))
    assert state["length"].tolist() == [0, 3]
    action, state = algo.act(obs, state)  # mixed context lengths are handled group by group
    assert state["length"].tolist() == [1, 3]
    torch.manual_seed(5)
    greedy = algo.act(obs, state, deterministic=True)[0]
    torch.manual_seed(6)
    assert np.array_equal(greedy[1:], algo.act(obs, state, deterministic=True)[0][1:])
    algo.act_on_posterior = True  # STORM's acting quirk off: the current frame's posterior sample instead of the prior
    action, state = algo.act(obs, state)
    assert action.shape == (2,) and state["length"].tolist() == [2, 3]


def test_bad_inputs_raise_config_errors():
    obs_space, act_space = tiny_spaces()
    with pytest.raises(ConfigError, match="discrete"):
        STORM(obs_space, gym.spaces.Box(-1, 1, (2,)), **SMALL)
    with pytest.raises(ConfigError, match="uint8 image"):
        STORM(gym.spaces.Box(-1, 1, (8,)), act_space, **SMALL)
    with pytest.raises(ConfigError, match="divisible"):
        STORM(gym.spaces.Box(0, 255, (18, 18, 3), np.uint8), act_space, **SMALL)
    with pytest.raises(ConfigError, match="max_len"):
        STORM(obs_space, act_space, **{**SMALL, "imagine_horizon": 40})
    with pytest.raises(ConfigError, match="transformer"):
        STORM(obs_space, act_space, **{**SMALL, "transformer": {"width": 3}})
    with pytest.raises(ConfigError, match="lambda_bootstrap"):
        STORM(obs_space, act_space, **{**SMALL, "lambda_bootstrap": "t+2"})
    with pytest.raises(ConfigError, match="encoder_attention='swin'"):
        STORM(obs_space, act_space, **{**SMALL, "encoder_attention": "swin"})
    with pytest.raises(ConfigError, match="encoder_attention_stage=2 must name one of the 2 encoder stages"):
        STORM(obs_space, act_space, **{**SMALL, "encoder_attention": "slide", "encoder_attention_stage": 2})
    with pytest.raises(ConfigError, match="encoder_slide_form='swin'"):
        STORM(obs_space, act_space, **{**SMALL, "encoder_attention": "slide", "encoder_slide_form": "swin"})
    with pytest.raises(ConfigError, match="window=40 is invalid; it exceeds the cache capacity 32"):
        STORM(obs_space, act_space, **{**SMALL, "transformer": {**SMALL["transformer"], "attention": "slide",
                                                                "window": 40}})


# --------------------------------------------------------------------------- TinyCatch
def test_tiny_catch_rules_and_random_baseline():
    env = TinyCatchEnv()
    obs, info = env.reset(seed=3)
    assert obs.shape == (16, 16, 3) and obs.dtype == np.uint8 and info["life_loss"] is False
    ball = env.ball_col
    assert obs[0:2, 2 * ball:2 * ball + 2].tolist() == [[[255, 255, 255]] * 2] * 2
    total, steps, done = 0.0, 0, False
    while not done:  # a perfect tracker always catches
        a = 0 if env.paddle_col == env.ball_col else (1 if env.paddle_col > env.ball_col else 2)
        obs, r, done, trunc, _ = env.step(a)
        total, steps = total + r, steps + 1
    assert (total, steps) == (1.0, 7)
    rng = np.random.default_rng(0)
    returns = []
    for _ in range(4000):
        env.reset()
        done = False
        while not done:
            _, r, done, _, _ = env.step(int(rng.integers(3)))
        returns.append(r)
    expected = random_policy_return()
    assert expected == -0.75
    assert abs(np.mean(returns) - expected) < 4 * np.std(returns) / np.sqrt(len(returns))


# --------------------------------------------------------------------------- configs and runs
def test_paper_config_composes_with_every_atari100k_env(compose_cfg):
    from rlkit.envs.atari import ATARI100K_GAMES

    cfg = compose_cfg("algo=storm", "env=atari100k-pong")
    a = cfg.algo
    assert (a.wm_batch_size, a.wm_seq_len, a.imagine_batch_size, a.imagine_context, a.imagine_horizon) == \
        (16, 64, 1024, 8, 16)
    assert (a.gamma, a.lam, a.entropy_coef, a.wm_lr, a.ac_lr, a.ac_eps) == (0.985, 0.95, 3e-4, 1e-4, 3e-5, 1e-5)
    assert (a.transformer.d_model, a.transformer.n_layers, a.transformer.n_heads, a.transformer.d_ff) == \
        (512, 2, 8, 1024)
    assert (cfg.train.steps, cfg.train.warmup_steps, cfg.train.updates_per_step, cfg.train.num_envs) == \
        (100_000, 1024, 1.0, 1)
    assert (cfg.eval.episodes, cfg.eval.num_envs, cfg.eval.deterministic) == (20, 5, False)
    for game in ATARI100K_GAMES:
        cfg = compose_cfg("algo=storm", f"env=atari100k-{game}")
        assert cfg.env.id == f"atari100k-{game}" and cfg.env.score.table == "atari"
        assert cfg.train.steps == 100_000


def test_paper_settings_start_training_on_pong(compose_cfg, tmp_path):
    """`rlkit train algo=storm env=atari100k-pong` at paper settings: the buffer, samplers and the
    full-size networks are built and one world-model + agent update runs on a real replay batch (2 of the
    16 world-model sequences and 16 of the 1024 imagination contexts, to keep CPU time to seconds; the
    full batch is timed by bench/storm.py)."""
    from rlkit.regimes.online import OnlineRegime

    cfg = compose_cfg("algo=storm", "env=atari100k-pong", "device=cpu", f"run_dir={tmp_path}",
                      "algo.wm_batch_size=2", "algo.imagine_batch_size=16")
    regime = OnlineRegime(cfg, tmp_path)
    regime.setup()
    try:
        assert regime.buffer.storage.capacity == 100_000 and regime.algo.wm_cfg.action_dim == 6
        regime.warmup = 70  # shortened warm-up: the first update needs one 64-step window
        for _ in range(71):
            metrics = regime.train_step()
            regime.step += 1
        assert regime.updates_done == 1 and np.isfinite(metrics["wm/loss"].item())
    finally:
        regime.close()


def test_reduced_end_to_end_atari_run(compose_cfg, tmp_path):
    """A reduced STORM (small networks and batches, 0.1 updates per env step) runs the Atari 100k protocol
    for 2,000 env steps (1,024 of warm-up), then evaluates and reports raw and human-normalized scores."""
    cfg = compose_cfg(
        "algo=storm", "env=atari100k-pong", *SMALL_OVERRIDES, "algo.encoder_channels=[8,16,32,32]",
        "algo.wm_batch_size=2", "algo.wm_seq_len=16", "algo.imagine_batch_size=32", "algo.imagine_context=4",
        "algo.imagine_horizon=8", "algo.act_context=4", "train.steps=2000", "train.warmup_steps=1024",
        "train.updates_per_step=0.1", "train.buffer_capacity=2000", "train.log_interval=500",
        "eval.episodes=1", "eval.num_envs=1", "checkpoint.interval=0", "device=cpu", f"run_dir={tmp_path}")
    summary = trainer.run(cfg)
    assert summary["finished"] and summary["steps"] == 2000
    hns = (summary["final_return"] + 20.7) / (14.6 + 20.7)
    assert summary["final_normalized_score"] == pytest.approx(hns)
    # the reference's evaluation and env seeding, labelled with the score
    assert summary["eval_protocol"] == "atari100k-storm; first 1 finished over 1 envs; sampled policy"
    assert cfg.env.kwargs.reseed_every_reset is True
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    updates = [r for r in logged if "wm/loss" in r and "agent/policy" in r]
    assert updates and all(np.isfinite(r["wm/loss"]) for r in updates)
    from rlkit.evaluation.report import build_report

    report = build_report([str(tmp_path)], reps=50)  # `rlkit report`: per-game and mean/median/IQM HNS
    assert "| storm | atari100k-pong |" in report and "| storm | 1 | 1 |" in report


TINY_CATCH = ["algo=storm", "env=tiny-catch", *SMALL_OVERRIDES, "algo.wm_batch_size=8", "algo.wm_seq_len=32",
              "algo.imagine_context=4", "algo.act_context=8", "device=cpu", "train.buffer_capacity=20000",
              "checkpoint.interval=0"]


def test_resume_is_exact(compose_cfg, tmp_path):
    """Interrupted and resumed, a STORM run (acting context, return EMAs, slow critic, sequence samplers)
    logs exactly what the uninterrupted run logs."""
    from rlkit.regimes.online import OnlineRegime

    overrides = [*TINY_CATCH, "algo.imagine_batch_size=16", "algo.imagine_horizon=4", "algo.wm_seq_len=16",
                 "train.steps=140", "train.warmup_steps=100", "train.log_interval=20", "eval.interval=70",
                 "eval.episodes=2", "eval.num_envs=2", "algo.reset_context_on_episode_end=true"]
    full = trainer.run(compose_cfg(*overrides, f"run_dir={tmp_path / 'full'}"))
    with at_step(OnlineRegime, 117, interrupt), pytest.raises(KeyboardInterrupt):
        trainer.run(compose_cfg(*overrides, f"run_dir={tmp_path / 'cut'}"))
    resumed = trainer.run(compose_cfg(*overrides, f"run_dir={tmp_path / 'cut'}", "resume=true"))
    assert metric_records(tmp_path / "full") == metric_records(tmp_path / "cut")
    assert full["final_returns"] == resumed["final_returns"]


@pytest.mark.slow
def test_storm_learns_tiny_catch(compose_cfg, tmp_path):
    """Learning check (about 4-5 min on one CPU core): a small STORM, 4,000 env steps (500 random, then
    0.5 updates per step), catches the ball in most of 50 evaluation episodes, far above the ball-blind
    baseline of -0.75 (catch rate 1/8). Reference run (seed 0): eval return -0.68 at 2,000 steps, 0.0 at
    3,500, 0.44 at 4,000; the world model resolves the ball after about 750 updates."""
    cfg = compose_cfg(*TINY_CATCH, "algo.wm_lr=3e-3", "algo.ac_lr=3e-4", "algo.imagine_batch_size=128",
                      "algo.imagine_horizon=8", "train.updates_per_step=0.5", "train.warmup_steps=500",
                      "train.steps=4000", "eval.interval=1000", "eval.episodes=50", f"run_dir={tmp_path}")
    summary = trainer.run(cfg)
    assert summary["final_return"] > random_policy_return() + 0.75, summary["final_returns"]
