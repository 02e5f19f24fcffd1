"""The README's "Adding a method" example: linear behaviour cloning, one module plus one YAML.

``pi(s) = tanh(W s + b)`` is fitted to the dataset's actions (mapped to [-1, 1]) by the weighted mean
squared error ``mean_i w_i |pi(s_i) - a_i|^2`` (Pomerleau 1991's behaviour cloning with a linear policy).
"""

from __future__ import annotations

import torch

from rlkit.algorithm import Algorithm, ContinuousActionMixin, UpdateResult


class LinearBC(ContinuousActionMixin, Algorithm):
    regimes = ("offline",)  # trains on a dataset, so `env=` must name one (hopper-medium, ...)
    observation = "vector"
    action = "continuous"

    def __init__(self, observation_space, action_space, device="cpu", *, lr: float = 1e-3) -> None:
        super().__init__(observation_space, action_space, device)
        self._init_action_scaling(action_space, self.device)
        self.policy = torch.nn.Linear(self.obs_dim, self.action_dim).to(self.device)
        self.opt = torch.optim.Adam(self.policy.parameters(), lr=lr)  # saved and resumed automatically

    @torch.no_grad()
    def act(self, obs, state=None, deterministic=True):
        return self.to_env_action(torch.tanh(self.policy(self.as_tensor(obs)))), state

    def update(self, batch) -> UpdateResult:
        target = self.from_env_action(batch.action).clamp(-1.0, 1.0)
        error = (torch.tanh(self.policy(batch.obs)) - target).pow(2).mean(-1)
        loss = (batch.weights * error).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return UpdateResult({"train/bc_loss": loss.detach()})
