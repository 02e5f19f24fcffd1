"""CPU-sized learning checks (slow): SPR vs VCR on Pong (SPR protocol) and DrQ vs VCR on cartpole-swingup from
pixels, equal budgets, 2 seeds each. The README's learning-check table has the figures these runs gave on
2 shared CPU cores. At these budgets Pong cannot be learnt (SPR needs ~100k steps); the Atari check asserts
that the distributional TD loss falls, the DMC check that both agents beat the random warm-up returns."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlkit import trainer
from rlkit.config import compose
from tests.helpers import metric_records

pytestmark = pytest.mark.slow

COMMON = ["logging.progress=false", "logging.tensorboard=false", "num_threads=1", "checkpoint.interval=0",
          "train.log_interval=100"]
PONG = ["env=atari100k-pong", "train.steps=800", "train.warmup_steps=500", "train.updates_per_step=1.0",
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
def test_pong_spr_and_vcr_td_loss_falls(tmp_path, seed):
    for algo, extra in (("spr", ["algo.batch_size=8"]), ("vcr", ["algo.discrete.batch_size=8"])):
        summary, records = run(tmp_path, f"{algo}{seed}", [f"algo={algo}", f"seed={seed}", *PONG, *extra])
        losses = [r["train/rl_loss"] for r in records if "train/rl_loss" in r]
        assert losses[-1] < losses[0], (algo, losses)
        assert summary["eval_protocol"].startswith("atari100k-spr")
        print(json.dumps({"algo": algo, "seed": seed, "final_return": summary["final_return"], "rl_loss": losses}))


@pytest.mark.parametrize("seed", [0, 1])
def test_cartpole_swingup_drq_and_vcr_beat_random_actions(tmp_path, seed):
    for name, extra in (("drq", DRQ), ("vcr", [])):
        summary, records = run(tmp_path, f"{name}{seed}", ["algo=vcr", f"seed={seed}", *CARTPOLE, *extra])
        warmup = [r["train/episode_return"] for r in records if "train/episode_return" in r and r["step"] <= 250]
        assert summary["final_return"] > 1.2 * np.mean(warmup), (name, summary["final_return"], warmup)
        print(json.dumps({"algo": name, "seed": seed, "final_return": summary["final_return"]}))
