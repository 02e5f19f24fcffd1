"""The shipped behaviour policies of local collection: how they are made, reproducibly.

Recipe (D4RL's, on rlkit's own SAC):

1. ``rlkit train algo=sac env=<task> train.steps=N eval.interval=5000 eval.episodes=5
   checkpoint.interval=5000 checkpoint.keep=0 run_dir=RUN`` -- SAC with the paper's settings, keeping
   every checkpoint;
2. ``python -m rlkit.data.behaviour RUN <task>`` -- exports

   * ``<task>-medium.pt``: the actor of the first checkpoint whose evaluation return reached one third of
     the way from D4RL's random to its expert reference (D4RL's "medium" is about a third of expert),
   * ``<task>-medium-replay.hdf5``: that run's replay buffer up to the medium checkpoint, in the D4RL
     layout (D4RL's "medium-replay"),
   * ``<task>-expert.pt``: the actor of the checkpoint with the best evaluation return (``--expert-step N``:
     another evaluated checkpoint, e.g. the best after re-measuring candidates over more episodes).

The files land in ``rlkit/data/policies/`` with their evaluation returns and training steps inside; the
README lists them.

``python -m rlkit.data.behaviour RUN <task> --critic`` exports only ``<task>-expert-critic.pt``: the twin
critic of the run's expert checkpoint (stored in float16 to keep the file small), the preference oracle of OAP
(Yang et al. 2023, Sec. 4.1: the expert's ``Q*``, trained together with it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rlkit.checkpoint import checkpoint_path, load_checkpoint
from rlkit.data.collect import POLICY_DIR, export_policy
from rlkit.data.hdf5 import write_d4rl
from rlkit.errors import DatasetError
from rlkit.evaluation.scores import reference
from rlkit.logger import read_metrics


def eval_curve(run_dir: Path) -> list[tuple[int, float, float]]:
    """``(step, return_mean, return_std)`` of every periodic evaluation of a run."""
    return [(r["step"], r["eval/return_mean"], r["eval/return_std"]) for r in read_metrics(run_dir / "metrics.jsonl")
            if "eval/return_mean" in r]


def replay_to_d4rl(payload: dict[str, Any], path: Path, provenance: dict[str, Any]) -> int:
    """Write an online checkpoint's replay buffer (single env, no wrap-around) in the D4RL layout."""
    storage = payload["regime_state"]["buffer"]["storage"]
    if storage["added_total"] > storage["capacity"]:
        raise DatasetError("the replay buffer wrapped around; medium-replay needs the whole history")
    data = {k: v.numpy() for k, v in storage["data"].items()}
    timeouts = data["truncated"].astype(bool) & ~data["terminated"].astype(bool)
    timeouts[-1] |= not bool(data["terminated"][-1])  # the episode in progress ends the file
    write_d4rl(path, observations=data["obs"], actions=data["action"], rewards=data["reward"],
               terminals=data["terminated"].astype(bool), timeouts=timeouts,
               metadata={"algorithm": "rlkit-sac-replay"}, provenance=provenance, compression="gzip")
    return int(storage["size"])


def evaluated_checkpoints(run_dir: Path) -> list[tuple[int, float, float]]:
    """``(step, return_mean, return_std)`` of every periodic evaluation whose checkpoint was kept (refused when
    there is none)."""
    ckpt_dir = run_dir / "checkpoints"
    available = [(s, m, sd) for s, m, sd in eval_curve(run_dir) if checkpoint_path(ckpt_dir, s).exists()]
    if not available:
        raise DatasetError(f"{run_dir} has no evaluated checkpoint; train with checkpoint.interval equal to "
                           "eval.interval and checkpoint.keep=0")
    return available


def checkpoint_info(task: str, level: str, cfg, step: int, mean: float, std: float) -> dict[str, Any]:
    """What a shipped file says of the checkpoint it comes from (its evaluation and D4RL-normalized score)."""
    low, high = reference("d4rl", task)
    return {"task": task, "level": level, "train_steps": step, "eval_return_mean": mean, "eval_return_std": std,
            "eval_episodes": int(cfg.eval.episodes), "trainer": "rlkit SAC",
            "normalized_score": float(100 * (mean - low) / (high - low))}


def pick_expert(available: list[tuple[int, float, float]], step: int | None, run_dir: Path) -> tuple[int, float, float]:
    """The expert checkpoint: the best-evaluated one, or the evaluated checkpoint at ``step`` (chosen after
    re-measuring candidates with more episodes than the run's periodic evaluations)."""
    if step is None:
        return max(available, key=lambda x: x[1])
    chosen = [x for x in available if x[0] == step]
    if not chosen:
        raise DatasetError(f"{run_dir} has no evaluated checkpoint at step {step}; evaluated checkpoints: "
                           f"{', '.join(str(x[0]) for x in available)}")
    return chosen[0]


def export(run_dir: str | Path, task: str, out_dir: Path = POLICY_DIR, medium_fraction: float = 1 / 3,
           expert_step: int | None = None) -> dict:
    run_dir = Path(run_dir)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    algo_cfg = OmegaConf.to_container(cfg.algo, resolve=True)
    low, high = reference("d4rl", task)
    threshold = low + medium_fraction * (high - low)
    ckpt_dir = run_dir / "checkpoints"
    available = evaluated_checkpoints(run_dir)
    medium = next(((s, m, sd) for s, m, sd in available if m >= threshold), None)
    if medium is None:
        raise DatasetError(f"no checkpoint of {run_dir} reached the medium threshold {threshold:.0f}")
    expert = pick_expert(available, expert_step, run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"run_seed": int(cfg.seed), "medium_threshold": threshold}
    for level, (step, mean, std) in (("medium", medium), ("expert", expert)):
        payload = load_checkpoint(checkpoint_path(ckpt_dir, step))
        info = checkpoint_info(task, level, cfg, step, mean, std)
        export_policy(payload["algo"]["actor"], algo_cfg, out_dir / f"{task}-{level}.pt", **info)
        summary[level] = info
        if level == "medium":
            rows = replay_to_d4rl(payload, out_dir / f"{task}-medium-replay.hdf5",
                                  {"source": "collected", "level": "medium-replay", "policy": "SAC replay buffer",
                                   "task": task, "train_steps": step})
            summary["medium-replay"] = {"rows": rows, "train_steps": step}
    return summary


def export_critic(run_dir: str | Path, task: str, out_dir: Path = POLICY_DIR, expert_step: int | None = None) -> dict:
    """Write ``<task>-expert-critic.pt`` (``{"algo_config", "critic", **info}``, critic in float16) from the
    expert checkpoint of an rlkit SAC run (:func:`pick_expert`); returns the info."""
    import torch

    from rlkit.utils import atomic_torch_save

    run_dir = Path(run_dir)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    step, mean, std = pick_expert(evaluated_checkpoints(run_dir), expert_step, run_dir)
    payload = load_checkpoint(checkpoint_path(run_dir / "checkpoints", step))
    critic = {k: v.to(torch.float16) for k, v in payload["algo"]["critic"].items()}
    info = checkpoint_info(task, "expert-critic", cfg, step, mean, std)
    atomic_torch_save(out_dir / f"{task}-expert-critic.pt",
                      {"algo_config": OmegaConf.to_container(cfg.algo, resolve=True), "critic": critic, **info})
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description="Export shipped behaviour policies from a SAC run.")
    parser.add_argument("run_dir")
    parser.add_argument("task", choices=("hopper", "halfcheetah", "walker2d", "ant"))
    parser.add_argument("--medium-fraction", type=float, default=1 / 3)
    parser.add_argument("--critic", action="store_true", help="export only <task>-expert-critic.pt (OAP's oracle)")
    parser.add_argument("--out-dir", type=Path, default=POLICY_DIR,
                        help="where the files go (default: the shipped policies' folder, replacing its files)")
    parser.add_argument("--expert-step", type=int, default=None,
                        help="the checkpoint to export as expert (default: the best-evaluated one)")
    ns = parser.parse_args()
    if ns.critic:
        print(json.dumps(export_critic(ns.run_dir, ns.task, ns.out_dir, ns.expert_step), indent=2, default=float))
        return
    print(json.dumps(export(ns.run_dir, ns.task, ns.out_dir, medium_fraction=ns.medium_fraction,
                            expert_step=ns.expert_step), indent=2, default=float))


if __name__ == "__main__":
    main()
