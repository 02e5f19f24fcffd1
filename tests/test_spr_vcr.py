"""SPR and VCR: augmentations, C51 n-step targets, K-step windows, the value-consistency loss and its
gradients, the SPR protocol on atari100k-<game>, and small end-to-end updates."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit import envs
from rlkit.algorithms.world_models.spr import SPR
from rlkit.algorithms.world_models.vcr import VCR, VCRDiscrete
from rlkit.algorithms.world_models.vcr_losses import action_value_consistency, atom_consistency
from rlkit.errors import ConfigError, EnvError
from rlkit.nets import Augment, categorical_projection, intensity, random_shift, renormalize
from rlkit.replay import ColumnarStorage, PrioritizedSampler, ReplayBuffer, transition_columns, window_rows

OBS = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
ACTIONS = gym.spaces.Discrete(3)
SMALL = {"batch_size": 4, "prediction_depth": 2, "nstep": 3}


# --- augmentations -------------------------------------------------------------------------------------


def test_random_shift_is_a_replicate_padded_crop():
    x = torch.rand(6, 2, 10, 10)
    out = random_shift(x, pad=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    for i in range(6):  # every sample is one of the 25 crops of its padded image
        assert any(torch.equal(out[i], padded[i, :, dy:dy + 10, dx:dx + 10]) for dy in range(5) for dx in range(5))
    assert torch.equal(random_shift(x, pad=0), x)


def test_intensity_scales_each_sample_within_two_sigma():
    x = torch.ones(500, 1, 2, 2)
    out = intensity(x, scale=0.05, generator=torch.Generator().manual_seed(0))
    per_sample = out[:, 0, 0, 0]
    assert torch.all(out == per_sample[:, None, None, None])
    assert per_sample.min() >= 0.9 - 1e-6 and per_sample.max() <= 1.1 + 1e-6
    assert per_sample.std() == pytest.approx(0.05, rel=0.2)


def test_augment_is_deterministic_under_a_seed_and_keeps_shapes():
    x = torch.rand(3, 5, 4, 84, 84)
    a, b, c = Augment(seed=1), Augment(seed=1), Augment(seed=2)
    out = a(x)
    assert out.shape == x.shape
    assert torch.equal(out, b(x)) and not torch.equal(out, c(x))
    state = a.state_dict()
    first = a(x)
    a.load_state_dict(state)
    assert torch.equal(a(x), first)
    with pytest.raises(ConfigError, match="unknown augmentation"):
        Augment(["flip"])


# --- C51 targets and windows ---------------------------------------------------------------------------


def test_categorical_projection_hand_computed():
    support = torch.linspace(-2.0, 2.0, 5)  # atoms -2 -1 0 1 2, spacing 1
    probs = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0], [0.2, 0.2, 0.2, 0.2, 0.2]])
    # row 0: all mass at z=0 -> R + G*0 = 0.5 -> half on 0, half on 1
    # row 1: R = 1, G = 0.5: Tz = 0, 0.5, 1, 1.5, 2 -> atoms 0: .2+.1, 1: .1+.2+.1, 2: .1+.2
    out = categorical_projection(probs, torch.tensor([0.5, 1.0]), torch.tensor([0.7, 0.5]), support)
    assert torch.allclose(out[0], torch.tensor([0.0, 0.0, 0.5, 0.5, 0.0]))
    assert torch.allclose(out[1], torch.tensor([0.0, 0.0, 0.3, 0.4, 0.3]))
    clipped = categorical_projection(probs[1:], torch.tensor([5.0]), torch.tensor([0.0]), support)
    assert torch.allclose(clipped, torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]]))


def test_nstep_distributional_target_from_the_buffer():
    """n = 3, gamma = 0.5, rewards 1, 2, 3: R = 1 + 1 + 0.75 = 2.75, Gamma = 0.125; the projected C51 target
    of a point mass at z = 8 is 2.75 + 1 = 3.75 -> 0.75 on atom 4, 0.25 on atom 3 (support -10..10 step 1)."""
    storage = ColumnarStorage(10, transition_columns((1,), ()))
    buffer = ReplayBuffer(storage, PrioritizedSampler(seed=0), nstep=3, gamma=0.5)
    for r in (1.0, 2.0, 3.0, 4.0):
        buffer.add(obs=np.zeros((1, 1)), action=np.zeros(1), reward=np.array([r]), next_obs=np.zeros((1, 1)),
                   terminated=np.zeros(1), truncated=np.zeros(1))
    batch = buffer.gather(np.array([0]), ["reward"])
    assert batch["reward"].item() == 1.0
    from rlkit.replay import nstep_targets

    _, ret, disc = nstep_targets(storage, np.array([0]), 3, 0.5)
    assert ret[0] == pytest.approx(2.75) and disc[0] == pytest.approx(0.125)
    support = torch.linspace(-10, 10, 21)
    point = torch.zeros(1, 21)
    point[0, 18] = 1.0  # z = 8
    target = categorical_projection(point, torch.tensor(ret), torch.tensor(disc), support)
    assert target[0, 13] == pytest.approx(0.25) and target[0, 14] == pytest.approx(0.75)


def test_window_rows_mask_terminals_and_the_newest_row():
    storage = ColumnarStorage(8, transition_columns((1,), ()))
    term = [0, 0, 1, 0, 0, 0]
    trunc = [0, 0, 0, 0, 1, 0]
    for t, u in zip(term, trunc):
        storage.add(obs=np.zeros((1, 1)), action=np.zeros(1), reward=np.zeros(1), next_obs=np.zeros((1, 1)),
                    terminated=np.array([t]), truncated=np.array([u]))
    rows, valid = window_rows(storage, np.array([0, 1, 3, 5]), 4)
    assert valid.tolist() == [[True, True, True, False],   # episode ends at row 2: rows 3.. are the next one
                              [True, True, False, False],
                              [True, True, False, False],  # truncation at row 4
                              [True, False, False, False]]  # rows 6.. are not stored yet
    assert rows[0].tolist() == [0, 1, 2, 3] and rows[3].tolist() == [5, 5, 5, 5]
    for _ in range(4):  # wrap the ring: logical order follows insertion, not physical rows
        storage.add(obs=np.zeros((1, 1)), action=np.zeros(1), reward=np.zeros(1), next_obs=np.zeros((1, 1)),
                    terminated=np.zeros(1), truncated=np.zeros(1))
    rows, valid = window_rows(storage, np.array([7]), 3)
    assert rows[0].tolist() == [7, 0, 1] and valid[0].tolist() == [True, True, True]


# --- the consistency loss ------------------------------------------------------------------------------


def test_consistency_distances_closed_forms():
    q = torch.tensor([[1.0, 2.0, 0.5]])
    assert action_value_consistency(q, q, "kl").item() == pytest.approx(0.0, abs=1e-7)
    assert action_value_consistency(q, q, "mse").item() == pytest.approx(0.0, abs=1e-7)
    p = torch.softmax(q, -1)
    assert action_value_consistency(q, q, "ce").item() == pytest.approx(-(p * p.log()).sum().item(), rel=1e-5)
    other = torch.tensor([[0.0, 0.0, 0.0]])  # uniform target: KL(u || p) = sum u (log u - log p)
    expected = (torch.full((3,), 1 / 3) * (torch.log(torch.tensor(1 / 3)) - torch.log_softmax(q, -1))).sum()
    assert action_value_consistency(q, other, "kl").item() == pytest.approx(expected.item(), rel=1e-5)
    logits = torch.randn(2, 3, 5)
    assert atom_consistency(logits, logits, "kl").abs().max() < 1e-6
    assert atom_consistency(logits, torch.zeros_like(logits), "kl").min() > 0


def make_vcr(**kwargs) -> VCRDiscrete:
    discrete = {**SMALL, **kwargs.pop("discrete", {})}
    torch.manual_seed(0)
    return VCR(observation_space=OBS, action_space=ACTIONS, device="cpu", discrete=discrete, **kwargs)


def window_batch(algo, k: int = 2, b: int = 4, valid: torch.Tensor | None = None) -> dict:
    g = torch.Generator().manual_seed(1)
    obs = torch.randint(0, 256, (b, k + 1, 4, 84, 84), generator=g, dtype=torch.uint8)
    return {
        "obs": obs[:, 0], "window_obs": obs, "window_action": torch.randint(0, 3, (b, k), generator=g),
        "window_valid": torch.ones(b, k + 1) if valid is None else valid,
        "action": torch.randint(0, 3, (b,), generator=g),
        "reward": torch.randn(b, generator=g), "discount": torch.full((b,), 0.9), "weights": torch.ones(b),
        "next_obs": torch.randint(0, 256, (b, 4, 84, 84), generator=g, dtype=torch.uint8),
    }


@pytest.mark.parametrize("space", ["action_softmax", "c51_atoms"])
def test_consistency_is_zero_when_imagined_and_real_latents_coincide(space):
    algo = make_vcr(discrete={"noisy": False}, vcr_space=space)
    latents = renormalize(torch.rand(4, 3, 64, 7, 7))
    loss = algo.vcr_loss(latents, latents.clone(), torch.ones(4, 3))  # target head = online head (tau = 1 copy)
    assert loss.abs().max() < 1e-6
    shifted = algo.vcr_loss(latents, renormalize(torch.rand(4, 3, 64, 7, 7)), torch.ones(4, 3))
    assert shifted.min() > 0


def _vcr_grads(algo):
    batch = window_batch(algo)
    z = algo.q_net.encoder(algo._pixels(batch["window_obs"][:, 0]))
    latents = algo.transition.rollout(z, batch["window_action"])
    loss = algo.vcr_loss(latents, algo.target_latents(batch["window_obs"]), batch["window_valid"]).mean()
    algo.optimizer.zero_grad(set_to_none=True)
    loss.backward()

    def norm(module):
        grads = [p.grad.abs().sum() for p in module.parameters() if p.grad is not None]
        return float(sum(grads)) if grads else 0.0
    return norm(algo.q_net.encoder), norm(algo.transition), norm(algo.q_net.head)


def test_consistency_gradient_reaches_encoder_transition_and_head_unless_detached():
    enc, trans, head = _vcr_grads(make_vcr())
    assert enc > 0 and trans > 0 and head > 0
    enc, trans, head = _vcr_grads(make_vcr(detach_q=True))
    assert enc > 0 and trans > 0 and head == 0.0


def test_terminal_crossing_terms_are_masked():
    algo = make_vcr(discrete={"noisy": False})
    latents = renormalize(torch.rand(2, 3, 64, 7, 7))
    target = renormalize(torch.rand(2, 3, 64, 7, 7))
    full = algo.vcr_loss(latents, target, torch.ones(2, 3))
    masked = algo.vcr_loss(latents, target, torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert masked[1].item() == 0.0 and 0 < masked[0].item() < full[0].item()
    # the masked step contributes nothing: changing its target leaves the loss unchanged
    target2 = target.clone()
    target2[:, 2] = renormalize(torch.rand(2, 64, 7, 7))
    assert torch.allclose(masked, algo.vcr_loss(latents, target2, torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])))


def test_updates_return_priorities_and_switch_losses():
    spr = SPR(OBS, ACTIONS, **SMALL)
    spr.priority_feedback = True
    result = spr.update(window_batch(spr))
    assert result.priorities.shape == (4,) and torch.all(result.priorities >= 0)
    assert {"train/rl_loss", "train/spr_loss"} <= set(result.metrics)
    vcr = make_vcr()
    assert set(vcr.update(window_batch(vcr)).metrics) >= {"train/vcr_loss"}
    assert "train/spr_loss" not in vcr.update(window_batch(vcr)).metrics
    both = make_vcr(keep_spr_loss=True)
    assert {"train/vcr_loss", "train/spr_loss"} <= set(both.update(window_batch(both)).metrics)
    with pytest.raises(ConfigError, match="vcr_dist"):
        make_vcr(vcr_dist="l1")


def test_acting_and_bad_spaces():
    spr = SPR(OBS, ACTIONS, **SMALL)
    obs = np.zeros((2, 4, 84, 84), np.uint8)
    actions, _ = spr.act(obs, deterministic=True)
    assert actions.shape == (2,) and set(actions) <= {0, 1, 2}
    with pytest.raises(ConfigError, match="discrete actions.*dmc-"):
        SPR(OBS, gym.spaces.Box(-1, 1, (2,)))
    with pytest.raises(ConfigError, match="atari100k"):
        SPR(gym.spaces.Box(-1, 1, (5,)), ACTIONS)


# --- the SPR protocol on atari100k-<game> ---------------------------------------------------------------


def test_atari100k_protocol_spr_is_the_spr_env():
    a = envs.make("atari100k-pong", protocol="spr", training=True)
    b = envs.make("atari-spr-pong", training=True)
    assert a.observation_space.shape == (4, 84, 84)
    oa, ia = a.reset(seed=3)
    ob, _ = b.reset(seed=3)
    assert ia["protocol"] == "atari100k-spr" and np.array_equal(oa, ob)
    for t in range(30):
        ra, rb = a.step(t % 6), b.step(t % 6)
        assert np.array_equal(ra[0], rb[0]) and ra[1:4] == rb[1:4]
    assert envs.protocol_label("atari100k-pong", {"protocol": "spr"}) == "atari100k-spr"
    assert envs.protocol_label("atari100k-pong", {}) == "atari100k-storm"
    with pytest.raises(EnvError, match="protocol=spr"):
        envs.make("atari100k-pong", training=True)
    with pytest.raises(EnvError, match="unknown Atari 100k protocol"):
        envs.make("atari100k-pong", protocol="dqn")


def test_spr_config_selects_the_spr_protocol():
    from rlkit.config import compose

    cfg = compose(["algo=spr", "env=atari100k-pong"])
    assert cfg.env.kwargs.protocol == "spr" and cfg.env.kwargs.training is True
    assert cfg.env.eval_kwargs.training is False and cfg.eval.episodes == 100 and cfg.eval.deterministic
    assert cfg.sampler.name == "per" and cfg.sampler.params.alpha == 0.5
    user = compose(["algo=vcr", "env=atari100k-pong", "eval.episodes=7"])
    assert user.eval.episodes == 7 and user.env.kwargs.protocol == "spr"


# --- continuous VCR (DrQ base) -------------------------------------------------------------------------

PIX = gym.spaces.Box(0, 255, (9, 84, 84), np.uint8)
BOX = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
TINY = {"batch_size": 4, "hidden": [32, 32], "transition_hidden": [32], "prediction_depth": 2, "policy_actions": 3,
        "target_augs": 1, "q_augs": 1}


def make_cvcr(**kwargs):
    torch.manual_seed(0)
    return VCR(observation_space=PIX, action_space=BOX, device="cpu", continuous={**TINY, **kwargs.pop("cont", {})},
               **kwargs)


def test_continuous_consistency_zero_when_latents_coincide_and_gradients():
    from rlkit.algorithms.world_models.vcr_continuous import VCRContinuous

    algo = make_cvcr()
    assert isinstance(algo, VCRContinuous)
    algo.critic_target.load_state_dict(algo.critic.state_dict())
    z = torch.tanh(torch.randn(3, 3, 50))
    replayed = torch.rand(3, 2, 2) * 2 - 1
    assert algo.vcr_loss(z, z[:, 1:].clone(), replayed, torch.ones(3, 3)).abs().max() < 1e-6
    for detach, head_moves in ((False, True), (True, False)):
        algo = make_cvcr(detach_q=detach)
        obs = torch.randint(0, 256, (3, 9, 84, 84), dtype=torch.uint8)
        z0 = algo.encoder(obs.float() / 255)
        latents = algo.transition.rollout(z0, replayed)
        algo.critic_opt.zero_grad(set_to_none=True)
        algo.vcr_loss(latents, torch.tanh(torch.randn(3, 2, 50)), replayed, torch.ones(3, 3)).mean().backward()
        grads = {name: sum(float(p.grad.abs().sum()) for p in m.parameters() if p.grad is not None)
                 for name, m in (("enc", algo.encoder), ("trans", algo.transition), ("critic", algo.critic))}
        assert grads["enc"] > 0 and grads["trans"] > 0 and (grads["critic"] > 0) == head_moves


def test_continuous_update_acting_and_refusals():
    algo = make_cvcr()
    g = torch.Generator().manual_seed(0)
    window = torch.randint(0, 256, (4, 3, 9, 84, 84), generator=g, dtype=torch.uint8)
    batch = {"obs": window[:, 0], "next_obs": window[:, 1], "action": torch.rand(4, 2) * 2 - 1,
             "reward": torch.rand(4), "terminated": torch.zeros(4), "weights": torch.ones(4),
             "window_obs": window,
             "window_action": torch.rand(4, 3, 2) * 2 - 1,
             "window_valid": torch.tensor([[1.0, 1, 1]] * 3 + [[1.0, 0, 0]])}
    metrics = algo.update(batch).metrics
    assert metrics["train/vcr_loss"] > 0 and "train/actor_loss" in metrics
    actions, _ = algo.act(np.zeros((2, 9, 84, 84), np.uint8))
    assert actions.shape == (2, 2) and np.all(np.abs(actions) <= 1)
    with pytest.raises(ConfigError, match="pixel observations.*dmc-"):
        VCR(observation_space=gym.spaces.Box(-1, 1, (5,)), action_space=BOX, continuous=TINY)
    with pytest.raises(ConfigError, match="c51_atoms"):
        make_cvcr(vcr_space="c51_atoms")


def test_dmc_pixel_env_configs():
    from rlkit.config import compose

    repeats = {"finger_spin": 2, "cartpole_swingup": 8, "reacher_easy": 4, "cheetah_run": 4, "walker_walk": 2,
               "ball_in_cup_catch": 4}
    for task, repeat in repeats.items():
        cfg = compose(["algo=vcr", f"env=dmc-{task}"])
        assert cfg.env.kwargs.action_repeat == repeat and cfg.env.kwargs.obs_type == "pixels"
        assert cfg.train.steps * repeat == 500_000 and cfg.sampler.params.alpha == 0.0
    env = envs.make("dmc-cartpole_swingup", obs_type="pixels", action_repeat=8)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (9, 84, 84) and obs.dtype == np.uint8


def test_state_dict_round_trip_restores_networks_and_rngs():
    a = make_vcr()
    a.update(window_batch(a))
    b = make_vcr()
    b.load_state_dict(a.state_dict())
    obs = np.random.default_rng(0).integers(0, 256, (2, 4, 84, 84), dtype=np.uint8)
    assert np.array_equal(a.act(obs)[0], b.act(obs)[0])
    x = torch.rand(2, 4, 84, 84)
    assert torch.equal(a.augment(x), b.augment(x))
    batch = window_batch(a)
    assert a.update(batch).metrics["train/loss"] == b.update(batch).metrics["train/loss"]


def test_unfit_envs_are_refused_naming_envs_that_fit():
    from rlkit.config import compose
    from rlkit.fit import check_run_fit

    with pytest.raises(ConfigError, match="algo=vcr.*pixel observations.*dmc-"):
        check_run_fit(compose(["algo=vcr", "env=hopper"]))
    with pytest.raises(ConfigError, match="algo=spr.*discrete actions.*atari100k-"):
        check_run_fit(compose(["algo=spr", "env=dmc-cheetah_run"]))
    check_run_fit(compose(["algo=vcr", "env=dmc-cheetah_run"]))
