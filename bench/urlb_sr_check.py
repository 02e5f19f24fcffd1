"""CPU-sized learning check of Self-Reference (Zhao et al. 2025) on URLB walker or quadruped: RND vs RND+SR,
reward-free pretraining then finetuning on a task (walker stand by default), a few seeds; prints the evaluation
returns of every run.

Usage: ``python bench/urlb_sr_check.py OUT_DIR [--seeds 0,1] [--pretrain 2000] [--finetune 3000]
[--task walker_stand] [--agents rnd,rnd_sr]``.  ``--seeds``/``--agents`` split the runs over processes (the runs
of one seed and agent are independent of the others).  The quadruped check of the README ran
``--task quadruped_walk --pretrain 5000 --finetune 6000``, one process per seed and agent.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlkit import trainer
from rlkit.config import compose

CPU = ["num_threads=1", "algo.hidden_dim=64", "algo.rnd_rep_dim=64", "train.batch_size=128", "algo.lr=1e-3",
       "+env.kwargs.action_repeat=8", "train.warmup_steps=250", "checkpoint.interval=0", "train.log_interval=250",
       "logging.progress=false", "logging.tensorboard=false"]
SR = ["addon=self_reference", "addon.dim=32", "addon.hidden_dim=32", "addon.heads=2", "addon.window=20000"]


def evals(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["eval/return_mean"] for r in rows if "eval/return_mean" in r]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--pretrain", type=int, default=2000)
    p.add_argument("--finetune", type=int, default=3000)
    p.add_argument("--task", default="walker_stand")
    p.add_argument("--agents", default="rnd,rnd_sr", help="comma list of rnd, rnd_sr")
    a = p.parse_args()
    out = Path(a.out)
    domain = a.task.split("_")[0]
    for seed in [int(s) for s in a.seeds.split(",")]:
        for name, extra in (("rnd", []), ("rnd_sr", SR)):
            if name not in a.agents.split(","):
                continue
            pre, fine = out / name / f"pre{seed}", out / name / f"fine{seed}"
            if not (pre / "summary.json").exists():
                trainer.run(compose(["algo=rnd", f"env=urlb-{domain}", "regime=pretrain", f"seed={seed}",
                                     f"train.steps={a.pretrain}", "eval.episodes=1", "eval.num_envs=1", *CPU, *extra,
                                     f"run_dir={pre}"]))
            if not (fine / "summary.json").exists():
                trainer.run(compose(["algo=rnd", f"env=urlb-{a.task}", "regime=finetune", f"snapshot={pre}",
                                     f"seed={seed}", f"train.steps={a.finetune}", "train.updates_per_step=1.0",
                                     "eval.interval=1000", "eval.episodes=3", "eval.num_envs=3", *CPU, *extra,
                                     f"run_dir={fine}"]))
            print(json.dumps({"agent": name, "seed": seed, "finetune_eval_returns": evals(fine)}), flush=True)


if __name__ == "__main__":
    main()
