"""MOSS -- Mixture Of SurpriseS (Zhao, Lin, Li, Liu, Huang, NeurIPS 2022, arXiv 2210.06702).

MOSS (Zhao et al. NeurIPS 2022, arXiv 2210.06702), as in the authors' released JAX code.  One
skill-conditioned DDPG policy on the CIC representation (Laskin et al. 2022), two
"toolboxes" of skills: mode ``m = 0`` maximises surprise (explore), ``m = 1`` minimises it (control).  Both
learn from the one replay buffer; only the sign of the reward and the region of skill space differ.

* **Mode** from the episode step ``t``, episode length ``T`` and ``partitions`` ``p``: ``I = floor(T/p)``,
  ``m = floor(t/I) mod 2`` (:func:`moss_mode`).  The meta ``(z, m)`` is redrawn at every reset and every 50
  steps, so the effective splits are: p=2, T=1000 -> explore 0-499; p=1.5, T=1000 -> 0-699; p=1.5, T=250
  -> 0-199.
* **Skill** given the mode (:func:`moss_skill`, ``skill_mode``): ``sign``: ``z = +-u``; ``half``: explore
  ``[u_{d/2}, 0]``, control ``[0, u_{d/2}]``; ``same``: ``u``; ``discrete``: ``+-1``, ``u ~ U(0, 1)``.
* **Reward**: the CIC kNN entropy in MOSS's variant (source ``g_s(s)``, target ``g_s(s')``, ``(D - M)/S``
  with the biased running variance), computed on the whole batch with the CIC parameters from *before* this
  update's CIC step; then ``r_i = +r_ent,i`` for ``m_i = 0`` and ``-r_ent,i`` for ``m_i = 1``
  (:func:`mixture_reward`), so control rewards are ``<= 0``.  The reference reorders the batch as
  ``[mode 0 ; mode 1]`` and flips the second block; every term is permutation-equivariant, so flipping by
  the stored mode is the same computation.
* **DDPG** on ``[s, z]``: the MOSS JAX code computes the actor and critic gradients at the pre-update
  parameters (``simultaneous_update=True``).
* **Finetuning** (released code): during the seed steps (4000) act deterministically with the pretrained actor and
  the skill of ``search_mode`` (no updates), then DDPG with the extrinsic reward.  ``search_mode``:
  ``constant`` (``0.5 * 1``, README), ``grid_search`` (config default: candidates ``c_k * 1``,
  ``c = linspace(-1, 0, S/50)``, one per 50 steps, scored by mean per-step reward, best kept; quirk: the
  last candidate's score is never compared), ``random_search``, ``random_grid_search``, ``explore`` (+1),
  ``control`` (-1).  See :class:`SkillSearch`.

Defaults (``configs/algo/moss.yaml``) follow the released configuration files: ``skill_dim=32``
(``conf/intrinsic/multimodal_cic.yaml``), ``skill_mode=half``, ``partitions=2``, ``search_mode=grid_search``
(``conf/agent/ddpg_multimodal_skill_torch.yaml``); for jaco (``per_family.urlb_jaco``) the README's pretraining and
finetuning commands: ``skill_dim=64``, ``sign``, ``partitions=1.5``, ``constant``.  The repository has no command or
config for walker or quadruped, so those domains take the configuration files' values; whether the paper's
walker/quadruped numbers used others is not stated in the released code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from rlkit.algorithms.unsupervised.cic import CIC
from rlkit.errors import ConfigError

SKILL_MODES = ("half", "sign", "same", "discrete")
SEARCH_MODES = ("constant", "grid_search", "random_search", "random_grid_search", "explore", "control")


def moss_mode(episode_step: np.ndarray, episode_steps: int, partitions: float) -> np.ndarray:
    """``m = floor(t / floor(T / p)) mod 2`` per env (0 explore, 1 control)."""
    interval = episode_steps // partitions
    if interval <= 0:
        raise ConfigError(f"algo.partitions={partitions} leaves no steps per partition of a {episode_steps}-step "
                          "episode; use partitions <= episode length")
    return (np.asarray(episode_step) // interval).astype(np.int64) % 2


def moss_skill(mode: np.ndarray, skill_mode: str, skill_dim: int, rng: np.random.Generator) -> np.ndarray:
    """Skills ``(n, d)`` for modes ``(n,)`` (module docstring)."""
    mode = np.asarray(mode)
    n = len(mode)
    control = (mode == 1)[:, None]
    if skill_mode == "half":
        first = int(skill_dim / 2)
        u = rng.uniform(0.0, 1.0, (n, skill_dim - first))
        zeros = np.zeros((n, first))
        skill = np.where(control, np.concatenate([zeros, u], 1), np.concatenate([u, zeros], 1))
    elif skill_mode == "sign":
        u = rng.uniform(0.0, 1.0, (n, skill_dim))
        skill = np.where(control, -u, u)
    elif skill_mode == "same":
        skill = rng.uniform(0.0, 1.0, (n, skill_dim))
    elif skill_mode == "discrete":
        skill = np.where(control, -1.0, 1.0) * np.ones((n, skill_dim))
    else:
        raise ConfigError(f"unknown algo.skill_mode '{skill_mode}'; choose one of {', '.join(SKILL_MODES)}")
    return skill.astype(np.float32)


def mixture_reward(entropy_reward: torch.Tensor, mode: torch.Tensor) -> torch.Tensor:
    """``+r`` for explore (``m = 0``) and ``-r`` for control (``m = 1``) transitions."""
    return entropy_reward * (1.0 - 2.0 * mode.to(entropy_reward.dtype))


@dataclass
class SkillSearch:
    """MOSS's finetune skill choice (``SkillRewardTracker``).

    :meth:`next_skill` is called whenever the meta is redrawn (reset, every ``interval`` steps): while the
    search runs it first scores the candidate that just finished (mean per-step reward of the steps since
    the last call) against the best so far, then returns the candidate for ``step``.  From
    ``step >= search_steps`` on it returns the best candidate and stops scoring, so the last candidate's
    score is never compared (the reference's quirk).  Without a scored candidate the fallback is ``0.5 * 1``.
    """

    mode: str
    skill_dim: int
    search_steps: int
    interval: int = 50
    low: float = 0.0
    best_skill: np.ndarray | None = None
    best_score: float = -float("inf")
    score_sum: float = 0.0
    score_steps: int = 0
    current: np.ndarray | None = None
    searching: bool = True

    @property
    def candidates(self) -> int:
        return self.search_steps // self.interval

    def fixed_skill(self) -> np.ndarray | None:
        value = {"constant": 0.5, "explore": 1.0, "control": -1.0}.get(self.mode)
        return None if value is None else np.full(self.skill_dim, value, dtype=np.float32)

    def result(self) -> np.ndarray:
        """The skill to finetune and evaluate with once the search is over."""
        fixed = self.fixed_skill()
        if fixed is not None:
            return fixed
        return self.best_skill if self.best_skill is not None else np.full(self.skill_dim, 0.5, np.float32)

    def _candidate(self, step: int, rng: np.random.Generator) -> np.ndarray:
        fixed = self.fixed_skill()
        if fixed is not None:
            return fixed
        if step >= self.search_steps or self.candidates == 0:
            return self.result()
        index = step // self.interval
        if self.mode == "grid_search":
            return np.full(self.skill_dim, np.linspace(-1.0, 0.0, self.candidates)[index], dtype=np.float32)
        if self.mode == "random_search":
            return rng.uniform(0.0, 1.0, self.skill_dim).astype(np.float32)
        increment = (1.0 - self.low) / self.candidates  # random_grid_search
        return rng.uniform(index * increment, (index + 1) * increment, self.skill_dim).astype(np.float32)

    def next_skill(self, step: int, rng: np.random.Generator) -> np.ndarray:
        if step >= self.search_steps:
            self.searching = False
        skill = self._candidate(step, rng)
        if self.searching:
            if self.score_steps > 0 and self.score_sum / self.score_steps > self.best_score:
                self.best_skill, self.best_score = self.current, self.score_sum / self.score_steps
            self.score_sum, self.score_steps = 0.0, 0
        self.current = skill
        return skill

    def observe(self, reward: np.ndarray) -> None:
        if self.searching:
            reward = np.asarray(reward, dtype=np.float64)
            self.score_sum += float(reward.sum())
            self.score_steps += reward.size


class MOSS(CIC):
    """MOSS: CIC with explore/control skill modes, mode-signed rewards and a finetune skill search."""

    state_attributes: ClassVar[tuple[str, ...]] = (*CIC.state_attributes, "search")

    def __init__(self, observation_space, action_space, device="cpu", *, skill_mode: str = "half",
                 partitions: float = 2.0, search_mode: str = "grid_search", knn_source: str = "obs",
                 knn_subtract_mean: bool = True, knn_unbiased_var: bool = False,
                 reward_before_rep_update: bool = True, simultaneous_update: bool = True,
                 **cic_kwargs: Any) -> None:
        if skill_mode not in SKILL_MODES:
            raise ConfigError(f"unknown algo.skill_mode '{skill_mode}'; choose one of {', '.join(SKILL_MODES)}")
        if search_mode not in SEARCH_MODES:
            raise ConfigError(f"unknown algo.search_mode '{search_mode}'; choose one of {', '.join(SEARCH_MODES)}")
        if not float(partitions) > 0:
            raise ConfigError(f"algo.partitions must be positive, got {partitions}")
        super().__init__(observation_space, action_space, device, knn_source=knn_source,
                         knn_subtract_mean=knn_subtract_mean, knn_unbiased_var=knn_unbiased_var,
                         reward_before_rep_update=reward_before_rep_update,
                         simultaneous_update=simultaneous_update, **cic_kwargs)
        self.skill_mode, self.partitions, self.search_mode = skill_mode, float(partitions), search_mode
        self.episode_steps = 1000
        self.search = SkillSearch(search_mode, self.skill_dim, search_steps=0, interval=self.meta_interval)

    # ------------------------------------------------------------------ URLB hooks
    def setup_urlb(self, reward_free: bool, seed_steps: int, episode_steps: int) -> None:
        super().setup_urlb(reward_free, seed_steps, episode_steps)
        self.episode_steps = int(episode_steps)
        moss_mode(np.zeros(1), self.episode_steps, self.partitions)  # refuses a bad partition now
        self.search = SkillSearch(self.search_mode, self.skill_dim, search_steps=int(seed_steps),
                                  interval=self.meta_interval)

    def meta_columns(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        return {"skill": ((self.skill_dim,), np.float32), "mode": ((), np.float32)}

    def init_meta(self, episode_step: np.ndarray, step: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        n = len(episode_step)
        if self.reward_free:
            mode = moss_mode(episode_step, self.episode_steps, self.partitions)
            return {"skill": moss_skill(mode, self.skill_mode, self.skill_dim, rng), "mode": mode.astype(np.float32)}
        skill = self.search.next_skill(step, rng)
        return {"skill": np.repeat(skill[None], n, axis=0), "mode": np.zeros(n, dtype=np.float32)}

    def eval_meta(self, n: int) -> dict[str, np.ndarray]:
        """Finetuning: the searched (or fixed) skill; pretraining: ``0.5 * 1`` (an explore-region skill)."""
        skill = self.constant_skill(1)[0] if self.reward_free else self.search.result()
        return {"skill": np.repeat(skill[None], n, axis=0), "mode": np.zeros(n, dtype=np.float32)}

    def warmup_actions(self, obs: np.ndarray, meta: dict[str, np.ndarray]) -> np.ndarray | None:
        """Finetuning's seed steps act deterministically with the pretrained actor (MOSS's exploration loop)."""
        if self.reward_free:
            return None
        return self.act(obs, meta, deterministic=True)[0]

    def observe_reward(self, reward: np.ndarray) -> None:
        if not self.reward_free:
            self.search.observe(reward)

    # ------------------------------------------------------------------ intrinsic reward
    def intrinsic_reward(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """The mixture reward: CIC's entropy reward signed by the stored mode (module docstring)."""
        return mixture_reward(self.entropy_reward(obs, next_obs), batch.mode)

    def reward_metrics(self, batch, reward: torch.Tensor) -> dict[str, torch.Tensor]:
        control = batch.mode > 0.5
        count = control.sum()
        return {**super().reward_metrics(batch, reward),
                "train/control_fraction": count.float() / control.numel(),
                "train/control_reward": (reward * control).sum() / count.clamp(min=1),
                "train/explore_reward": (reward * ~control).sum() / (control.numel() - count).clamp(min=1)}
