"""The training-time diagnostics monitor: SEEM and Q statistics of the critic on a fixed probe set.

The regime (``rlkit/regimes/base.py``) builds one :class:`DiagnosticsMonitor` when
``diagnostics.seem.interval > 0`` and calls ``maybe_run(prev_step, step)`` after every training step; a
non-empty dict it returns is logged at ``step``.  It runs at the first training step of a fresh run
(``prev_step == 0``: the baseline near initialisation) and whenever ``step`` crosses a multiple of
``interval`` (``prev // interval < step // interval``), so a resumed run evaluates at exactly the same
steps as an uninterrupted one.  The probe set (``batch`` dataset transitions, uniform, seeded) is drawn
once, on the first evaluation, and kept: SEEM is compared across training on the same points (as SEEM's released code).
(Online, while the replay buffer still holds fewer than ``batch`` transitions, the probe is re-drawn at
each evaluation until it is full size.)

Logged (all on the probe, for critic head Q1; ``x_i = (s_i, a_i)``, ``δ_i = Q(x_i) - r'_i - γ m_i Q(s'_i,
π(s'_i))`` with ``r'`` the algorithm's transformed reward and ``m = 1 - terminated``):

* ``diag/seem``, ``diag/seem_normalized`` -- :mod:`rlkit.diagnostics.seem`;
* ``diag/q_mean`` = mean_i Q(x_i); ``diag/q_max`` = max_i |Q(x_i)|; ``diag/q_pi_mean`` = mean_i Q(s_i, π(s_i));
* ``diag/param_norm`` = ||θ_Q1||₂;
* ``diag/grad_norm`` = ||∇_θ ½ mean_i δ_i²|| with the bootstrap term held fixed (the semi-gradient of the
  TD loss under a hard target copy: the update whose linearisation A describes);
* ``diag/td_error`` = mean_i |δ_i|;
* ``diag/q_bound`` = max_i |r'_i| / (1 - γ): no fixed point of the Bellman operator exceeds it (the scale
  ``rlkit diagnose`` judges divergence against).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from rlkit.algorithm import Algorithm, DiagnosticsCritic
from rlkit.diagnostics.seem import FunctionalCritic, compute_seem, functional_critic
from rlkit.errors import ConfigError


def diagnostics_critic(algo: Algorithm) -> DiagnosticsCritic:
    """``algo.critic_for_diagnostics()`` checked: a clear error when the algorithm exposes no critic."""
    critic = algo.critic_for_diagnostics()
    if critic is None:
        raise ConfigError(f"algorithm {type(algo).__name__} exposes no critic for SEEM "
                          "(critic_for_diagnostics() returned None); set diagnostics.seem.interval=0")
    if not isinstance(critic.q, torch.nn.Module):
        raise ConfigError(f"algorithm {type(algo).__name__}'s critic_for_diagnostics() gives a "
                          f"{type(critic.q).__name__} as the critic, not an nn.Module, so SEEM cannot "
                          "differentiate it; set diagnostics.seem.interval=0")
    return critic


class DiagnosticsMonitor:
    """Evaluates SEEM and critic statistics every ``interval`` steps on a fixed probe of ``batch`` transitions.

    ``probe_fn(n)`` returns a :class:`~rlkit.replay.Batch` of ``n`` raw transitions (the same ones every
    call).  ``method``/``chunk``/``mask_terminals`` are passed to :func:`~rlkit.diagnostics.seem.compute_seem`.
    """

    def __init__(self, algo, probe_fn: Callable[[int], Any], interval: int, batch: int = 2560,
                 method: str = "auto", chunk: int = 256, mask_terminals: bool = True) -> None:
        if interval <= 0:
            raise ConfigError(f"diagnostics.seem.interval must be positive to monitor (got {interval})")
        if batch < 2:
            raise ConfigError(f"diagnostics.seem.batch must be at least 2 (got {batch})")
        self.algo, self.probe_fn = algo, probe_fn
        self.interval, self.batch = int(interval), int(batch)
        self.method, self.chunk, self.mask_terminals = method, int(chunk), bool(mask_terminals)
        self.gamma = diagnostics_critic(algo).gamma  # fail at startup, not after the first interval
        self.probe = None

    def due(self, prev_step: int, step: int) -> bool:
        return prev_step == 0 or prev_step // self.interval < step // self.interval

    def maybe_run(self, prev_step: int, step: int) -> dict[str, float]:
        """The diagnostics when this step is due (see module docstring), else ``{}``."""
        return self.run() if self.due(prev_step, step) else {}

    def run(self) -> dict[str, float]:
        p = self.probe if self.probe is not None else self.probe_fn(self.batch)
        if p.reward.shape[0] >= self.batch:
            self.probe = p  # full size: fixed from now on (a growing online buffer is re-drawn until then)
        view = diagnostics_critic(self.algo)
        policy = view.policy
        critic = functional_critic(view.q)
        with torch.no_grad():
            obs, act = view.inputs(p.obs, p.action)
            next_obs, _ = view.inputs(p.next_obs, p.action)
            reward = view.reward(p.reward)
            terminated = p.get("terminated")
            not_done = torch.ones_like(reward) if terminated is None else 1.0 - terminated
        result = compute_seem(critic, policy, obs, act, next_obs, self.gamma,
                              not_done if self.mask_terminals else None, self.method, self.chunk)
        stats = critic_statistics(critic, policy, obs, act, next_obs, reward, not_done, self.gamma)
        return {**result.metrics(), **stats}


def critic_statistics(critic: FunctionalCritic, policy: Callable[[torch.Tensor], torch.Tensor],
                      obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor, reward: torch.Tensor,
                      not_done: torch.Tensor, gamma: float) -> dict[str, torch.Tensor]:
    """Q statistics, parameter and TD-gradient norms on the probe (module docstring), as 0-dim tensors."""
    params = critic.params
    with torch.no_grad():
        q = critic(params, obs, act)
        q_pi = critic(params, obs, policy(obs))
        target = reward + gamma * not_done * critic(params, next_obs, policy(next_obs))

    with torch.enable_grad():
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        td_loss = 0.5 * (critic(leaves, obs, act) - target).pow(2).mean()
        grads = torch.autograd.grad(td_loss, list(leaves.values()))
    grad_norm = torch.sqrt(sum(g.double().pow(2).sum() for g in grads)).float()
    return {
        "diag/q_mean": q.mean(),
        "diag/q_max": q.abs().max(),
        "diag/q_pi_mean": q_pi.mean(),
        "diag/param_norm": critic.param_norm(),
        "diag/grad_norm": grad_norm,
        "diag/td_error": (q - target).abs().mean(),
        "diag/q_bound": reward.abs().max() / max(1.0 - gamma, 1e-6),
    }
