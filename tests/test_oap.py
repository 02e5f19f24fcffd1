"""OAP (Yang et al. ICML 2023): query selection and budget, RankNet, the oracles' interface and label
file, and the identity with the base update when the oracle always prefers the dataset action."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from rlkit.algorithms.offline.oap import OAP
from rlkit.algorithms.offline.oap.oracles import EnvReturnOracle, FileOracle, PreferenceOracle
from rlkit.algorithms.offline.oap.ranknet import RankNet, prefers_policy, train_ranknet
from rlkit.algorithms.offline.oap.selection import round_size, round_steps, select_queries
from rlkit.algorithms.offline.td3bc import TD3BC
from rlkit.errors import ConfigError
from tests.helpers import dataset_batch
from tests.test_offline_algorithms import ACT_SPACE, OBS_SPACE, random_dataset

H = [32, 32]
TD3BC_BASE = {"_target_": "rlkit.algorithms.offline.td3bc.TD3BC", "hidden": H}
IQL_BASE = {"_target_": "rlkit.algorithms.offline.iql.IQL", "hidden": H, "max_steps": 100}


def label_file(tmp_path, rows, value="dataset", name="labels.csv"):
    path = tmp_path / name
    path.write_text("row,preferred\n" + "".join(f"{r},{value}\n" for r in rows))
    return str(path)


class FirstActionOracle(PreferenceOracle):
    """Prefers the action with the larger first component (a closed-form oracle for the tests)."""

    def _prefer(self, states, dataset_actions, policy_actions, rows, policy):
        return policy_actions[:, 0] > dataset_actions[:, 0]


def make_oap(tmp_path, base=TD3BC_BASE, oracle_rows=None, **kw):
    ds = random_dataset()
    rows = range(ds.size) if oracle_rows is None else oracle_rows
    params = {"query_limit": 40, "query_period": 5, "max_steps": 20, "ranknet_epochs": 3,
              "ranknet_hidden": [16], "schedule": "interval", **kw}
    torch.manual_seed(0)
    algo = OAP(OBS_SPACE, ACT_SPACE, base=base, env_id="toy", oracle="file",
               oracle_file=label_file(tmp_path, rows), **params)
    algo.on_dataset(ds)
    return algo, ds


def batches(ds, n, seed=1, size=32):
    rng = np.random.default_rng(seed)
    return [dataset_batch(ds, rng.integers(0, ds.size, size)) for _ in range(n)]


# --------------------------------------------------------------------------------------------- selection
def test_selection_picks_largest_divergence_and_prefers_unqueried():
    div = torch.tensor([0.1, 5.0, 3.0, 4.0, 0.2, 2.0])
    queried = torch.tensor([False, True, False, True, False, False])
    assert select_queries(div, queried, 3, unqueried_first=True).tolist() == [2, 5, 4]
    assert select_queries(div, queried, 3, unqueried_first=False).tolist() == [1, 3, 2]
    # once the unqueried rows are used up, the queried ones follow by divergence
    assert select_queries(div, queried, 6, unqueried_first=True).tolist() == [2, 5, 4, 0, 1, 3]
    # candidates restrict the choice
    assert select_queries(div, queried, 2, True, candidates=torch.tensor([0, 1, 4])).tolist() == [4, 0]


def test_round_schedule_and_sizes_spend_the_budget_exactly():
    assert round_steps(100, 25, "interval") == [25, 50, 75]
    assert round_steps(100, 25, "end") == [75]
    with pytest.raises(ConfigError, match="query_period"):
        round_steps(100, 100, "interval")
    used, sizes = 0, []
    for left in (3, 2, 1):
        sizes.append(round_size(10, used, left, 1000))
        used += sizes[-1]
    assert sizes == [3, 3, 4] and used == 10
    assert round_size(None, 0, 2, 77) == 77  # unlimited: every candidate


def test_budget_holds_exactly_across_rounds_and_resume(tmp_path):
    algo, ds = make_oap(tmp_path, query_limit=37)
    data = batches(ds, 20)
    for b in data[:8]:
        algo.update(b)
    state, rng = copy.deepcopy(algo.state_dict()), torch.get_rng_state()  # the regime saves both
    for b in data[8:]:
        algo.update(b)
    assert algo.queries_used == 37 == int(algo.queried.sum()) == algo.oracle.calls
    assert algo.rounds_done == 3

    resumed, _ = make_oap(tmp_path, query_limit=37)
    resumed.load_state_dict(state)
    torch.set_rng_state(rng)
    for b in data[8:]:
        resumed.update(b)
    assert resumed.queries_used == 37 and resumed.oracle.calls == 37
    assert torch.equal(resumed.target_action, algo.target_action)
    assert torch.equal(resumed.prefer_policy, algo.prefer_policy)
    for p, q in zip(resumed.base.actor.parameters(), algo.base.actor.parameters()):
        assert torch.equal(p, q)


# --------------------------------------------------------------------------------------------- RankNet
def test_ranknet_learns_a_separable_preference():
    torch.manual_seed(0)
    n = 512
    obs = torch.randn(n, 3)
    a, pi = torch.rand(n, 2) * 2 - 1, torch.rand(n, 2) * 2 - 1
    label = pi[:, 0] > a[:, 0]  # the policy wins iff its first action component is larger
    net = RankNet(3, 2, (64, 64), dropout=0.1)
    stats = train_ranknet(net, torch.optim.Adam(net.parameters(), 3e-3), obs[:400], a[:400], pi[:400],
                          label[:400], epochs=60, batch_size=64)
    assert stats["oap/ranknet_accuracy"] > 0.95
    held_out = (prefers_policy(net, obs[400:], a[400:], pi[400:]) == label[400:]).float().mean()
    assert held_out > 0.9


# --------------------------------------------------------------------------------------------- identity
@pytest.mark.parametrize("base", [TD3BC_BASE, IQL_BASE], ids=["td3bc", "iql"])
@pytest.mark.parametrize("ranknet", [True, False])
def test_dataset_preferring_oracle_equals_the_base_update_bit_for_bit(tmp_path, base, ranknet):
    # with the RankNet on, every row is queried (unlimited budget), so no pseudo-label can differ from the
    # oracle; its training runs under a forked RNG and must leave the base's random stream alone
    limit = None if ranknet else 40
    algo, ds = make_oap(tmp_path, base=base, ranknet=ranknet, query_limit=limit)
    from hydra.utils import get_class

    params = {k: v for k, v in base.items() if k != "_target_"}
    torch.manual_seed(0)
    reference = get_class(base["_target_"])(OBS_SPACE, ACT_SPACE, **params)
    reference.on_dataset(ds)
    reference.load_state_dict(algo.base.state_dict())
    torch.manual_seed(5)
    data = batches(ds, 20)
    for b in data:
        algo.update(b)
    assert not algo.prefer_policy.any()  # everything labelled: the dataset action
    torch.manual_seed(5)
    for b in data:
        reference.update(b)
    assert algo.rounds_done == 3 and algo.queries_used == (3 * ds.size if ranknet else 40)
    for name, module in reference._stateful_attributes().items():
        mine = algo.base._stateful_attributes()[name]
        if isinstance(module, torch.nn.Module):
            for p, q in zip(module.state_dict().values(), mine.state_dict().values()):
                assert torch.equal(p, q), name


def test_a_query_round_leaves_the_global_rng_alone(tmp_path):
    algo, ds = make_oap(tmp_path, query_limit=40, ranknet_epochs=5)
    state = torch.get_rng_state()
    metrics = algo.query_round()
    assert "oap/ranknet_loss" in metrics and algo.queries_used == 13
    assert torch.equal(torch.get_rng_state(), state)


def test_policy_preferred_rows_move_the_bc_target(tmp_path):
    algo, ds = make_oap(tmp_path, ranknet=False, query_limit=400, query_period=2, max_steps=4, target="frozen")
    algo.oracle = FirstActionOracle()
    for b in batches(ds, 2):
        algo.update(b)
    pi = algo.query_policy_action
    expected = pi[:, 0] > torch.as_tensor(ds.actions[:, 0])
    assert algo.queried.sum() == 400 and torch.equal(algo.prefer_policy[algo.queried], expected[algo.queried])
    rows = torch.nonzero(algo.prefer_policy).squeeze(-1)
    assert rows.numel() > 0
    assert torch.equal(algo.target_action[rows], pi[rows])
    batch = dataset_batch(ds, rows[:8].numpy())
    wrapped = algo.with_preferred_actions(batch)
    assert torch.equal(wrapped.action, batch.action)  # the critic keeps the dataset actions
    assert torch.equal(wrapped.policy_batch.action, pi[rows[:8]])


def test_live_target_follows_the_current_policy(tmp_path):
    algo, ds = make_oap(tmp_path, ranknet=False, query_limit=400, query_period=2, max_steps=4, target="live")
    algo.oracle = FirstActionOracle()
    for b in batches(ds, 2):
        algo.update(b)
    rows = torch.nonzero(algo.prefer_policy).squeeze(-1)[:8]
    wrapped = algo.with_preferred_actions(dataset_batch(ds, rows.numpy()))
    assert torch.allclose(wrapped.policy_batch.action, algo.policy_env_action(wrapped.obs))


def test_unlimited_queries_label_every_row_each_round(tmp_path):
    algo, ds = make_oap(tmp_path, query_limit=None, ranknet=False)
    for b in batches(ds, 20):
        algo.update(b)
    assert algo.queries_used == 3 * ds.size and bool(algo.queried.all())


# --------------------------------------------------------------------------------------------- oracles
def test_label_file_is_checked_with_line_numbers(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("row,preferred\n0,dataset\n1,maybe\n")
    with pytest.raises(ConfigError, match="line 3"):
        FileOracle(bad)
    bad.write_text("row,label\n0,dataset\n")
    with pytest.raises(ConfigError, match="line 1"):
        FileOracle(bad)
    oracle = FileOracle(label_file(tmp_path, [0, 5, 999], "policy"))
    with pytest.raises(ConfigError, match="line 4: row 999 is outside the dataset"):
        oracle.bind(random_dataset())
    answers = oracle.prefer(torch.zeros(2, 4), torch.zeros(2, 2), torch.zeros(2, 2), torch.tensor([5, 0]))
    assert answers.tolist() == [True, True] and oracle.calls == 2


def test_expert_oracle_without_a_shipped_critic_names_the_fix():
    with pytest.raises(ConfigError, match="algo.oracle_checkpoint=RUN_DIR"):
        OAP(OBS_SPACE, ACT_SPACE, base=TD3BC_BASE, env_id="pendulum", max_steps=10, query_period=5)


def test_shipped_hopper_critic_answers_and_breaks_ties_for_the_dataset():
    from rlkit import envs
    from rlkit.algorithms.offline.oap.oracles import load_expert_oracle

    env = envs.make("hopper")
    # building OAP with this oracle draws exactly the random numbers of building its base (same RNG stream)
    torch.manual_seed(3)
    TD3BC(env.observation_space, env.action_space, hidden=H)
    after_base = torch.get_rng_state()
    torch.manual_seed(3)
    OAP(env.observation_space, env.action_space, base=TD3BC_BASE, env_id="hopper", max_steps=10, query_period=5)
    assert torch.equal(torch.get_rng_state(), after_base)
    oracle = load_expert_oracle("hopper", None, env.observation_space, env.action_space, torch.device("cpu"))
    assert oracle.description["train_steps"] > 0 and "normalized_score" in oracle.description
    obs = torch.as_tensor(np.stack([env.reset(seed=i)[0] for i in range(16)]), dtype=torch.float32)
    a = torch.rand(16, 3) * 2 - 1
    assert not oracle.prefer(obs, a, a.clone(), torch.arange(16)).any()  # equal actions: the dataset's
    b = torch.rand(16, 3) * 2 - 1
    forward, backward = oracle.prefer(obs, a, b, torch.arange(16)), oracle.prefer(obs, b, a, torch.arange(16))
    q_a, q_b = oracle.q_fn(obs, a), oracle.q_fn(obs, b)
    assert torch.equal(forward, q_b > q_a) and torch.equal(backward, q_a > q_b)
    assert oracle.calls == 48


def test_env_return_oracle_refuses_unrestorable_envs_and_ranks_rollouts():
    with pytest.raises(ConfigError, match="cannot restore env 'antmaze-umaze'"):
        EnvReturnOracle("antmaze-umaze")
    with pytest.raises(ConfigError, match="cannot rebuild env 'ant'"):
        EnvReturnOracle("ant", restore="observation")
    from rlkit import envs

    env = envs.make("hopper")
    obs, _ = env.reset(seed=0)
    oracle = EnvReturnOracle("hopper", horizon=5, num_envs=2, restore="observation")
    state = torch.as_tensor(np.stack([obs, obs]), dtype=torch.float32)
    qpos, qvel = oracle.sim_states(state.double().numpy(), np.arange(2))
    zero = lambda o: torch.zeros(o.shape[0], 3)  # noqa: E731
    # hopper's reward: forward velocity + healthy bonus - 1e-3 |a|² -- a zero action beats a saturated one
    # on the control cost when the rest of the rollout is the same, so the first answer is "dataset"
    data, pol = torch.zeros(2, 3), torch.ones(2, 3)
    returns_zero = oracle.returns(qpos, qvel, data.numpy(), zero, torch.device("cpu"))
    again = oracle.returns(qpos, qvel, data.numpy(), zero, torch.device("cpu"))
    assert np.array_equal(returns_zero, again)  # restoring the state makes rollouts repeatable
    answer = oracle.prefer(state, data, pol, torch.tensor([0, 1]), policy=zero)
    returns_one = oracle.returns(qpos, qvel, pol.numpy(), zero, torch.device("cpu"))
    assert answer.tolist() == (returns_one > returns_zero).tolist()
    assert oracle.calls == 2


def test_env_return_oracle_restores_the_stored_simulator_state(tmp_path):
    """``restore=infos``: a collected file carries D4RL's ``infos/qpos``, ``infos/qvel``; restoring row i reproduces
    its observation exactly, and the oracle's first-step reward equals the row's reward for the dataset action."""
    from rlkit import envs
    from rlkit.data.collect import collect_to_file
    from rlkit.data.d4rl import load_d4rl_file

    path = collect_to_file("hopper-random-v2", steps=400, seed=3, num_envs=2, out=tmp_path / "hr.hdf5")
    data = load_d4rl_file(path, "hopper-random-v2")
    assert data.sim_states["qpos"].shape == (data.size, 6) and data.sim_states["qvel"].shape == (data.size, 6)
    rows = np.arange(0, data.size, 17)
    oracle = EnvReturnOracle("hopper", horizon=1, num_envs=4)
    oracle.bind(data)
    qpos, qvel = oracle.sim_states(data.observations[rows], rows)
    assert np.abs(qpos[:, 0]).max() > 0  # the x position is stored, not rebuilt as 0
    env = envs.make("hopper")
    env.reset(seed=0)
    from rlkit.envs.restore import restore_state

    restored = np.stack([restore_state(env, p, v) for p, v in zip(qpos, qvel)])
    np.testing.assert_allclose(restored, data.observations[rows], atol=1e-5)
    first = oracle.returns(qpos, qvel, data.actions[rows], lambda o: torch.zeros(o.shape[0], 3), torch.device("cpu"))
    np.testing.assert_allclose(first, data.rewards[rows], rtol=1e-4, atol=1e-4)
    sub = data.subset(rows)
    assert np.array_equal(sub.sim_states["qpos"], data.sim_states["qpos"][rows])
    no_infos = type(data)(**{k: getattr(data, k) for k in ("observations", "actions", "rewards", "terminals",
                                                            "timeouts", "next_observations")})
    with pytest.raises(ConfigError, match="simulator states"):
        oracle.bind(no_infos)


# --------------------------------------------------------------------------------------------- end to end
def test_cli_run_resumes_exactly_and_spends_the_budget_once(compose_cfg, tmp_path, hopper_random_file):
    """``rlkit train algo=oap`` through the offline regime, interrupted between two query rounds and resumed:
    the same metrics as an uninterrupted run, and exactly ``query_limit`` queries in total."""
    from rlkit import trainer
    from rlkit.regimes.offline import OfflineRegime
    from tests.helpers import at_step, interrupt, metric_records

    labels = tmp_path / "labels.csv"
    labels.write_text("row,preferred\n" + "".join(f"{r},{'policy' if r % 3 else 'dataset'}\n" for r in range(1500)))
    overrides = ["algo=oap", "env=hopper-random", f"env.dataset.path={hopper_random_file}",
                 "env.dataset.source=file", "train.steps=60", "train.log_interval=10", "eval.interval=30",
                 "eval.episodes=1", "eval.num_envs=1", "checkpoint.interval=20", "train.batch_size=32",
                 "algo.base.hidden=[32,32]", "algo.ranknet_hidden=[32]", "algo.ranknet_epochs=2",
                 "algo.query_limit=50", "algo.query_period=20", "algo.schedule=interval", "algo.oracle=file",
                 f"algo.oracle_file={labels}"]
    full = trainer.run(compose_cfg(*overrides, f"run_dir={tmp_path / 'full'}"))
    cut = tmp_path / "cut"
    with at_step(OfflineRegime, 30, interrupt), pytest.raises(KeyboardInterrupt):
        trainer.run(compose_cfg(*overrides, f"run_dir={cut}"))
    resumed = trainer.run(compose_cfg(*overrides, f"run_dir={cut}", "resume=true"))
    assert metric_records(tmp_path / "full") == metric_records(cut)
    assert full["final_normalized_score"] == resumed["final_normalized_score"]
    queries = [r["oap/queries"] for r in metric_records(cut) if "oap/queries" in r]
    assert queries == [25.0, 50.0]


def test_expert_oracle_from_a_sac_run_and_from_its_exported_critic(compose_cfg, tmp_path):
    """The recipe of the shipped critic: an rlkit SAC run, then ``python -m rlkit.data.behaviour RUN TASK --critic``;
    the run directory and the exported float16 file give the same preferences."""
    from rlkit import envs, trainer
    from rlkit.algorithms.offline.oap.oracles import load_expert_oracle
    from rlkit.data.behaviour import export_critic

    run = tmp_path / "sac"
    trainer.run(compose_cfg("algo=sac", "env=hopper", "train.steps=300", "train.warmup_steps=100",
                            "train.batch_size=32", "algo.hidden=[32,32]", "eval.interval=150", "eval.episodes=1",
                            "eval.num_envs=1", "checkpoint.interval=150", "checkpoint.keep=0", f"run_dir={run}"))
    info = export_critic(run, "hopper", tmp_path / "out")
    assert info["train_steps"] in (150, 300) and "normalized_score" in info
    env = envs.make("hopper")
    spaces = (env.observation_space, env.action_space, torch.device("cpu"))
    from_file = load_expert_oracle("hopper", str(tmp_path / "out" / "hopper-expert-critic.pt"), *spaces)
    from_run = load_expert_oracle("hopper", str(run), *spaces)
    obs = torch.as_tensor(np.stack([env.reset(seed=i)[0] for i in range(64)]), dtype=torch.float32)
    a, b = torch.rand(64, 3) * 2 - 1, torch.rand(64, 3) * 2 - 1
    if info["train_steps"] == 300:  # the newest checkpoint is the best one: the same critic, rounded to float16
        assert torch.allclose(from_file.q_fn(obs, a), from_run.q_fn(obs, a), rtol=1e-2, atol=1e-2)
    assert from_file.prefer(obs, a, b, torch.arange(64)).dtype == torch.bool
    with pytest.raises(ConfigError, match="does not exist"):
        load_expert_oracle("hopper", str(tmp_path / "missing"), *spaces)


# --------------------------------------------------------------------------------------------- no harm by default
class UnsureOracle(PreferenceOracle):
    """Answers at random (seeded by the row) and is confident of nothing: OAP must not act on any answer."""

    def _judge(self, states, dataset_actions, policy_actions, rows, policy):
        preferred = (rows * 7919 % 2).bool()
        return preferred, torch.zeros_like(preferred)


@pytest.mark.parametrize("base", [TD3BC_BASE, IQL_BASE], ids=["td3bc", "iql"])
def test_an_oracle_without_confident_answers_leaves_the_base_update_unchanged(tmp_path, base):
    """The default ``target=relax`` with RankNet pseudo-labels: no confident answer, no relaxed row, and every
    parameter equal to the base algorithm's after the same batches, bit for bit."""
    from hydra.utils import get_class

    algo, ds = make_oap(tmp_path, base=base, target="relax", query_limit=120, confidence=1.0)
    algo.oracle = UnsureOracle(confidence=1.0)
    params = {k: v for k, v in base.items() if k != "_target_"}
    torch.manual_seed(0)
    reference = get_class(base["_target_"])(OBS_SPACE, ACT_SPACE, **params)
    reference.on_dataset(ds)
    reference.load_state_dict(algo.base.state_dict())
    data = batches(ds, 20)
    torch.manual_seed(5)
    metrics = [algo.update(b).metrics for b in data]
    torch.manual_seed(5)
    for b in data:
        reference.update(b)
    assert algo.queries_used == 120 and algo.rounds_done == 3
    assert not algo.prefer_policy.any() and torch.equal(algo.bc_weight, torch.ones(ds.size))
    assert [m["oap/relaxed_rows"] for m in metrics if "oap/relaxed_rows" in m] == [0.0, 0.0, 0.0]
    for name, module in reference._stateful_attributes().items():
        if isinstance(module, torch.nn.Module):
            for p, q in zip(module.state_dict().values(), algo.base._stateful_attributes()[name].state_dict().values()):
                assert torch.equal(p, q), name


def test_relax_keeps_the_dataset_action_and_weights_the_bc_term(tmp_path):
    algo, ds = make_oap(tmp_path, ranknet=False, query_limit=400, query_period=2, max_steps=4, target="relax",
                        relax_weight=0.25)
    algo.oracle = FirstActionOracle()
    for b in batches(ds, 2):
        algo.update(b)
    preferred = torch.nonzero(algo.prefer_policy).squeeze(-1)
    assert preferred.numel() > 0
    assert torch.equal(algo.bc_weight, torch.where(algo.prefer_policy, 0.25, 1.0))
    assert torch.equal(algo.target_action, torch.as_tensor(ds.actions))  # never redirected
    rows = np.concatenate([preferred[:4].numpy(), torch.nonzero(~algo.prefer_policy).squeeze(-1)[:4].numpy()])
    batch = dataset_batch(ds, rows)
    wrapped = algo.with_preferred_actions(batch)
    assert torch.equal(wrapped.policy_batch.action, batch.action)
    assert wrapped.policy_batch.bc_weight.tolist() == [0.25] * 4 + [1.0] * 4
    # TD3+BC's BC term: mean_i b_i mean_d (π(s_i)_d - a_i,d)², checked against a hand computation
    base = algo.base
    _, bc, _ = base.actor_loss(batch.obs, batch.action, None, wrapped.policy_batch.bc_weight)
    with torch.no_grad():
        pi = torch.tanh(base.actor(base.obs_norm(batch.obs)))
        per_row = (pi - base.from_env_action(batch.action)).pow(2).mean(-1)
    assert torch.allclose(bc, (per_row * torch.tensor([0.25] * 4 + [1.0] * 4)).mean())


def test_fraction_schedule_spreads_rounds_over_the_second_half():
    assert round_steps(100, 0, "fraction", 0.5, 5) == [50, 60, 70, 80, 90]
    assert round_steps(1_000_000, 0, "fraction", 0.8, 2) == [800_000, 900_000]
    with pytest.raises(ConfigError, match="first_query_at"):
        round_steps(100, 0, "fraction", 1.0, 5)


def test_expert_oracle_is_confident_only_where_its_heads_agree():
    from rlkit.algorithms.offline.oap.oracles import ExpertQOracle

    # two heads; Q_k(s, a) = a_0 * slope_k: a head with a negative slope disagrees about which action is better
    slopes = torch.tensor([[1.0, 1.0, 1.0], [1.0, -0.5, 0.9]])

    def q_heads(obs, action):
        return slopes[:, : action.shape[0]] * action[:, 0]

    oracle = ExpertQOracle(q_heads, {}, confidence=1.0)
    a, pi = torch.zeros(3, 2), torch.ones(3, 2)
    judged = oracle.judge(torch.zeros(3, 4), a, pi, torch.arange(3))
    # min-Q prefers π on rows 0 and 2; row 1's heads disagree (d = 1, -0.5): mean 0.25 < std 0.75
    assert judged.policy_preferred.tolist() == [True, False, True]
    assert judged.confident.tolist() == [True, False, True]
    assert ExpertQOracle(q_heads, {}, confidence=0.0).judge(torch.zeros(3, 4), a, pi, torch.arange(3)).confident.all()
    assert ExpertQOracle(q_heads, {}, confidence=1.0, margin=1.5).judge(
        torch.zeros(3, 4), a, pi, torch.arange(3)).confident.tolist() == [False, False, False]


def test_ranknet_trained_on_coin_flips_labels_nothing(tmp_path):
    """A RankNet fit to random labels agrees with them on held-out rows about half of the time, below the gate:
    it pseudo-labels no row."""
    ds = random_dataset()
    rng = np.random.default_rng(0)
    path = tmp_path / "coin.csv"
    path.write_text("row,preferred\n" + "".join(f"{r},{rng.choice(['dataset', 'policy'])}\n" for r in range(ds.size)))
    torch.manual_seed(0)
    algo = OAP(OBS_SPACE, ACT_SPACE, base=TD3BC_BASE, env_id="toy", oracle="file", oracle_file=str(path),
               query_limit=150, max_steps=20, schedule="fraction", first_query_at=0.5, rounds=1, ranknet_epochs=20,
               ranknet_hidden=[32])
    algo.on_dataset(ds)
    metrics = [algo.update(b).metrics for b in batches(ds, 20)]
    rounds = [m for m in metrics if "oap/round" in m]
    assert len(rounds) == 1 and rounds[0]["oap/ranknet_heldout_agreement"] < 0.7
    assert rounds[0]["oap/ranknet_labelled"] == 0.0
    assert rounds[0]["oap/relaxed_rows"] == float(algo.query_label.sum()) > 0  # the queried answers still count


class SimulatorOracle(PreferenceOracle):
    """Prefers like the ground-truth check's own rollouts (or the opposite, ``invert``): agreement 1 or 0."""

    def __init__(self, env_id, dataset, invert=False):
        super().__init__()
        from rlkit import envs
        from rlkit.algorithms.offline.oap.oracles import load_expert_policy

        self.dataset, self.invert = dataset, invert
        env = envs.make(env_id)
        self.follow = load_expert_policy(env_id, env.observation_space, env.action_space, torch.device("cpu"))
        self.pool = [envs.make(env_id) for _ in range(8)]

    def _prefer(self, states, dataset_actions, policy_actions, rows, policy):
        from rlkit.envs.restore import rollout_returns

        r = rows.numpy()
        qpos, qvel = self.dataset.sim_states["qpos"][r], self.dataset.sim_states["qvel"][r]
        ret = [rollout_returns(self.pool, qpos, qvel, x.numpy(), self.follow, 5, torch.device("cpu"), 0.99)
               for x in (dataset_actions, policy_actions)]
        return torch.as_tensor((ret[1] > ret[0]) != self.invert)


def test_oracle_agreement_is_measured_and_a_wrong_oracle_refused(tmp_path, hopper_random_file):
    from rlkit import envs
    from rlkit.algorithms.offline.oap.oracles import ground_truth_agreement
    from rlkit.data.d4rl import load_d4rl_file

    data = load_d4rl_file(hopper_random_file, "hopper-random-v2")
    env = envs.make("hopper")
    spaces = (env.observation_space, env.action_space, torch.device("cpu"))
    right = ground_truth_agreement(SimulatorOracle("hopper", data), data, "hopper-random", *spaces, pairs=48,
                                   horizon=5)
    wrong = ground_truth_agreement(SimulatorOracle("hopper", data, invert=True), data, "hopper-random", *spaces,
                                   pairs=48, horizon=5)
    assert (right.agreement, wrong.agreement, right.reason) == (1.0, 0.0, "")
    assert 24 <= right.confident < 48  # the decisive half of the pairs (ties at the median gap included)
    labels = FileOracle(label_file(tmp_path, [0, 1]))
    assert np.isnan(ground_truth_agreement(labels, data, "hopper-random", *spaces).agreement)
    algo = OAP(*spaces[:2], base=TD3BC_BASE, env_id="hopper-random", max_steps=20, oracle="file",
               oracle_file=label_file(tmp_path, [0, 1]), agreement_pairs=48, agreement_horizon=5)
    algo.oracle = SimulatorOracle("hopper", data, invert=True)
    with pytest.raises(ConfigError, match=r"agrees with simulator rollouts on 0.00 of its \d+ confident answers"):
        algo.on_dataset(data)
    algo.min_oracle_agreement = 0.0
    algo.on_dataset(data)
    assert algo.oracle_agreement == 0.0
    assert algo.update(dataset_batch(data, np.arange(8))).metrics["oap/oracle_agreement"] == 0.0
