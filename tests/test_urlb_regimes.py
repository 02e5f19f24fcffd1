"""URLB regimes (Laskin et al. 2021, released code's protocol): reward-free pretraining with snapshots,
finetuning from a snapshot, their errors, exact resume of pretraining, the URLB configs at paper settings, the
per-domain report, and a CPU-sized pretrain -> finetune run on walker stand whose returns rise.

All runs use the real dm_control environments with small networks (``algo.hidden_dim=32``).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import rlkit.regimes.urlb as urlb
from rlkit import trainer
from rlkit.algorithms.unsupervised import moss_mode
from rlkit.checkpoint import latest_checkpoint, load_checkpoint
from rlkit.config import compose, group_options
from rlkit.envs.dmc import URLB_DOMAINS, URLB_TASKS
from rlkit.errors import CheckpointError, ConfigError
from rlkit.evaluation import statistics as st
from rlkit.evaluation.report import build_report, urlb_tables
from rlkit.evaluation.scores import URLB_EXPERT
from rlkit.regimes.urlb import FinetuneRegime, PretrainRegime
from tests.helpers import at_step, interrupt, metric_records

TINY = ["algo.hidden_dim=32", "train.batch_size=32", "algo.skill_dim=8", "algo.knn_k=4", "train.warmup_steps=100",
        "train.log_interval=100", "eval.episodes=1", "eval.num_envs=1", "checkpoint.interval=0", "num_threads=1"]
PRETRAIN = ["algo=moss", "env=urlb-walker", "regime=pretrain", "train.steps=300", "pretrain.snapshot_frames=[100,200]",
            "algo.partitions=10", *TINY]  # partitions 10: explore/control every 100 steps of the 1000-step episode


def cfg_of(*overrides: str):
    return compose(["logging.progress=false", "logging.tensorboard=false", *overrides])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("urlb") / "pretrain"
    summary = trainer.run(cfg_of(*PRETRAIN, f"run_dir={run_dir}"))
    return run_dir, summary


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def load_into(module: torch.nn.Module, state: dict) -> torch.nn.Module:
    module.load_state_dict(state)
    return module


# ----------------------------------------------------------------------------- pretraining
def test_pretraining_writes_snapshots_and_stores_the_meta(pretrained):
    run_dir, summary = pretrained
    files = urlb.list_snapshots(run_dir)
    assert [p.name for p in files] == ["snapshot_100.pt", "snapshot_200.pt", "snapshot_300.pt"]  # + the run's end
    snap = urlb.load_snapshot(files[0], "cpu")
    assert (snap["frames"], snap["step"], snap["algo_name"], snap["env"]) == (100, 100, "moss", "urlb-walker")
    assert summary["final_normalized_score"] is None and summary["snapshots"] == [str(p) for p in files]

    buffer = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"))["regime_state"]["buffer"]["storage"]
    data = {k: v.numpy() for k, v in buffer["data"].items()}
    assert len(data["skill"]) == 300  # one episode so far: row t is episode step t
    t = np.arange(300)
    np.testing.assert_array_equal(data["mode"], moss_mode(t, 1000, 10.0))  # mode of the 50-step block's start
    assert set(np.unique(data["mode"])) == {0.0, 1.0}
    skills = data["skill"].reshape(6, 50, 8)
    assert (skills == skills[:, :1]).all()  # constant within a 50-step block ...
    assert all(not np.array_equal(skills[i, 0], skills[i + 1, 0]) for i in range(5))  # ... redrawn at its start
    control = data["mode"][::50] == 1  # skill_mode=half: control skills [0, u], explore skills [u, 0]
    assert (skills[control][..., :4] == 0).all() and (skills[~control][..., 4:] == 0).all()
    assert data["reward"].std() > 0  # the env's reward is stored (and ignored by the agent)


def run_interrupted_and_resumed(tmp_path, regime_cls, overrides, at):
    full = trainer.run(cfg_of(*overrides, f"run_dir={tmp_path / 'full'}"))
    with at_step(regime_cls, at, interrupt), pytest.raises(KeyboardInterrupt):
        trainer.run(cfg_of(*overrides, f"run_dir={tmp_path / 'cut'}"))
    resumed = trainer.run(cfg_of(*overrides, f"run_dir={tmp_path / 'cut'}", "resume=true"))
    assert metric_records(tmp_path / "full") == metric_records(tmp_path / "cut")
    assert full["final_returns"] == resumed["final_returns"]
    return full, resumed


def test_pretraining_resume_is_exact(tmp_path):
    overrides = [*PRETRAIN, "train.steps=260", "+env.kwargs.action_repeat=4"]  # 250-step evaluation episodes
    run_interrupted_and_resumed(tmp_path, PretrainRegime, overrides, at=170)
    for frames in (100, 200, 1040):  # 25, 50 and 260 steps at action repeat 4
        a = urlb.load_snapshot(tmp_path / "full" / "snapshots" / f"snapshot_{frames}.pt", "cpu")["state"]
        b = urlb.load_snapshot(tmp_path / "cut" / "snapshots" / f"snapshot_{frames}.pt", "cpu")["state"]
        for name in ("actor", "critic", "cic", "reward_stats"):
            assert all(torch.equal(a[name][k], b[name][k]) for k in a[name]), (frames, name)


def test_finetune_resume_is_exact_across_the_skill_search(pretrained, tmp_path):
    run_dir, _ = pretrained
    overrides = ["algo=moss", "env=urlb-walker_stand", "regime=finetune", f"snapshot={run_dir}", "train.steps=160",
                 "+env.kwargs.action_repeat=4", "eval.interval=80", *TINY]
    full, resumed = run_interrupted_and_resumed(tmp_path, FinetuneRegime, overrides, at=70)
    assert resumed["snapshot"] == full["snapshot"] and resumed["snapshot_frames"] == 300


# ----------------------------------------------------------------------------- finetuning
def finetune_regime(tmp_path, *overrides: str) -> FinetuneRegime:
    cfg = cfg_of("regime=finetune", "train.steps=200", *TINY, *overrides, f"run_dir={tmp_path / 'ft'}")
    regime = FinetuneRegime(cfg, tmp_path / "ft")
    return regime


def test_snapshot_to_finetune_round_trip(pretrained, tmp_path):
    run_dir, _ = pretrained
    regime = finetune_regime(tmp_path, "algo=moss", "env=urlb-walker_stand", f"snapshot={run_dir}")
    regime.setup()
    try:
        snap = urlb.load_snapshot(run_dir / "snapshots" / "snapshot_300.pt", "cpu")  # the newest
        assert regime.snapshot_info["snapshot_frames"] == 300
        pre = snap["state"]
        algo = regime.algo
        assert same(params(algo.actor), params(load_into(type(algo.actor)(*_actor_args(algo)), pre["actor"])))
        critic = load_into(type(algo.critic)(*_critic_args(algo)), pre["critic"])
        assert same(params(algo.critic.trunk), params(critic.trunk))
        assert not same(params(algo.critic.q1), params(critic.q1))
        assert not same(params(algo.critic.q2), params(critic.q2))
        assert not same(params(algo.critic_target.trunk), params(critic.trunk))  # target from the fresh critic
        assert regime.buffer.nstep == 3 and not algo.reward_free

        # MOSS seed steps: the pretrained actor, deterministic, with the grid-search candidates; no updates
        for _ in range(100):
            regime.train_step()
            regime.step += regime.step_increment
        rows = {k: torch.as_tensor(v[:100]) for k, v in regime.buffer.storage.arrays.items()}
        assert regime.updates_done == 0
        expected, _ = algo.act(rows["obs"].numpy(), {"skill": rows["skill"].numpy()}, deterministic=True)
        np.testing.assert_allclose(rows["action"].numpy(), expected, atol=1e-6)
        np.testing.assert_allclose(rows["skill"][::50, 0].numpy(), [-1.0, 0.0])  # linspace(-1, 0, 100 // 50)
        for _ in range(20):
            regime.train_step()
            regime.step += regime.step_increment
        assert regime.updates_done == 10  # one update every 2 steps after the seed steps
        np.testing.assert_array_equal(regime.buffer.storage.arrays["skill"][100:120], -np.ones((20, 8)))  # the best
    finally:
        regime.close()


def _actor_args(algo):
    return (algo.obs_dim + algo.meta_dim, algo.action_dim, algo.hidden_dim, algo.hidden_dim, False)


def _critic_args(algo):
    return (algo.obs_dim + algo.meta_dim, algo.action_dim, algo.hidden_dim, algo.feature_dim, False)


def test_snapshot_selection_by_frames_and_file(pretrained, tmp_path):
    run_dir, _ = pretrained
    assert urlb.resolve_snapshot(run_dir, 100).name == "snapshot_100.pt"
    assert urlb.resolve_snapshot(run_dir / "snapshots" / "snapshot_200.pt").name == "snapshot_200.pt"
    with pytest.raises(CheckpointError, match="no snapshot at 150 frames; it has: 100, 200, 300"):
        urlb.resolve_snapshot(run_dir, 150)


@pytest.mark.parametrize(("overrides", "error", "message"), [
    (["algo=moss", "env=urlb-walker_stand", "snapshot={missing}"], CheckpointError, "does not exist"),
    (["algo=moss", "env=urlb-walker_stand", "snapshot={empty}"], CheckpointError, "holds no snapshots"),
    (["algo=moss", "env=urlb-walker_stand", "snapshot={corrupt}"], CheckpointError, "corrupt or truncated"),
    (["algo=moss", "env=urlb-walker_stand", "snapshot={checkpoint}"], CheckpointError, "not a URLB pretraining"),
    (["algo=cic", "env=urlb-walker_stand", "snapshot={run}"], CheckpointError, "finetune it with algo=moss"),
    (["algo=moss", "env=urlb-walker_stand", "snapshot={run}", "algo.hidden_dim=64"], CheckpointError,
     "finetune with algo.hidden_dim=32"),
    (["algo=moss", "env=urlb-quadruped_walk", "snapshot={run}"], CheckpointError, "same domain"),
])
def test_bad_snapshots_and_agents_are_refused(pretrained, tmp_path, overrides, error, message):
    run_dir, _ = pretrained
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((run_dir / "snapshots" / "snapshot_100.pt").read_bytes()[:200])
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "nothing", "empty": tmp_path / "empty", "corrupt": corrupt, "run": run_dir,
             "checkpoint": latest_checkpoint(run_dir / "checkpoints")}
    regime = finetune_regime(tmp_path, *[o.format(**paths) for o in overrides])
    try:
        with pytest.raises(error, match=message):
            regime.setup()
    finally:
        if getattr(regime, "env", None) is not None:
            regime.close()


def test_non_urlb_agents_are_refused(tmp_path):
    """SAC does not declare the URLB regimes, so the regime choice is refused before anything is built."""
    with pytest.raises(ConfigError, match="algo=sac does not train in regime=finetune; it declares online"):
        trainer.run(cfg_of("algo=sac", "env=urlb-walker_stand", "regime=finetune", "algo.hidden=[32,32]",
                           f"run_dir={tmp_path / 'sac'}"))


def test_ddpg_cannot_pretrain(tmp_path):
    with pytest.raises(ConfigError, match="algo=ddpg does not train in regime=pretrain; it declares finetune"):
        trainer.run(cfg_of("algo=ddpg", "env=urlb-walker", "regime=pretrain", "algo.hidden_dim=32",
                           f"run_dir={tmp_path / 'r'}"))


# ----------------------------------------------------------------------------- configs at paper settings
@pytest.mark.parametrize("algo", ["ddpg", "cic", "moss", "rnd", "apt", "icm", "disagreement", "diayn", "smm", "aps",
                                  "proto"])
def test_paper_settings(algo):
    names = {f"urlb-{t}" for t in URLB_TASKS} | {f"urlb-{d}" for d in URLB_DOMAINS}
    assert names <= set(group_options("env"))
    for domain in URLB_DOMAINS:
        cfg = cfg_of(f"algo={algo}", f"env=urlb-{domain}")
        assert (cfg.train.steps, cfg.train.warmup_steps, cfg.eval.interval) == (2_000_000, 4000, 0)
        assert list(cfg.pretrain.snapshot_frames) == [100_000, 500_000, 1_000_000, 2_000_000]
        assert (cfg.train.batch_size, cfg.train.updates_per_step, cfg.train.buffer_capacity) == (1024, 0.5, 10**6)
        assert (cfg.algo.hidden_dim, cfg.algo.nstep, cfg.algo.lr, cfg.algo.tau) == (1024, 3, 1e-4, 0.01)
    for task in URLB_TASKS:
        cfg = cfg_of(f"algo={algo}", f"env=urlb-{task}")
        assert (cfg.train.steps, cfg.eval.interval, cfg.eval.episodes, cfg.eval.at_start) == (100_000, 10_000, 10, True)
        assert cfg.env.score.table == "urlb" and cfg.env.score.task == task and task in URLB_EXPERT
        if algo == "moss":
            jaco = task.startswith("jaco")
            assert (cfg.algo.skill_mode, cfg.algo.partitions, cfg.algo.search_mode) == (
                ("sign", 1.5, "constant") if jaco else ("half", 2.0, "grid_search"))


# ----------------------------------------------------------------------------- report
def test_urlb_report_tables_per_domain(tmp_path):
    rng = np.random.default_rng(0)
    scores = {}
    for algo in ("cic", "moss"):
        for task in ("walker_run", "walker_flip", "jaco_reach_top_left"):
            for seed in range(3):
                s = float(rng.uniform(0.2, 1.1))
                scores[(algo, task, seed)] = s
                run = tmp_path / algo / task / str(seed)
                run.mkdir(parents=True)
                summary = {"algo": algo, "env": f"urlb-{task}", "seed": seed, "steps": 100000, "wall_time_s": 1.0,
                           "final_normalized_score": s, "final_return": s * URLB_EXPERT[task], "best_score": s,
                           "score_table": "urlb", "urlb_domain": task.split("_")[0]}
                (run / "summary.json").write_text(json.dumps(summary))
    tables = urlb_tables(_summaries(tmp_path), reps=200)
    assert sorted(tables) == ["jaco", "walker"]
    moss = next(r for r in tables["walker"] if r["algo"] == "moss")
    matrix = np.array([[scores[("moss", t, s)] for t in ("walker_flip", "walker_run")] for s in range(3)])
    assert moss["iqm"][0] == pytest.approx(st.iqm(matrix))
    assert moss["optimality_gap"][0] == pytest.approx(st.optimality_gap(matrix))
    assert moss["iqm"][1] <= moss["iqm"][0] <= moss["iqm"][2]
    assert moss["tasks"]["urlb-walker_run"][0] == pytest.approx(np.mean([scores[("moss", "walker_run", s)]
                                                                         for s in range(3)]))
    text = build_report([str(tmp_path)], reps=200)  # `rlkit report` adds the per-domain tables
    assert "### walker" in text and "### jaco" in text and "urlb-walker_flip" in text


def _summaries(path):
    from rlkit.evaluation.report import find_runs, load_summaries

    return load_summaries(find_runs([str(path)]))


# ----------------------------------------------------------------------------- the CPU-sized run
CPU_SIZED = ["num_threads=1", "algo.hidden_dim=64", "train.batch_size=128", "algo.skill_dim=16", "algo.lr=1e-3",
             "+env.kwargs.action_repeat=8", "train.warmup_steps=250", "checkpoint.interval=0",
             "train.log_interval=1000"]


def test_cpu_sized_pretrain_then_finetune_on_walker_stand(tmp_path):
    """1000 steps of reward-free MOSS pretraining, then 3000 steps of finetuning on walker stand (action repeat 8:
    125-step episodes, 24k frames): the final evaluation beats the first (frame 0, the pretrained actor).
    Measured with seeds 0-3 at this setting (named seed streams, rlkit.utils.derive_seed): final minus first
    = +14, +193, +39, +75, so the final return beat the first every time, by 14 or more."""
    pre = trainer.run(cfg_of("algo=moss", "env=urlb-walker", "regime=pretrain", "train.steps=1000",
                             "eval.episodes=1", "eval.num_envs=1", *CPU_SIZED, f"run_dir={tmp_path / 'pre'}"))
    assert pre["finished"]
    fine = trainer.run(cfg_of("algo=moss", "env=urlb-walker_stand", "regime=finetune", f"snapshot={tmp_path / 'pre'}",
                              "train.steps=3000", "train.updates_per_step=1.0", "eval.interval=1000",
                              "eval.episodes=3", "eval.num_envs=3", *CPU_SIZED, f"run_dir={tmp_path / 'fine'}"))
    evals = [json.loads(line) for line in (tmp_path / "fine" / "metrics.jsonl").read_text().splitlines()]
    returns = [r["eval/return_mean"] for r in evals if "eval/return_mean" in r]
    assert len(returns) == 4 and fine["snapshot_frames"] == 8000 and fine["frames"] == 24000
    assert returns[-1] > returns[0], returns
    shutil.rmtree(tmp_path)
