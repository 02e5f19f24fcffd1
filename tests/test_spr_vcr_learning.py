"""CPU-sized learning checks (slow): SPR vs VCR on Boxing (SPR protocol; a game SPR learns early, unlike Pong)
and DrQ vs VCR on cartpole-swingup from pixels, equal budgets, 2 seeds each. The README's learning-check table
has the figures these runs gave on 2 shared CPU cores (the Boxing figures, 3 seeds with bootstrap CIs, come from
``bench/spr_vcr_learning.py`` at a larger budget). At these budgets neither task is learnt: the Atari check
asserts that the distributional TD loss falls; the DMC check that the critics' loss
falls and their Q estimates grow, that VCR's consistency term is active (and DrQ's, at weight 0, is not), and
prints the returns.  Measured (evaluation returns at steps 250 / 500 / 750): DrQ 22.8 / 113.2 / 108.4 and
67.2 / 173.4 / 55.9; VCR 22.8 / 2.4 / 214.8 and 67.2 / 2.2 / 35.8; random warm-up episodes 149 and 161."""

from __future__ import annotations

import json

import pytest

from rlkit import trainer
from rlkit.config import compose
from tests.helpers import metric_records

pytestmark = pytest.mark.slow

COMMON = ["logging.progress=false", "logging.tensorboard=false", "num_threads=1", "checkpoint.interval=0",
          "train.log_interval=100"]
BOXING = ["env=atari100k-boxing", "train.steps=800", "train.warmup_steps=500", "train.updates_per_step=1.0",
        "eval.episodes=1", "eval.num_envs=1"]
CARTPOLE = ["env=dmc-cartpole_swingup", "train.steps=750", "train.warmup_steps=250", "eval.interval=250",
            "eval.episodes=3", "algo.continuous.batch_size=64", "algo.continuous.hidden=[256,256]",
            "algo.continuous.transition_hidden=[256]", "algo.continuous.target_augs=1", "algo.continuous.q_augs=1"]
DRQ = ["algo.vcr_weight=0.0", "algo.continuous.prediction_depth=0"]


def run(tmp_path, name: str, overrides: list[str]) -> tuple[dict, list[dict]]:
    cfg = compose([*overrides, *COMMON, f"run_dir={tmp_path / name}"])
    summary = trainer.run(cfg)
    return summary, metric_records(tmp_path / name)


@pytest.mark.parametrize("seed", [0, 1])
def test_boxing_spr_and_vcr_td_loss_falls(tmp_path, seed):
    for algo, extra in (("spr", ["algo.batch_size=8"]), ("vcr", ["algo.discrete.batch_size=8"])):
        summary, records = run(tmp_path, f"{algo}{seed}", [f"algo={algo}", f"seed={seed}", *BOXING, *extra])
        losses = [r["train/rl_loss"] for r in records if "train/rl_loss" in r]
        assert losses[-1] < losses[0], (algo, losses)
        assert summary["eval_protocol"].startswith("atari100k-spr")
        print(json.dumps({"algo": algo, "seed": seed, "final_return": summary["final_return"], "rl_loss": losses}))


@pytest.mark.parametrize("seed", [0, 1])
def test_cartpole_swingup_drq_and_vcr_fit_their_critics(tmp_path, seed):
    for name, extra in (("drq", DRQ), ("vcr", [])):
        summary, records = run(tmp_path, f"{name}{seed}", ["algo=vcr", f"seed={seed}", *CARTPOLE, *extra])
        critic = [r["train/critic_loss"] for r in records if "train/critic_loss" in r]
        q_mean = [r["train/q_mean"] for r in records if "train/q_mean" in r]
        vcr = [r["train/vcr_loss"] for r in records if "train/vcr_loss" in r]
        assert min(critic[1:]) < critic[0] and q_mean[-1] > q_mean[0], (name, critic, q_mean)
        assert (max(vcr) > 0) == (name == "vcr"), (name, vcr)
        evals = [r["eval/return_mean"] for r in records if "eval/return_mean" in r]
        print(json.dumps({"algo": name, "seed": seed, "evals": evals, "final_return": summary["final_return"]}))
