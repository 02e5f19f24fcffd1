"""URLB's two regimes (Laskin et al. 2021, arXiv 2110.15191; protocol of the released code):
reward-free ``pretrain`` with snapshots, and ``finetune`` from a snapshot on a task reward.

Both are the online regime (one vector-env step per training step, ``train.warmup_steps`` seed steps
without updates, ``train.updates_per_step`` = 0.5: one update every 2 env steps) plus

* **n-step replay** with the algorithm's ``nstep`` and ``gamma`` (URLB: 3, 0.99);
* **meta** (skill, mode): drawn by ``algo.init_meta`` for every env at its episode start and every
  ``algo.meta_interval`` (50) steps of its episode, fed to ``algo.act`` as the acting state, and stored
  with each transition (the meta active at ``s_t``) in the replay columns ``algo.meta_columns()``;
* ``algo.env_step`` is set to the agent step before each environment step (the exploration-std schedule);
* finetuning: ``algo.infer_meta(replay)`` before each environment step may replace every env's meta with one
  inferred from the replay buffer (APS's task vector regressed on the rewards).

``pretrain``: the agent is told ``reward_free=True`` and trains on its intrinsic reward; the environment's
reward (the primal task's, which URLB's pretraining env still returns) is stored but never learnt from.
Snapshots of the whole agent are written at ``pretrain.snapshot_frames`` (default 100k, 500k, 1M, 2M
frames; ``frames = steps * action_repeat``) and at the end of the run, to
``RUN_DIR/snapshots/snapshot_<frames>.pt`` (atomic).  Evaluation during pretraining is not part of the
protocol: the pretraining envs set ``eval.interval=0``; the final evaluation (the primal task's reward,
acting with ``algo.eval_meta``) is logged for information and has no score table.

``finetune``: ``snapshot=RUN_DIR`` (the newest snapshot of a pretraining run, or the one of
``snapshot_frames=N``) or ``snapshot=FILE``; the agent copies what URLB's ``init_from`` copies
(``algo.init_from_snapshot``: encoder, actor, critic trunk; fresh Q heads, target and optimizers).  The
agent must be the same algorithm with the same network-shaping settings (``algo.architecture_keys``).
``snapshot=null`` trains from scratch (URLB's DDPG baseline/expert protocol).  Seed steps act uniformly
at random (URLB) unless ``algo.warmup_actions`` says otherwise (MOSS: its pretrained actor with the skill
search); ``algo.observe_reward`` sees every extrinsic reward.  Evaluation every 10k frames from frame 0,
10 episodes, deterministic, with ``algo.eval_meta``.  ``summary.json`` gains the snapshot's path and
frames and the URLB domain.

:func:`rlkit.evaluation.report.urlb_tables` (part of ``rlkit report``) turns finetune runs into one table
per domain: expert-normalised per-task means with
stratified-bootstrap CIs over seeds, and the domain's IQM and optimality gap (CIs over seeds and tasks).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from rlkit.algorithm import URLBAgent
from rlkit.checkpoint import load_checkpoint, save_checkpoint
from rlkit.errors import CheckpointError, ConfigError
from rlkit.evaluation.coverage import StateCoverage
from rlkit.regimes.base import addon_name
from rlkit.regimes.online import OnlineRegime
from rlkit.replay import Batch
from rlkit.utils import atomic_write_text, derive_seed

SNAPSHOT_KIND = "urlb_snapshot"
DEFAULT_SNAPSHOT_FRAMES = (100_000, 500_000, 1_000_000, 2_000_000)
_SNAPSHOT_NAME = re.compile(r"snapshot_(\d+)\.pt$")


class URLBRegime(OnlineRegime):
    """What pretraining and finetuning share (module docstring)."""

    reward_free = False

    def setup(self) -> None:
        super().setup()
        if not isinstance(self.algo, URLBAgent):
            raise ConfigError(f"algo '{self.cfg.algo.get('name')}' is not a URLB agent; regime={self.name} needs "
                              "one (algo=ddpg, cic, moss, ...)")
        first = self.env.envs[0].unwrapped
        self.action_repeat = int(getattr(first, "action_repeat", 1))
        episode_steps = int(getattr(first, "max_episode_steps", 1000))
        if addon_name(self.cfg) and self.num_envs != 1:
            raise ConfigError(f"addon={addon_name(self.cfg)} reads episodes from consecutive replay rows; use "
                              f"train.num_envs=1 (got {self.num_envs})")
        self.algo.setup_urlb(reward_free=self.reward_free, seed_steps=self.warmup, episode_steps=episode_steps)
        self.meta_interval = int(self.algo.meta_interval)
        self.meta_rng = np.random.default_rng(derive_seed(int(self.cfg.seed), "urlb meta"))
        measures = self.cfg.get("urlb") or {}
        self.coverage = StateCoverage(int(np.prod(self.env.single_observation_space.shape)),
                                      seed=derive_seed(int(self.cfg.seed), "urlb coverage"),
                                      dims=int(measures.get("coverage_dims", 3)),
                                      cell_size=float(measures.get("coverage_cell", 0.5)))
        self.probe_size = int(measures.get("probe_batch", 1024))
        self.probe = None
        self.probe_reward = None

    # ------------------------------------------------------------------ meta
    def _refresh_meta(self) -> None:
        """Draw a new meta for the envs at an episode start or at a multiple of ``meta_interval`` steps."""
        if self.act_state is None:
            due = np.ones(self.num_envs, dtype=bool)
        elif self.meta_interval > 0:
            due = self.episode_length % self.meta_interval == 0
        else:
            due = self.episode_length == 0
        if not due.any():
            return
        fresh = {**self.algo.init_meta(self.episode_length.copy(), self.step, self.meta_rng),
                 **self.algo.addon_meta(self.episode_length.copy(), self.meta_rng)}
        if self.act_state is None:
            self.act_state = {k: np.array(v) for k, v in fresh.items()}
            return
        for key, value in fresh.items():
            self.act_state[key][due] = value[due]

    def extra_columns(self) -> dict[str, np.ndarray]:
        """The meta (skill) active at ``s_t`` is stored with the transition."""
        return {k: np.array(v) for k, v in (self.act_state or {}).items()}

    def random_actions(self) -> np.ndarray:
        actions = self.algo.warmup_actions(self.obs, self.act_state)
        return super().random_actions() if actions is None else actions

    def train_step(self) -> dict[str, Any]:
        self.algo.env_step = self.step
        self._refresh_meta()
        if not self.reward_free:
            inferred = self.algo.infer_meta(self.buffer)
            for key, value in (inferred or {}).items():
                self.act_state[key][:] = value
        metrics = super().train_step()
        last = self.last_transition
        self.coverage.add(np.asarray(last["obs"]))
        self.algo.observe_reward(np.asarray(last["reward"]))
        if (np.asarray(last["terminated"]) | np.asarray(last["truncated"])).any():
            self.algo.on_episode_end(self.buffer)
        return metrics

    def interval_metrics(self) -> dict[str, float]:
        """Once per log interval: state coverage; on a fixed probe batch (drawn once after the seed steps) the
        intrinsic reward's drift since the previous interval, ``urlb/reward_drift = mean_i |r_i - r_i^prev| /
        mean_i |r_i^prev|`` (nonstationarity of the pretraining reward), and the agent's probe measures
        (finetuning: KL to the pretrained policy, normalised intrinsic reward; Self-Reference's Table 2)."""
        out = {**super().interval_metrics(), **self.coverage.metrics()}
        if self.step < self.warmup or len(self.buffer) < self.probe_size:
            return out
        if self.probe is None:
            self.probe = self.probe_batch(self.probe_size)
        reward = self.algo.probe_intrinsic_reward(self.probe) if self.reward_free else None
        if reward is not None:
            out["urlb/probe_intrinsic_reward"] = float(reward.mean())
            if self.probe_reward is not None:
                prev = self.probe_reward
                out["urlb/reward_drift"] = float((reward - prev).abs().mean() / prev.abs().mean().clamp(min=1e-8))
            self.probe_reward = reward
        out.update({k: float(v) for k, v in self.algo.probe_metrics(self.probe).items()})
        return out

    @property
    def frames(self) -> int:
        return self.step * self.action_repeat

    def regime_state(self) -> dict[str, Any]:
        return {**super().regime_state(), "meta_rng": self.meta_rng.bit_generator.state,
                "coverage": self.coverage.state_dict(), "probe": None if self.probe is None else dict(self.probe),
                "probe_reward": self.probe_reward}

    def load_regime_state(self, state: dict[str, Any]) -> None:
        super().load_regime_state(state)
        self.meta_rng.bit_generator.state = state["meta_rng"]
        self.coverage.load_state_dict(state["coverage"])
        self.probe = None if state["probe"] is None else Batch(state["probe"])
        self.probe_reward = state["probe_reward"]


# ---------------------------------------------------------------------------- pretraining
class PretrainRegime(URLBRegime):
    """Reward-free pretraining with snapshots (module docstring)."""

    name = "pretrain"
    reward_free = True

    def setup(self) -> None:
        super().setup()
        pretrain_cfg = self.cfg.get("pretrain") or {}
        frames = pretrain_cfg.get("snapshot_frames", DEFAULT_SNAPSHOT_FRAMES)
        frames = sorted({int(f) for f in frames})
        if any(f <= 0 for f in frames):
            raise ConfigError(f"pretrain.snapshot_frames must be positive frame counts, got {frames}")
        total = int(self.cfg.train.steps)
        # frame count -> the agent step after which it is written; the run's end always gets one
        self.snapshot_steps = {f: -(-f // self.action_repeat) for f in frames}
        self.snapshot_steps.setdefault(total * self.action_repeat, total)

    def train_step(self) -> dict[str, Any]:
        metrics = super().train_step()
        after = self.step + self.step_increment
        for frames, step in self.snapshot_steps.items():
            if self.step < step <= after:
                self.save_snapshot(frames)
        return metrics

    def save_snapshot(self, frames: int) -> Path:
        cfg = self.cfg
        payload = {
            "kind": SNAPSHOT_KIND,
            "frames": int(frames),
            "step": self.step + self.step_increment,
            "algo_target": str(cfg.algo._target_),
            "algo_name": str(cfg.algo.get("name")),
            "algo_config": OmegaConf.to_container(cfg.algo, resolve=True),
            "addon": addon_name(cfg),
            "env": str(cfg.env.get("name")),
            "env_family": cfg.env.get("family"),
            "seed": int(cfg.seed),
            "observation_shape": tuple(self.env.single_observation_space.shape),
            "action_shape": tuple(self.env.single_action_space.shape),
            "state": self.algo.state_dict(),
        }
        return save_checkpoint(self.run_dir / "snapshots" / f"snapshot_{int(frames)}.pt", payload)

    def write_summary(self, finished: bool) -> dict[str, Any]:
        summary = super().write_summary(finished)
        summary["snapshots"] = [str(p) for p in list_snapshots(self.run_dir)]
        summary["frames"] = self.frames
        summary["addon"] = addon_name(self.cfg)
        atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2, default=str))
        return summary


# ---------------------------------------------------------------------------- snapshots
def list_snapshots(path: str | Path) -> list[Path]:
    """Snapshot files of a pretraining run directory (or of a ``snapshots/`` folder), oldest first."""
    path = Path(path)
    folder = path / "snapshots" if (path / "snapshots").is_dir() else path
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _SNAPSHOT_NAME.search(p.name)]
    return sorted(found, key=lambda p: int(_SNAPSHOT_NAME.search(p.name).group(1)))


def resolve_snapshot(spec: str | Path, frames: int | None = None) -> Path:
    """The snapshot file named by ``snapshot=``: a file, or a run directory's newest snapshot (or the one
    written at ``frames``)."""
    path = Path(str(spec)).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"snapshot '{path}' does not exist; pass snapshot=RUN_DIR of a pretraining run "
                              "(regime=pretrain) or snapshot=RUN_DIR/snapshots/snapshot_<frames>.pt")
    found = list_snapshots(path)
    if not found:
        raise CheckpointError(f"'{path}' holds no snapshots (snapshots/snapshot_<frames>.pt); pretrain first "
                              "with regime=pretrain, or point snapshot= at a snapshot file")
    if frames is None:
        return found[-1]
    by_frames = {int(_SNAPSHOT_NAME.search(p.name).group(1)): p for p in found}
    if int(frames) not in by_frames:
        raise CheckpointError(f"'{path}' has no snapshot at {frames} frames; it has: "
                              f"{', '.join(str(f) for f in sorted(by_frames))}")
    return by_frames[int(frames)]


def load_snapshot(path: Path, device) -> dict[str, Any]:
    payload = load_checkpoint(path, map_location=device)
    if payload.get("kind") != SNAPSHOT_KIND:
        raise CheckpointError(f"'{path}' is not a URLB pretraining snapshot (a training checkpoint?); use a file "
                              "from RUN_DIR/snapshots/")
    return payload


# ---------------------------------------------------------------------------- finetuning
class FinetuneRegime(URLBRegime):
    """Finetuning from a pretraining snapshot on the task reward (module docstring)."""

    name = "finetune"
    reward_free = False

    def setup(self) -> None:
        super().setup()
        self.snapshot_info: dict[str, Any] | None = None
        if self.cfg.get("snapshot") and not self.cfg.resume:  # a resumed run restores its own checkpoint
            self.init_from_snapshot()
        elif not self.cfg.get("snapshot"):
            print(f"rlkit: finetune without snapshot=: training {self.cfg.algo.get('name')} from scratch on "
                  f"{self.cfg.env.get('name')}", file=sys.stderr)

    def init_from_snapshot(self) -> None:
        cfg = self.cfg
        path = resolve_snapshot(cfg.snapshot, cfg.get("snapshot_frames"))
        payload = load_snapshot(path, self.device)
        target = str(cfg.algo._target_)
        if payload.get("algo_target") != target:
            raise CheckpointError(f"snapshot '{path}' was pretrained by {payload.get('algo_name')} "
                                  f"({payload.get('algo_target')}); finetune it with algo={payload.get('algo_name')}")
        pretrained_addon, addon = payload.get("addon"), addon_name(cfg)
        if pretrained_addon != addon:
            raise CheckpointError(f"snapshot '{path}' was pretrained with addon={pretrained_addon or 'none'} but this "
                                  f"finetune has addon={addon or 'none'}; finetune with "
                                  f"addon={pretrained_addon or 'none'}")
        obs_shape = tuple(self.env.single_observation_space.shape)
        act_shape = tuple(self.env.single_action_space.shape)
        if tuple(payload["observation_shape"]) != obs_shape or tuple(payload["action_shape"]) != act_shape:
            raise CheckpointError(f"snapshot '{path}' was pretrained on {payload.get('env')} (observations "
                                  f"{tuple(payload['observation_shape'])}, actions {tuple(payload['action_shape'])}); "
                                  f"{cfg.env.get('name')} has {obs_shape} and {act_shape}: use a task of the same "
                                  "domain")
        pretrained = payload.get("algo_config", {})
        current = OmegaConf.to_container(cfg.algo, resolve=True)
        differing = [k for k in self.algo.architecture_keys
                     if k in pretrained and pretrained.get(k) != current.get(k)]
        if differing:
            fix = " ".join(f"algo.{k}={pretrained[k]}" for k in differing)
            raise CheckpointError(f"snapshot '{path}' was pretrained with different network settings "
                                  f"({', '.join(differing)}); finetune with {fix}")
        self.algo.init_from_snapshot(payload["state"])
        self.snapshot_info = {"snapshot": str(path), "snapshot_frames": int(payload["frames"]),
                              "pretrain_env": payload.get("env"), "pretrain_seed": payload.get("seed")}

    def regime_state(self) -> dict[str, Any]:
        return {**super().regime_state(), "snapshot_info": self.snapshot_info}

    def load_regime_state(self, state: dict[str, Any]) -> None:
        super().load_regime_state(state)
        self.snapshot_info = state.get("snapshot_info")

    def write_summary(self, finished: bool) -> dict[str, Any]:
        summary = super().write_summary(finished)
        family = str(self.cfg.env.get("family") or "")
        summary.update(self.snapshot_info or {"snapshot": None, "snapshot_frames": 0})
        summary["urlb_domain"] = family[len("urlb_"):] if family.startswith("urlb_") else None
        summary["frames"] = self.frames
        summary["addon"] = addon_name(self.cfg)
        atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2, default=str))
        return summary
