"""URLB's SMM (Lee et al. 2019), APS (Liu & Abbeel 2021) and ProtoRL (Yarats et al. 2021) on the DDPG backbone.

Each intrinsic reward is recomputed by hand (numpy, float64) from its formula on small tensors; the losses, the
successor-feature critic, APS's task regression (URLB's ``lstsq(R, Phi)`` call reduces to ``Phi^T R``), Sinkhorn-Knopp,
the candidate queue, SMM's skill trial and ProtoRL's full-critic hand-off are checked against their definitions;
and each agent pretrains and finetunes from its snapshot with ``addon=self_reference`` through the CLI config.
"""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit import trainer
from rlkit.algorithms.unsupervised import APS, SMM, ProtoRL, sinkhorn_knopp
from rlkit.algorithms.unsupervised.aps import regress_task
from rlkit.algorithms.unsupervised.knn_reward import CandidateQueue
from rlkit.algorithms.unsupervised.smm import SkillTrial
from rlkit.checkpoint import latest_checkpoint, load_checkpoint
from rlkit.config import compose
from rlkit.errors import ConfigError
from rlkit.replay import Batch

OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
SMALL = dict(hidden_dim=16, lr=1e-3)
AGENTS = {SMM: dict(z_dim=4, code_dim=6, vae_hidden_dim=10), APS: dict(sf_dim=3, knn_k=4),
          ProtoRL: dict(pred_dim=4, proj_dim=8, num_protos=8, queue_size=16)}
MODULE = {SMM: "vae", APS: "aps", ProtoRL: "proto"}


def agent(cls, reward_free: bool = True, **kw):
    a = cls(OBS, ACT, **SMALL, **{**AGENTS[cls], **kw})
    a.setup_urlb(reward_free=reward_free, seed_steps=0, episode_steps=100)
    return a


def make_batch(a, n: int = 32, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    columns = {"obs": torch.randn(n, 5, generator=g) * 2 + 1, "action": torch.rand(n, 2, generator=g) * 2 - 1,
               "reward": torch.randn(n, generator=g), "next_obs": torch.randn(n, 5, generator=g),
               "discount": torch.full((n,), 0.99**3)}
    meta = a.init_meta(np.zeros(n), 0, np.random.default_rng(seed))
    return Batch({**columns, **{k: torch.as_tensor(v) for k, v in meta.items()}})


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().astype(np.float64)


def linear(layer: torch.nn.Linear, x: np.ndarray) -> np.ndarray:
    out = x @ np64(layer.weight).T
    return out + np64(layer.bias) if layer.bias is not None else out


def mlp3(net: torch.nn.Sequential, x: np.ndarray) -> np.ndarray:
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    return linear(net[4], relu(linear(net[2], relu(linear(net[0], x)))))


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


# ----------------------------------------------------------------------------- SMM
def smm_by_hand(a: SMM, batch: Batch, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``h(s|z)``, ``h(z|s)``, the VAE's rows of squared error and its loss, from the weights (float64)."""
    x = np.concatenate([np64(batch.obs), np64(batch.skill)], 1)
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    h = relu(linear(a.vae.enc[2], relu(linear(a.vae.enc[0], x))))
    mu, logvar = linear(a.vae.enc_mu, h), linear(a.vae.enc_logvar, h)
    code = mu + eps * np.exp(0.5 * logvar)
    d = a.vae.dec
    recon = linear(d[4], relu(linear(d[2], relu(linear(d[0], code)))))
    squared = (x - recon) ** 2
    kl = -0.5 * (1 + logvar - mu**2 - np.exp(logvar)).sum(1).mean()
    z = np64(batch.skill).argmax(1)
    h_z_s = -log_softmax(mlp3(a.discriminator, np64(batch.obs)))[np.arange(len(z)), z]
    return squared.sum(1), h_z_s, squared, 0.5 * kl + squared.mean()


@pytest.mark.parametrize(("sign", "coefs"), [("code", (1.0, 1.0, 1.0)), ("paper", (0.5, 2.0, 3.0))])
def test_smm_reward_is_vae_error_plus_log_k_plus_discriminator_term(sign, coefs):
    a = agent(SMM, discriminator_sign=sign, state_ent_coef=coefs[0], latent_ent_coef=coefs[1],
              latent_cond_ent_coef=coefs[2])
    batch = make_batch(a)
    torch.manual_seed(3)
    reward = a.intrinsic_reward(batch, batch.obs, batch.next_obs)
    torch.manual_seed(3)
    eps = np64(torch.randn(32, 6))  # the reward's one draw of the VAE noise
    h_s_z, h_z_s, _, _ = smm_by_hand(a, batch, eps)
    s_d = 1.0 if sign == "code" else -1.0
    expected = coefs[0] * h_s_z + coefs[1] * math.log(4) + coefs[2] * s_d * h_z_s
    np.testing.assert_allclose(reward.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_smm_losses_and_reward_from_the_modules_before_their_step():
    a = agent(SMM)
    batch = make_batch(a)
    torch.manual_seed(5)
    eps = np64(torch.randn(32, 6))
    _, h_z_s, _, vae_loss = smm_by_hand(a, batch, eps)
    b = copy.deepcopy(a)
    torch.manual_seed(5)
    metrics = a.update_representation(batch, batch.obs, batch.next_obs)
    assert float(metrics["train/smm_vae_loss"]) == pytest.approx(vae_loss, rel=1e-5)
    assert float(metrics["train/smm_pred_loss"]) == pytest.approx(h_z_s.mean(), rel=1e-5)
    assert not torch.equal(flat(a.vae), flat(b.vae)) and not torch.equal(flat(a.discriminator), flat(b.discriminator))
    # the full update rewards with the pre-step modules (URLB computes the reward from the losses' forward passes)
    c = copy.deepcopy(b)
    torch.manual_seed(9)
    expected = c.intrinsic_reward(batch, batch.obs, batch.next_obs).mean()
    torch.manual_seed(9)
    assert float(b.update(batch).metrics["train/intrinsic_reward"]) == pytest.approx(float(expected), rel=1e-6)


def test_smm_reward_and_vae_step_share_one_noise_draw_per_batch():
    """URLB's reward takes h(s|z) from the VAE loss's own forward pass: one eps per batch for both."""
    a = agent(SMM)
    batch = make_batch(a)
    b = copy.deepcopy(a)
    torch.manual_seed(11)
    eps = np64(torch.randn(32, 6))
    h_s_z, h_z_s, _, vae_loss = smm_by_hand(a, batch, eps)
    torch.manual_seed(11)
    metrics = b.update(batch).metrics
    assert float(metrics["train/smm_vae_loss"]) == pytest.approx(vae_loss, rel=1e-5)
    expected = (h_s_z + math.log(4) + h_z_s).mean()
    assert float(metrics["train/intrinsic_reward"]) == pytest.approx(expected, rel=1e-5)
    assert b._code_noise is None  # outside an update every call draws afresh (probes, measurements)
    assert not torch.equal(b.code_noise(batch), b.code_noise(batch))


def test_smm_skills_are_uniform_one_hot_per_episode():
    a = agent(SMM)
    assert a.meta_interval == 0
    skills = a.init_meta(np.zeros(1000), 0, np.random.default_rng(0))["skill"]
    assert (skills.sum(1) == 1).all() and set(skills.argmax(1)) == {0, 1, 2, 3}
    a.setup_urlb(reward_free=False, seed_steps=0, episode_steps=100)  # finetune_skill=random: as in pretraining
    assert len(set(a.init_meta(np.zeros(100), 0, np.random.default_rng(1))["skill"].argmax(1))) == 4
    assert a.warmup_actions(np.zeros((1, 5)), {}) is None


def test_smm_search_tries_every_skill_once_then_keeps_the_best_return():
    a = agent(SMM, reward_free=False, finetune_skill="search")
    rng = np.random.default_rng(0)
    payoff = {0: 1.0, 1: 5.0, 2: -2.0, 3: 3.0}  # per-step reward of each skill
    tried = []
    for _ in range(4):  # four 10-step episodes, one env
        skill = int(a.init_meta(np.zeros(1, dtype=np.int64), 0, rng)["skill"].argmax())
        tried.append(skill)
        assert a.warmup_actions(np.zeros((1, 5), np.float32), {"skill": np.eye(4, dtype=np.float32)[[skill]]}) \
            is not None  # the trial acts with the pretrained actor during the seed steps
        for _ in range(10):
            a.observe_reward(np.array([payoff[skill]]))
        assert not a.trial.done
    assert sorted(tried) == [0, 1, 2, 3]
    chosen = a.init_meta(np.zeros(1, dtype=np.int64), 0, rng)["skill"].argmax(1)
    np.testing.assert_array_equal(a.trial.returns, [10.0, 50.0, -20.0, 30.0])
    assert chosen.tolist() == [1] and a.eval_meta(3)["skill"].argmax(1).tolist() == [1, 1, 1]
    assert a.trial.done and a.warmup_actions(np.zeros((1, 5)), {}) is None
    assert a.init_meta(np.zeros(1, dtype=np.int64), 0, rng)["skill"].argmax(1).tolist() == [1]  # kept


def test_skill_trial_with_several_envs_gives_distinct_untried_skills():
    trial = SkillTrial(3)
    first = trial.next_skills(np.ones(2, bool), np.random.default_rng(0))
    assert first[0] != first[1]
    trial.observe(np.array([1.0, 2.0]))
    second = trial.next_skills(np.array([True, False]), np.random.default_rng(0))  # env 0's episode ended
    assert second[1] == first[1] and set(second) | set(first) == {0, 1, 2}
    assert trial.returns[first[0]] == 1.0 and np.isnan(trial.returns[first[1]])


# ----------------------------------------------------------------------------- APS
def test_aps_reward_is_particle_entropy_plus_task_projection():
    a = agent(APS)
    batch = make_batch(a)
    reward = a.intrinsic_reward(batch, batch.obs, batch.next_obs)
    rep = mlp3(a.aps, np64(batch.next_obs))  # unnormalised f(s')
    d = np.linalg.norm(rep[:, None] - rep[None], axis=-1)
    kept = np.sort(d, axis=1)[:, :4]  # its own 0 included
    n, x = 1e-4, kept.reshape(-1)
    running_mean = x.mean() * x.size / (n + x.size)  # URLB's RMS after one batch, from M = 0
    entropy = np.log1p(np.maximum(kept / running_mean - 1e-4, 0).mean(1))
    w = np64(batch.skill)
    exploit = (rep / np.linalg.norm(rep, axis=1, keepdims=True) * w).sum(1)
    np.testing.assert_allclose(reward.numpy(), entropy + exploit, rtol=1e-4, atol=1e-6)
    b = agent(APS, ent_coef=0.5, sf_coef=2.0)
    b.aps.load_state_dict(a.aps.state_dict())
    np.testing.assert_allclose(b.intrinsic_reward(batch, batch.obs, batch.next_obs).numpy(),
                               0.5 * entropy + 2.0 * exploit, rtol=1e-4, atol=1e-6)


def test_aps_feature_loss_and_tasks_on_the_unit_sphere():
    a = agent(APS)
    batch = make_batch(a)
    assert a.meta_interval == 5
    np.testing.assert_allclose(np.linalg.norm(np64(batch.skill), axis=1), 1.0, rtol=1e-6)
    rep = mlp3(a.aps, np64(batch.next_obs))
    phi = rep / np.linalg.norm(rep, axis=1, keepdims=True)
    loss = a.update_representation(batch, batch.obs, batch.next_obs)["train/aps_loss"]
    assert float(loss) == pytest.approx(-(phi * np64(batch.skill)).sum(1).mean(), rel=1e-5)


def test_aps_critic_is_the_task_times_successor_features():
    a = agent(APS)
    batch = make_batch(a)
    x = torch.cat([batch.obs, batch.skill], 1)
    q1, q2 = a.critic(x, batch.action)
    psi1, psi2 = a.critic.successor_features(x, batch.action)
    torch.testing.assert_close(q1, (psi1 * batch.skill).sum(-1))
    torch.testing.assert_close(q2, (psi2 * batch.skill).sum(-1))
    assert psi1.shape == (32, 3) and a.critic_target.q1[-1].out_features == 3
    torch.testing.assert_close(a.critic_target(x, batch.action)[0], q1)  # the target starts as a copy


def test_task_regression_code_reduces_urlbs_lstsq_call_and_least_squares_is_textbook():
    g = torch.Generator().manual_seed(0)
    phi = torch.nn.functional.normalize(torch.randn(64, 4, generator=g, dtype=torch.float64), dim=1)
    reward = torch.randn(64, generator=g, dtype=torch.float64)
    urlb = torch.linalg.lstsq(reward[:, None], phi).solution[0]  # URLB: lstsq(reward, rep)
    torch.testing.assert_close(regress_task(phi, reward, "code"), urlb / urlb.norm())
    torch.testing.assert_close(regress_task(phi, reward, "code"), phi.T @ reward / (phi.T @ reward).norm())
    w_true = torch.tensor([0.5, -0.5, 0.5, 0.5], dtype=torch.float64)
    torch.testing.assert_close(regress_task(phi, phi @ w_true, "least_squares"), w_true)
    assert not torch.allclose(regress_task(phi, phi @ w_true, "code"), w_true, atol=1e-2)  # the two differ
    assert regress_task(phi, torch.zeros(64, dtype=torch.float64)) is None


def test_aps_finetuning_infers_the_task_from_replay_after_the_init_steps():
    from rlkit.replay import ColumnarStorage, ReplayBuffer, make_sampler, transition_columns

    a = agent(APS, reward_free=False, num_init_steps=10, lstsq_batch_size=256, update_task_every_step=5)
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((200, 5)).astype(np.float32)
    with torch.no_grad():
        phi = a.features(torch.as_tensor(obs))
    w_true = np.array([0.6, 0.0, -0.8], np.float32)
    storage = ColumnarStorage(200, transition_columns((5,), (2,), extra=a.meta_columns()))
    storage.add(obs=obs, action=np.zeros((200, 2), np.float32), reward=(phi.numpy() @ w_true).astype(np.float32),
                next_obs=obs, terminated=np.zeros(200, np.float32), truncated=np.zeros(200, np.float32),
                skill=np.zeros((200, 3), np.float32))
    replay = ReplayBuffer(storage, make_sampler("uniform", seed=0))
    a.env_step = 10
    assert a.infer_meta(replay) is None  # inference starts after num_init_steps
    assert np.allclose(np.linalg.norm(a.eval_meta(1)["skill"]), 1.0)
    a.env_step = 11
    task = a.infer_meta(replay)["skill"]
    assert a.infer_meta(replay) is None  # the next one is update_task_every_step steps later
    a.env_step = 16
    assert a.infer_meta(replay) is not None
    assert np.linalg.norm(task) == pytest.approx(1.0, rel=1e-5) and task @ w_true > 0.5
    np.testing.assert_array_equal(a.init_meta(np.zeros(2), 0, rng)["skill"], np.stack([a.solved_task] * 2))
    np.testing.assert_array_equal(a.eval_meta(1)["skill"][0], a.solved_task)
    exact = agent(APS, reward_free=False, num_init_steps=0, lstsq_batch_size=256, task_regression="least_squares")
    exact.aps.load_state_dict(a.aps.state_dict())
    exact.env_step = 1
    np.testing.assert_allclose(exact.infer_meta(replay)["skill"], w_true, atol=1e-4)


# ----------------------------------------------------------------------------- ProtoRL
def sinkhorn_by_hand(scores: np.ndarray, iterations: int = 3) -> np.ndarray:
    q = np.exp(scores - scores.max()).T  # (K, B)
    q /= q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q *= (1 / k) / q.sum(1, keepdims=True)
        q *= (1 / b) / q.sum(0, keepdims=True)
    return (q / q.sum(0, keepdims=True)).T


def test_sinkhorn_knopp_follows_the_iteration_and_balances_the_prototypes():
    scores = np.random.default_rng(0).standard_normal((6, 4)) * 3
    codes = sinkhorn_knopp(torch.as_tensor(scores), 3).numpy()
    np.testing.assert_allclose(codes, sinkhorn_by_hand(scores), rtol=1e-10)
    np.testing.assert_allclose(codes.sum(1), 1.0, rtol=1e-12)  # each row a distribution over prototypes
    balanced = sinkhorn_knopp(torch.as_tensor(scores), 200).numpy()
    np.testing.assert_allclose(balanced.sum(0), 6 / 4, rtol=1e-6)  # equal mass per prototype at convergence
    same = sinkhorn_knopp(torch.zeros(6, 4), 3).numpy()
    np.testing.assert_allclose(same, 0.25)


def test_proto_loss_is_the_swapped_prediction_cross_entropy():
    a = agent(ProtoRL, temperature=0.5)
    batch = make_batch(a)
    with torch.no_grad():
        a.proto.protos.weight.mul_(3.0)  # unnormalised: the loss renormalises the rows first
    c = np64(a.proto.protos.weight)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    p = a.proto
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    u = linear(p.projector[2], relu(linear(p.projector[0], linear(p.predictor, np64(batch.obs)))))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = linear(p.predictor_target, np64(batch.next_obs))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    codes = sinkhorn_by_hand(v @ c.T / 0.5)
    expected = -(codes * log_softmax(u @ c.T / 0.5)).sum(1).mean()
    target_before = flat(p.predictor_target)
    loss = a.update_representation(batch, batch.obs, batch.next_obs)["train/proto_loss"]
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    predictor = flat(p.predictor)  # the target moved 5% of the way to the updated predictor
    torch.testing.assert_close(flat(p.predictor_target), 0.95 * target_before + 0.05 * predictor)


def test_proto_reward_is_the_distance_to_the_kth_nearest_queued_candidate():
    a = agent(ProtoRL)
    batch = make_batch(a)
    torch.manual_seed(1)
    reward = a.intrinsic_reward(batch, batch.obs, batch.next_obs).numpy()
    v = linear(a.proto.predictor, np64(batch.next_obs))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    c = np64(a.proto.protos.weight)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    prob = np.exp(c @ v.T)
    prob /= prob.sum(1, keepdims=True)  # (K, B): softmax over the batch per prototype
    torch.manual_seed(1)
    candidates = torch.multinomial(torch.as_tensor(prob), 1).squeeze(1).numpy()  # the same draw
    queue = np.zeros((16, 4))
    queue[:8] = v[candidates]  # the 8 candidates, after the zero rows the queue starts with
    np.testing.assert_allclose(np64(a.proto.queue.items), queue, rtol=1e-5, atol=1e-6)
    assert int(a.proto.queue.ptr) == 8
    d = np.linalg.norm(v[:, None] - queue[None], axis=-1)
    np.testing.assert_allclose(reward, np.sort(d, axis=1)[:, 2], rtol=1e-4, atol=1e-6)  # topk = 3
    a.intrinsic_reward(batch, batch.obs, batch.next_obs)
    assert int(a.proto.queue.ptr) == 0  # 16 rows: wrapped around


def test_candidate_queue_wraps_and_measurements_restore_it():
    q = CandidateQueue(5, 2)
    q.push(torch.ones(3, 2))
    q.push(2 * torch.ones(3, 2))
    np.testing.assert_array_equal(q.items[:, 0].numpy(), [2, 1, 1, 2, 2])
    assert int(q.ptr) == 1
    a = agent(ProtoRL)
    batch = make_batch(a)
    before = copy.deepcopy(a.proto.queue.state_dict())
    assert a.probe_intrinsic_reward(batch) is not None
    for key, value in before.items():
        assert torch.equal(a.proto.queue.state_dict()[key], value)


@pytest.mark.parametrize("init_sf", ["pretrained", "fresh"])
def test_aps_finetuning_features_pretrained_or_fresh_as_urlbs_init_from(init_sf):
    pre = agent(APS)
    with torch.no_grad():
        for p in pre.aps.parameters():
            p.add_(1.0)
    fine = agent(APS, reward_free=False, init_sf=init_sf)
    own = flat(fine.aps).clone()
    fine.init_from_snapshot(pre.state_dict())
    assert torch.equal(flat(fine.actor), flat(pre.actor))  # the rest of the hand-off is unchanged
    assert torch.equal(flat(fine.critic.trunk), flat(pre.critic.trunk))
    # pretrained: the learned f (APS Sec. 4); fresh: the agent's own random f (URLB copies encoder/actor/trunk only)
    assert torch.equal(flat(fine.aps), flat(pre.aps) if init_sf == "pretrained" else own)
    with pytest.raises(ConfigError, match="init_sf"):
        agent(APS, reward_free=False, init_sf="random")


@pytest.mark.parametrize("full", [True, False])
def test_proto_finetuning_copies_the_whole_critic_as_urlb(full):
    pre = agent(ProtoRL)
    with torch.no_grad():
        for p in pre.critic.parameters():
            p.add_(1.0)
    fine = agent(ProtoRL, reward_free=False, init_full_critic=full)
    fine.init_from_snapshot(pre.state_dict())
    assert torch.equal(flat(fine.critic.trunk), flat(pre.critic.trunk))
    assert torch.equal(flat(fine.critic.q1), flat(pre.critic.q1)) == full
    assert not torch.equal(flat(fine.critic_target.trunk), flat(pre.critic.trunk))  # the target stays fresh
    assert torch.equal(flat(fine.proto), flat(pre.proto))


# ----------------------------------------------------------------------------- all three
@pytest.mark.parametrize("cls", list(AGENTS))
def test_reward_trains_nothing_and_only_the_update_trains_the_intrinsic_module(cls):
    a = agent(cls)
    batch = make_batch(a)
    before = {n: flat(getattr(a, n)) for n in (MODULE[cls], "actor", "critic")}
    a.intrinsic_reward(batch, batch.obs, batch.next_obs)
    assert all(torch.equal(flat(getattr(a, n)), v) for n, v in before.items())
    a.update_representation(batch, batch.obs, batch.next_obs)
    assert not torch.equal(flat(getattr(a, MODULE[cls])), before[MODULE[cls]])
    assert torch.equal(flat(a.actor), before["actor"]) and torch.equal(flat(a.critic), before["critic"])


@pytest.mark.parametrize("cls", list(AGENTS))
def test_pretraining_never_reads_the_env_reward_and_finetuning_does(cls):
    a = agent(cls)
    b = copy.deepcopy(a)
    batch = make_batch(a)
    other = Batch(dict(batch))
    other["reward"] = batch.reward * 100 + 7
    for x, data in ((a, batch), (b, other)):
        torch.manual_seed(0)
        x.update(data)
    for name in ("actor", "critic", MODULE[cls]):
        assert torch.equal(flat(getattr(a, name)), flat(getattr(b, name))), name
    for x, data in ((a, batch), (b, other)):
        x.setup_urlb(reward_free=False, seed_steps=0, episode_steps=100)
        torch.manual_seed(0)
        x.update(data)
    assert not torch.equal(flat(a.critic), flat(b.critic))


@pytest.mark.parametrize("cls", list(AGENTS))
def test_pixels_and_bad_switches_are_refused(cls):
    with pytest.raises(ConfigError, match="states-only"):
        cls(gym.spaces.Box(0, 255, (9, 84, 84), np.uint8), ACT, obs_type="pixels")
    bad = {SMM: dict(finetune_skill="best"), APS: dict(task_regression="ridge"), ProtoRL: dict(queue_size=4)}[cls]
    with pytest.raises(ConfigError, match="algo\\."):
        agent(cls, **bad)


# ----------------------------------------------------------------------------- through the CLI, with Self-Reference
TINY = ["algo.hidden_dim=32", "train.batch_size=32", "train.warmup_steps=60", "+env.kwargs.action_repeat=8",
        "eval.episodes=1", "eval.num_envs=1", "checkpoint.interval=0", "num_threads=1", "logging.progress=false",
        "logging.tensorboard=false", "train.log_interval=50", "urlb.probe_batch=32"]
SR_TINY = ["addon=self_reference", "addon.dim=16", "addon.hidden_dim=16", "addon.window=1000"]
PER_ALGO = {"smm": ["algo.finetune_skill=search"], "aps": ["algo.knn_k=4", "algo.num_init_steps=80",
                                                            "algo.lstsq_batch_size=64"],
            "proto": ["algo.num_protos=16", "algo.queue_size=64", "algo.proj_dim=32"]}


@pytest.mark.parametrize("algo", list(PER_ALGO))
def test_pretrain_then_finetune_from_the_snapshot_with_self_reference(algo, tmp_path):
    common = [f"algo={algo}", *TINY, *PER_ALGO[algo], *SR_TINY]
    pre = trainer.run(compose([*common, "env=urlb-walker", "regime=pretrain", "train.steps=150",
                               f"run_dir={tmp_path / 'pre'}"]))
    assert pre["finished"] and pre["addon"] == "self_reference" and pre["snapshots"]
    fine = trainer.run(compose([*common, "env=urlb-walker_stand", "regime=finetune", f"snapshot={tmp_path / 'pre'}",
                                "train.steps=260", "eval.interval=0", f"run_dir={tmp_path / 'fine'}"]))
    assert fine["finished"] and fine["snapshot_frames"] > 0 and fine["addon"] == "self_reference"
    state = load_checkpoint(latest_checkpoint(tmp_path / "fine" / "checkpoints"))["algo"]
    if algo == "smm":  # two 125-step episodes tried two skills
        assert np.isfinite(state["trial"].returns).sum() == 2
    if algo == "aps":  # the task was inferred from the replay after 80 steps
        assert state["solved_task"] is not None and np.linalg.norm(state["solved_task"]) == pytest.approx(1, rel=1e-5)


@pytest.mark.parametrize(("algo", "regime"), [("proto", "pretrain"), ("smm", "finetune"), ("aps", "finetune")])
def test_resume_is_exact_across_queue_trial_and_task_inference(algo, regime, tmp_path):
    """ProtoRL's candidate queue (pretraining, probed every log interval), SMM's skill trial and APS's inferred
    task (finetuning) are restored by a resume: the interrupted run logs what the uninterrupted one logs."""
    from rlkit.regimes.urlb import FinetuneRegime, PretrainRegime
    from tests.helpers import at_step, interrupt, metric_records

    common = [f"algo={algo}", *TINY, *PER_ALGO[algo]]
    if regime == "pretrain":
        overrides, regime_cls = [*common, "env=urlb-walker", "regime=pretrain", "train.steps=200"], PretrainRegime
    else:
        trainer.run(compose([*common, "env=urlb-walker", "regime=pretrain", "train.steps=100",
                             f"run_dir={tmp_path / 'pre'}"]))
        overrides = [*common, "env=urlb-walker_stand", "regime=finetune", f"snapshot={tmp_path / 'pre'}",
                     "train.steps=270", "eval.interval=135"]
        regime_cls = FinetuneRegime
    full = trainer.run(compose([*overrides, f"run_dir={tmp_path / 'full'}"]))
    with at_step(regime_cls, 190, interrupt), pytest.raises(KeyboardInterrupt):
        trainer.run(compose([*overrides, f"run_dir={tmp_path / 'cut'}"]))
    resumed = trainer.run(compose([*overrides, f"run_dir={tmp_path / 'cut'}", "resume=true"]))
    assert metric_records(tmp_path / "full") == metric_records(tmp_path / "cut")
    assert full["final_returns"] == resumed["final_returns"]
