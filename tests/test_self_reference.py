"""Self-Reference (Zhao et al., Neural Networks 2025, arXiv 2311.09692) as an add-on to URLB agents.

The reference memory (latest states of the replay buffer at episode ends, cosine k-NN, D-state continuations cut at
episode ends, carried into finetuning), the cross-attention aggregator against a hand-written multi-head attention,
every attention kind, the query module's PPO step and identity loss, the ablation switches, end-to-end training of
the aggregator through the critic, and the refusals (a non-URLB algorithm; a snapshot whose add-on differs).
"""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit import kernels, trainer
from rlkit.algorithms.unsupervised import APS, APT, CIC, DIAYN, ICM, MOSS, RND, SMM, Disagreement, ProtoRL
from rlkit.algorithms.unsupervised.self_reference import ReferenceAggregator, ReferenceMemory, SelfReference
from rlkit.config import compose
from rlkit.errors import CheckpointError, ConfigError
from rlkit.replay import Batch, ColumnarStorage, ReplayBuffer, make_sampler, transition_columns

OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
SR = dict(k=2, horizon=3, dim=8, heads=2, hidden_dim=8, window=100)


def replay_with(obs: np.ndarray, ends: list[int], extra: dict | None = None) -> ReplayBuffer:
    """A replay buffer holding rows ``obs`` whose episodes end at the rows ``ends``."""
    n = len(obs)
    columns = transition_columns((obs.shape[1],), (2,), extra=extra or {})
    storage = ColumnarStorage(max(n, 1), columns)
    truncated = np.zeros(n, np.float32)
    truncated[ends] = 1
    rows = {"obs": obs.astype(np.float32), "action": np.zeros((n, 2), np.float32), "reward": np.zeros(n, np.float32),
            "next_obs": obs.astype(np.float32), "terminated": np.zeros(n, np.float32), "truncated": truncated}
    for key, (shape, dtype) in (extra or {}).items():
        rows[key] = np.zeros((n, *shape), dtype)
    storage.add(**rows)
    return ReplayBuffer(storage, make_sampler("uniform", seed=0))


# ----------------------------------------------------------------------------- memory
def test_memory_cosine_knn_and_continuations_cut_at_episode_ends():
    angles = np.arange(8) * (np.pi / 8)  # unit vectors at increasing angles; scaled so L2 and cosine disagree
    obs = np.stack([np.cos(angles), np.sin(angles), np.zeros(8)], 1) * (1 + np.arange(8))[:, None]
    memory = ReferenceMemory(3, window=100, device=torch.device("cpu"))
    memory.refresh(replay_with(obs, ends=[3, 7]))
    query = torch.tensor([[math.cos(np.pi / 8 * 2.1), math.sin(np.pi / 8 * 2.1), 0.0]]) * 50
    hits = memory.nearest(query, 3)
    assert hits[0].tolist() == [2, 3, 1]  # by angle, whatever the norm
    cont = memory.continuations(torch.tensor([[2, 6]]), 3)
    expected = obs[[[2, 3, 3], [6, 7, 7]]]  # episode 0 ends at row 3, episode 1 at row 7
    np.testing.assert_allclose(cont[0].numpy(), expected, rtol=1e-6)


def test_memory_window_keeps_the_newest_rows_and_finetuning_carries_pretraining_states():
    obs = np.arange(30, dtype=np.float32)[:, None].repeat(3, 1) + 1
    memory = ReferenceMemory(3, window=10, device=torch.device("cpu"))
    memory.refresh(replay_with(obs, ends=[9, 19, 29]))
    np.testing.assert_array_equal(memory.states[:, 0].numpy(), obs[20:, 0])
    memory.carry()  # finetuning starts: the pretraining memory is kept and appended to
    fresh = obs[:6] + 100
    memory.refresh(replay_with(fresh, ends=[5]))
    np.testing.assert_array_equal(memory.states[:, 0].numpy(), np.concatenate([obs[20:, 0], fresh[:, 0]]))
    cont = memory.continuations(torch.tensor([[8]]), 4)  # the carried block's episode end holds
    np.testing.assert_array_equal(cont[0, 0, :, 0].numpy(), [29, 30, 30, 30])
    memory.keep_carried = False  # the window cap applied to the union
    memory.refresh(replay_with(fresh, ends=[5]))
    np.testing.assert_array_equal(memory.states[:, 0].numpy(), np.concatenate([obs[26:, 0], fresh[:, 0]]))


# ----------------------------------------------------------------------------- aggregator
def test_aggregator_is_multi_head_cross_attention_with_time_embeddings():
    torch.manual_seed(0)
    agg = ReferenceAggregator(obs_dim=3, dim=8, heads=2, horizon=3, hidden=8, kind="softmax")
    obs, refs = torch.randn(4, 3), torch.randn(4, 2, 3, 3)
    q = agg.q_enc(obs).view(4, 2, 4)
    k = (agg.k_enc(refs) + agg.time).reshape(4, 6, 2, 4)
    v = (agg.v_enc(refs) + agg.time).reshape(4, 6, 2, 4)
    weights = torch.softmax(torch.einsum("bhd,bthd->bht", q, k) / 2.0, dim=-1)
    expected = agg.out(torch.einsum("bht,bthd->bhd", weights, v).reshape(4, 8))
    torch.testing.assert_close(agg(obs, refs), expected, rtol=1e-5, atol=1e-6)
    # the offset embedding is part of keys and values
    shuffled = refs[:, :, [2, 1, 0]]
    assert not torch.allclose(agg(obs, shuffled), agg(obs, refs))


@pytest.mark.parametrize("kind", kernels.KINDS)
def test_every_attention_kind_aggregates_and_trains(kind):
    torch.manual_seed(0)
    agg = ReferenceAggregator(obs_dim=3, dim=8, heads=2, horizon=3, hidden=8, kind=kind)
    u = agg(torch.randn(4, 3), torch.randn(4, 2, 3, 3))
    assert u.shape == (4, 8) and torch.isfinite(u).all()
    u.square().sum().backward()
    assert agg.q_enc[0].weight.grad.abs().sum() > 0 and agg.time.grad.abs().sum() > 0


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="attention_kind"):
        SelfReference(OBS, attention_kind="flash")
    with pytest.raises(ConfigError, match="addon.source"):
        SelfReference(OBS, source="oracle")
    with pytest.raises(ConfigError, match="obs_type=states"):
        SelfReference(gym.spaces.Box(0, 255, (9, 84, 84), np.uint8))


# ----------------------------------------------------------------------------- the add-on on agents
def sr_agent(cls=RND, reward_free: bool = True, **sr):
    addon = SelfReference(OBS, **{**SR, **sr})
    kwargs = dict(hidden_dim=16, lr=1e-3)
    per_agent = {RND: dict(rnd_rep_dim=8), APT: dict(rep_dim=8, knn_k=4), ICM: {}, Disagreement: dict(n_models=3),
                 DIAYN: dict(skill_dim=4), SMM: dict(z_dim=4), APS: dict(sf_dim=4, knn_k=4),
                 ProtoRL: dict(pred_dim=4, proj_dim=8, num_protos=8, queue_size=16)}
    kwargs.update(per_agent.get(cls, dict(skill_dim=4, knn_k=4)))
    agent = cls(OBS, ACT, addon=addon, **kwargs)
    agent.setup_urlb(reward_free=reward_free, seed_steps=0, episode_steps=50)
    addon.setup(reward_free)  # what the agent tells its add-on before acting or updating
    return agent


def fill_memory(agent, n: int = 40) -> np.ndarray:
    obs = np.random.default_rng(0).standard_normal((n, 3)).astype(np.float32)
    agent.on_episode_end(replay_with(obs, ends=[n // 2 - 1, n - 1]))
    return obs


def collected_batch(agent, n: int = 32, seed: int = 1) -> Batch:
    """Rows as the regime stores them: the meta (incl. the add-on's) and what ``act`` returned."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, 3)).astype(np.float32)
    meta = {**agent.init_meta(np.zeros(n), 0, rng), **agent.addon_meta(np.zeros(n), rng)}
    action, state = agent.act(obs, meta)
    columns = {"obs": obs, "action": action, "reward": rng.standard_normal(n).astype(np.float32),
               "next_obs": obs + 0.1, "discount": np.full(n, 0.97, np.float32), **state}
    return Batch({k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in columns.items()})


@pytest.mark.parametrize("cls", [RND, APT, ICM, Disagreement, DIAYN, SMM, APS, ProtoRL, CIC, MOSS])
def test_sr_works_with_every_agent_and_trains_end_to_end(cls):
    torch.manual_seed(0)
    agent = sr_agent(cls)
    first_layer = agent.actor.trunk[0].in_features
    assert first_layer == 3 + getattr(agent, "meta_dim", 0) + 8  # [s, z, u]
    fill_memory(agent)
    batch = collected_batch(agent)
    if cls is MOSS:
        batch["mode"] = torch.as_tensor(np.arange(32) % 2, dtype=torch.float32)
    addon = agent.addon
    agg, query = copy.deepcopy(addon.aggregator), copy.deepcopy(addon.query)
    metrics = agent.update(batch).metrics
    changed = [not torch.equal(a, b) for a, b in zip(agg.parameters(), addon.aggregator.parameters(), strict=True)]
    assert all(changed)  # every aggregator tensor (Q/K/V encoders, time embedding, output) learns from the critic
    assert any(not torch.equal(a, b) for a, b in zip(query.parameters(), addon.query.parameters(), strict=True))
    assert {"sr/query_policy_loss", "sr/identity_loss"} <= set(metrics)


def test_acting_stores_the_query_and_bypassed_episodes_query_with_the_state():
    agent = sr_agent()
    fill_memory(agent)
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((64, 3)).astype(np.float32)
    meta = agent.addon_meta(np.zeros(64), rng)
    bypass = meta["sr_bypass"] > 0.5
    assert 10 < bypass.sum() < 54  # about half of the pretraining episodes
    _, state = agent.act(obs, meta)
    np.testing.assert_array_equal(state["sr_query"][bypass], obs[bypass])
    assert (state["sr_from_query"] == ~bypass).all() and not np.allclose(state["sr_query"][~bypass], obs[~bypass])
    later = agent.addon_meta(np.full(64, 7), rng)  # mid-episode: the flags hold
    np.testing.assert_array_equal(later["sr_bypass"], meta["sr_bypass"])
    agent.setup_urlb(reward_free=False, seed_steps=0, episode_steps=50)
    assert (agent.addon_meta(np.zeros(64), rng)["sr_bypass"] == 0).all()  # finetuning always queries


def test_query_ppo_step_ignores_bypassed_rows_and_the_identity_loss_pulls_to_the_state():
    agent = sr_agent()
    fill_memory(agent)
    batch = collected_batch(agent)
    batch["sr_from_query"] = torch.zeros(32)  # every row bypassed: only value and identity losses remain
    addon = agent.addon
    torch.nn.init.normal_(addon.query.delta[-1].weight, std=1.0)  # a query mean far from s
    before = addon.query.delta(batch.obs).square().sum(-1).mean()
    metrics = {}
    for _ in range(30):
        metrics = addon.update(batch, batch.obs, batch.next_obs, batch.reward)
    assert metrics["sr/query_policy_loss"] == 0
    assert metrics["sr/identity_loss"] < 0.5 * before


def test_ablation_sources_and_phases():
    torch.manual_seed(0)
    obs = torch.randn(5, 3)
    noise = sr_agent(source="noise")
    u1, _ = noise.addon.act_context(obs, noise.addon.eval_meta(5), True)
    u2, _ = noise.addon.act_context(obs, noise.addon.eval_meta(5), True)
    assert u1.shape == (5, 8) and not torch.equal(u1, u2)  # a fresh N(0, I) vector, no memory needed
    state = sr_agent(source="knn_state")
    fill_memory(state)
    _, stored = state.addon.act_context(obs, state.addon.eval_meta(5), False)
    np.testing.assert_array_equal(stored["sr_query"], obs.numpy())  # no query module
    frozen = sr_agent(active="pretrain", reward_free=False)  # Table 1's "Freeze FT SR"
    fill_memory(frozen)
    u, _ = frozen.addon.act_context(obs, frozen.addon.eval_meta(5), False)
    assert torch.equal(u, torch.zeros(5, 8))
    empty = sr_agent()  # nothing in memory yet: u = 0
    assert torch.equal(empty.addon.act_context(obs, empty.addon.eval_meta(5), False)[0], torch.zeros(5, 8))


def test_checkpoint_round_trip_and_snapshot_hand_off():
    agent = sr_agent()
    fill_memory(agent)
    agent.update(collected_batch(agent))
    restored = sr_agent()
    restored.load_state_dict(agent.state_dict())
    torch.testing.assert_close(restored.addon.memory.states, agent.addon.memory.states)
    obs = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(restored.act(obs, deterministic=True)[0], agent.act(obs, deterministic=True)[0])
    fine = sr_agent(reward_free=False)
    fine.init_from_snapshot(agent.state_dict())
    torch.testing.assert_close(fine.addon.memory.carried, agent.addon.memory.states)
    assert all(torch.equal(a, b) for a, b in zip(fine.addon.query.parameters(), agent.addon.query.parameters(),
                                                 strict=True))
    plain = RND(OBS, ACT, hidden_dim=16, rnd_rep_dim=8)
    with pytest.raises(CheckpointError, match="without addon=self_reference"):
        sr_agent(reward_free=False).init_from_snapshot(plain.state_dict())


# ----------------------------------------------------------------------------- through the CLI config
TINY = ["algo.hidden_dim=32", "algo.rnd_rep_dim=16", "train.batch_size=32", "train.warmup_steps=60",
        "+env.kwargs.action_repeat=8", "eval.episodes=1", "eval.num_envs=1", "checkpoint.interval=0",
        "num_threads=1", "logging.progress=false", "logging.tensorboard=false", "train.log_interval=50"]
SR_TINY = ["addon=self_reference", "addon.dim=16", "addon.hidden_dim=16", "addon.window=1000"]


def test_rlkit_list_shows_the_urlb_agents_and_the_addon(capsys):
    from rlkit.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("rnd", "apt", "icm", "disagreement", "diayn", "smm", "aps", "proto", "cic", "moss"):
        assert f"  {name} " in out
    assert "addons (addon=NAME):" in out and "  self_reference  Self-Reference add-on" in out


def test_addon_is_refused_for_non_urlb_algorithms(tmp_path):
    with pytest.raises(ConfigError, match="addon=self_reference augments URLB agents only.*algo=sac"):
        trainer.run(compose(["algo=sac", "addon=self_reference", "env=pendulum", "train.steps=10",
                             f"run_dir={tmp_path / 'r'}"]))


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    root = tmp_path_factory.mktemp("sr")
    for name, extra in (("plain", []), ("sr", SR_TINY)):
        trainer.run(compose(["algo=rnd", "env=urlb-walker", "regime=pretrain", "train.steps=150", *TINY, *extra,
                             f"run_dir={root / name}"]))
    return root


def finetune(snapshots, tmp_path, snapshot: str, extra: list[str]):
    return trainer.run(compose(["algo=rnd", "env=urlb-walker_stand", "regime=finetune",
                                f"snapshot={snapshots / snapshot}", "train.steps=130", "eval.interval=0", *TINY, *extra,
                                f"run_dir={tmp_path / 'ft'}"]))


def test_rnd_with_sr_pretrains_and_finetunes_with_the_memory_carried(snapshots, tmp_path):
    from rlkit.checkpoint import latest_checkpoint, load_checkpoint

    summary = finetune(snapshots, tmp_path, "sr", SR_TINY)
    assert summary["finished"]
    snap = load_checkpoint(sorted((snapshots / "sr" / "snapshots").iterdir())[-1])
    pre_states = snap["state"]["addon"]["memory"]["states"]
    # refreshed at episode ends only: the one completed 125-step episode of the 150 steps
    assert snap["addon"] == "self_reference" and len(pre_states) == 125
    final = load_checkpoint(latest_checkpoint(tmp_path / "ft" / "checkpoints"))["algo"]["addon"]["memory"]
    torch.testing.assert_close(final["carried"], pre_states)
    assert len(final["states"]) == 125 + 125  # + the one finished 125-step finetuning episode


@pytest.mark.parametrize(("snapshot", "extra", "message"), [
    ("plain", SR_TINY, "pretrained with addon=none but this finetune has addon=self_reference"),
    ("sr", [], "pretrained with addon=self_reference but this finetune has addon=none"),
])
def test_snapshot_addon_mismatch_is_refused_naming_both(snapshots, tmp_path, snapshot, extra, message):
    with pytest.raises(CheckpointError, match=message):
        finetune(snapshots, tmp_path, snapshot, extra)


def test_pretraining_with_sr_resumes_exactly(tmp_path):
    from rlkit.regimes.urlb import PretrainRegime
    from tests.helpers import at_step, interrupt, metric_records

    overrides = ["algo=rnd", "env=urlb-walker", "regime=pretrain", "train.steps=260", "urlb.probe_batch=64", *TINY,
                 *SR_TINY]
    full = trainer.run(compose([*overrides, f"run_dir={tmp_path / 'full'}"]))
    with at_step(PretrainRegime, 190, interrupt), pytest.raises(KeyboardInterrupt):
        trainer.run(compose([*overrides, f"run_dir={tmp_path / 'cut'}"]))
    resumed = trainer.run(compose([*overrides, f"run_dir={tmp_path / 'cut'}", "resume=true"]))
    assert metric_records(tmp_path / "full") == metric_records(tmp_path / "cut")
    assert full["final_returns"] == resumed["final_returns"]
    records = metric_records(tmp_path / "full")
    assert any("sr/query_policy_loss" in r for r in records) and any("urlb/reward_drift" in r for r in records)
