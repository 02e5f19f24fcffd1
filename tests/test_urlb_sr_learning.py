"""Learning check (slow): CPU-sized RND vs RND + Self-Reference (Zhao et al., Neural Networks 2025) on URLB walker,
2 seeds: 2000 steps of reward-free pretraining, then 3000 steps of finetuning on walker stand (action repeat 8:
125-step episodes).  Both must learn in finetuning (final evaluation above the frame-0 one); which of the two
is better is reported, not asserted (the same runs as ``bench/urlb_sr_check.py``).  Measured (eval return at
frame 0 -> final): RND 156 -> 322 and 177 -> 232, RND+SR 131 -> 173 and 163 -> 269 (seeds 0, 1).
"""

from __future__ import annotations

import json

import pytest

from rlkit import trainer
from rlkit.config import compose

CPU = ["num_threads=1", "algo.hidden_dim=64", "algo.rnd_rep_dim=64", "train.batch_size=128", "algo.lr=1e-3",
       "+env.kwargs.action_repeat=8", "train.warmup_steps=250", "checkpoint.interval=0", "train.log_interval=250",
       "logging.progress=false", "logging.tensorboard=false"]
SR = ["addon=self_reference", "addon.dim=32", "addon.hidden_dim=32", "addon.heads=2", "addon.window=20000"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("extra", [[], SR], ids=["rnd", "rnd+sr"])
def test_rnd_and_rnd_sr_finetune_after_pretraining(tmp_path, seed, extra):
    trainer.run(compose(["algo=rnd", "env=urlb-walker", "regime=pretrain", f"seed={seed}", "train.steps=2000",
                         "eval.episodes=1", "eval.num_envs=1", *CPU, *extra, f"run_dir={tmp_path / 'pre'}"]))
    trainer.run(compose(["algo=rnd", "env=urlb-walker_stand", "regime=finetune", f"snapshot={tmp_path / 'pre'}",
                         f"seed={seed}", "train.steps=3000", "train.updates_per_step=1.0", "eval.interval=1000",
                         "eval.episodes=3", "eval.num_envs=3", *CPU, *extra, f"run_dir={tmp_path / 'fine'}"]))
    rows = [json.loads(line) for line in (tmp_path / "fine" / "metrics.jsonl").read_text().splitlines()]
    returns = [r["eval/return_mean"] for r in rows if "eval/return_mean" in r]
    print(json.dumps({"sr": bool(extra), "seed": seed, "returns": returns}))
    assert len(returns) == 4 and returns[-1] > returns[0], returns
