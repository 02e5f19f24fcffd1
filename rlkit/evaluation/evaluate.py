"""The one evaluation loop of rlkit.

Episodes run on a gymnasium vector env without autoreset; episode ``j`` of every evaluation is reset
with seed ``seed + j``, so successive evaluations of a run see the same start states (common random
numbers) and a re-evaluation with ``rlkit eval`` reproduces them.  The policy acts deterministically by
default.  Torch's global RNG is forked, so evaluating never changes the training random stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from rlkit.evaluation.scores import normalize
from rlkit.evaluation.video import EpisodeRecorder


@dataclass
class EvalResult:
    returns: np.ndarray
    lengths: np.ndarray
    normalized: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def return_mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def normalized_mean(self) -> float | None:
        return None if self.normalized is None else float(np.mean(self.normalized))

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        out = {
            f"{prefix}return_mean": self.return_mean,
            f"{prefix}return_std": float(np.std(self.returns)),
            f"{prefix}return_min": float(np.min(self.returns)),
            f"{prefix}return_max": float(np.max(self.returns)),
            f"{prefix}length_mean": float(np.mean(self.lengths)),
            f"{prefix}episodes": float(len(self.returns)),
        }
        if self.normalized is not None:
            out[f"{prefix}normalized_score"] = self.normalized_mean
            out[f"{prefix}normalized_std"] = float(np.std(self.normalized))
        return out


def describe_protocol(episodes: int, num_envs: int, deterministic: bool, selection: str = "assigned",
                      env_protocol: str | None = None) -> str:
    """A one-line label for how a score was measured, stored with every summary and shown in reports,
    e.g. ``atari100k-storm; first 20 finished over 5 envs; sampled policy``."""
    chosen = (f"first {episodes} finished over {num_envs} envs" if selection == "first_finished"
              else f"{episodes} assigned episodes")
    policy = "deterministic policy" if deterministic else "sampled policy"
    return "; ".join(part for part in (env_protocol, chosen, policy) if part)


def episode_seed_base(run_seed: int) -> int:
    """Seed of evaluation episode 0 of a run (episode ``j`` uses ``base + j``), apart from training seeds."""
    return 1_000_000 + 1000 * int(run_seed)


EVAL_PROTOCOLS: tuple[str, ...] = ("assigned", "first_finished")


def evaluate(algo, env: gym.vector.VectorEnv, episodes: int, seed: int, deterministic: bool = True,
             score_table: str | None = None, score_task: str | None = None,
             protocol: str = "assigned", recorder: EpisodeRecorder | None = None) -> EvalResult:
    """Run ``episodes`` full episodes of ``algo`` on the sub-envs of ``env`` (autoreset disabled).

    Episodes are started in order on free sub-envs; the ``j``-th started episode is reset with seed
    ``seed + j``. ``protocol`` chooses which episodes are scored:

    * ``"assigned"`` (rlkit's default): exactly episodes ``0 .. episodes-1`` are started and all are scored,
      whatever their length, so the estimate is unbiased; ``returns[j]`` is episode ``j``.
    * ``"first_finished"`` (STORM's evaluation, Zhang et al. 2023, released code): every sub-env keeps playing
      new episodes and the first ``episodes`` to *finish* are scored, in order of completion (sub-env
      index breaks ties within a step). Short episodes finish first, so with several sub-envs this
      favours them; it is there to reproduce the reference numbers.

    ``recorder`` (an :class:`~rlkit.evaluation.video.EpisodeRecorder`) renders the frames of the episodes it
    wants after every reset and step; rendering reads the simulators only, so the scores are unchanged.
    """
    if protocol not in EVAL_PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol '{protocol}'; choose one of: {', '.join(EVAL_PROTOCOLS)}")
    n = env.num_envs
    keep_playing = protocol == "first_finished"
    run_return = np.zeros(n, dtype=np.float64)
    run_length = np.zeros(n, dtype=np.int64)
    finished: list[tuple[int, float, int]] = []  # (episode index, return, length) in completion order
    episode_of = np.full(n, -1, dtype=np.int64)
    first = n if keep_playing else min(n, episodes)
    episode_of[:first] = np.arange(first)
    next_episode = first
    seeds = [seed + int(j) if j >= 0 else None for j in episode_of]
    devices = [algo.device] if algo.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        obs, _ = env.reset(seed=seeds)
        if recorder is not None:
            recorder.capture(env, episode_of)
        state = None
        while (episode_of >= 0).any():
            action, state = algo.act(obs, state, deterministic=deterministic)
            obs, reward, terminated, truncated, _ = env.step(action)
            active = episode_of >= 0
            run_return[active] += reward[active]
            run_length[active] += 1
            if recorder is not None:
                recorder.capture(env, episode_of)
            done = terminated | truncated  # idle sub-envs that finish are reset too (the vector env insists)
            if not done.any():
                continue
            reset_seeds: list[int | None] = [None] * n
            for i in np.flatnonzero(done & active):
                if len(finished) < episodes:
                    finished.append((int(episode_of[i]), float(run_return[i]), int(run_length[i])))
                run_return[i], run_length[i] = 0.0, 0
                more = len(finished) < episodes if keep_playing else next_episode < episodes
                if more:
                    episode_of[i] = next_episode
                    reset_seeds[i] = seed + next_episode
                    next_episode += 1
                else:
                    episode_of[i] = -1
            if keep_playing and len(finished) >= episodes:
                break  # the episodes still running are not scored
            new_obs, _ = env.reset(seed=reset_seeds, options={"reset_mask": done})
            if recorder is not None:
                recorder.capture(env, episode_of, mask=done)
            obs = np.where(done.reshape(-1, *([1] * (obs.ndim - 1))), new_obs, obs)
            state = algo.reset_state(state, done)
    if not keep_playing:
        finished.sort(key=lambda item: item[0])
    returns = np.array([r for _, r, _ in finished], dtype=np.float64)
    lengths = np.array([length for _, _, length in finished], dtype=np.int64)
    normalized = normalize(score_table, score_task, returns) if score_table else None
    return EvalResult(returns=returns, lengths=lengths, normalized=normalized,
                      extra={"episode_ids": [j for j, _, _ in finished]})
