"""OAP's RankNet pseudo-labeller (Yang et al. 2023, Sec. 4.2; RankNet: Burges et al. 2005).

A scorer ``f_r(s, a) -> R`` (MLP 512-256, ReLU, dropout 0.5; paper Table 5) is trained on the queried
pairs with the pairwise logistic loss

    ``o_k = f_r(s_k, a_k) - f_r(s_k, π_k(s_k))``,  ``P_k = σ(o_k)``,
    ``C_k = -P̄_k log P_k - (1 - P̄_k) log(1 - P_k)``,

``P̄_k = 1`` when the oracle preferred the dataset action ``a_k`` and ``0`` when it preferred the policy's
``π_k(s_k)``; unqueried rows are then labelled ``argmax_{a ∈ {a_i, π(s_i)}} f_r(s_i, a)`` (ties: the dataset
action).  Inputs are the concatenation of standardised state and action in ``[-1, 1]`` (the paper does not
say; Adam with a configurable learning rate, its optimiser is not reported either).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from rlkit.optim import step


class RankNet(nn.Module):
    """``f_r(s, a)``: Linear-ReLU-Dropout blocks and a scalar head."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int] = (512, 256),
                 dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim + action_dim
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU(), nn.Dropout(dropout)]
            width = int(h)
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], -1)).squeeze(-1)


def ranknet_loss(net: RankNet, obs: torch.Tensor, data_action: torch.Tensor, policy_action: torch.Tensor,
                 policy_preferred: torch.Tensor) -> torch.Tensor:
    """Mean RankNet cross-entropy ``C_k`` with target ``P̄_k = 1 - policy_preferred_k``."""
    logits = net(obs, data_action) - net(obs, policy_action)
    return F.binary_cross_entropy_with_logits(logits, (~policy_preferred).float())


def train_ranknet(net: RankNet, optimizer: torch.optim.Optimizer, obs: torch.Tensor, data_action: torch.Tensor,
                  policy_action: torch.Tensor, policy_preferred: torch.Tensor, epochs: int,
                  batch_size: int) -> dict[str, float]:
    """``epochs`` passes over the query set in shuffled minibatches (global torch RNG: the caller seeds it);
    returns the last epoch's mean loss and the training accuracy afterwards (dropout off)."""
    n = obs.shape[0]
    net.train()
    last = torch.zeros((), device=obs.device)
    for _ in range(int(epochs)):
        order = torch.randperm(n, device=obs.device)
        total = torch.zeros((), device=obs.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = ranknet_loss(net, obs[idx], data_action[idx], policy_action[idx], policy_preferred[idx])
            step(optimizer, loss)
            total = total + loss.detach() * idx.numel()
        last = total / n
    accuracy = (prefers_policy(net, obs, data_action, policy_action) == policy_preferred).float().mean()
    return {"oap/ranknet_loss": float(last), "oap/ranknet_accuracy": float(accuracy)}


@torch.no_grad()
def pair_scores(net: RankNet, obs: torch.Tensor, data_action: torch.Tensor, policy_action: torch.Tensor,
                chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f_r(s, π(s)), f_r(s, a))`` per row (dropout off), in chunks."""
    was_training = net.training
    net.eval()
    policy, data = [], []
    for i in range(0, obs.shape[0], chunk):
        policy.append(net(obs[i:i + chunk], policy_action[i:i + chunk]))
        data.append(net(obs[i:i + chunk], data_action[i:i + chunk]))
    net.train(was_training)
    if not policy:
        return obs.new_zeros(0), obs.new_zeros(0)
    return torch.cat(policy), torch.cat(data)


def prefers_policy(net: RankNet, obs: torch.Tensor, data_action: torch.Tensor, policy_action: torch.Tensor,
                   chunk: int = 65536) -> torch.Tensor:
    """``f_r(s, π(s)) > f_r(s, a)`` per row (dropout off)."""
    policy, data = pair_scores(net, obs, data_action, policy_action, chunk)
    return policy > data


def preference_probability(net: RankNet, obs: torch.Tensor, data_action: torch.Tensor, policy_action: torch.Tensor,
                           chunk: int = 65536) -> torch.Tensor:
    """``P(π(s) ≻ a) = σ(f_r(s, π(s)) - f_r(s, a))`` per row (dropout off): the RankNet's confidence."""
    policy, data = pair_scores(net, obs, data_action, policy_action, chunk)
    return torch.sigmoid(policy - data)
