"""The value-consistency distance of VCR (Yue et al., AAAI 2023, arXiv 2206.12542, Sec. 4).

VCR makes an imagined latent ``z_hat_{t+k}`` (a K-step rollout of the transition model) yield the same
action values as the real latent ``z_bar_{t+k}`` of the observed future: with online Q on the imagined
side and the (stop-gradient) target Q on the real side,

    L_VCR = (1/K) sum_{k=1..K} m_k Dist( sg(P_bar_{t+k}), P_{t+k} ),

where ``m_k`` masks windows that cross an episode end. The paper's exact ``P`` and ``Dist`` are not
published as code; both are switches here:

* ``space="action_softmax"`` (default): ``P = softmax_a(Q(z, a) / temperature)`` over the actions (the
  discrete head's ``A`` actions, or ``N`` actions sampled from the policy for continuous control);
  ``space="c51_atoms"``: the per-action return distributions of a C51 head, distances summed over actions;
* ``dist="kl"`` (default): ``KL(P_bar || P) = sum P_bar (log P_bar - log P)``; ``"ce"``: ``-sum P_bar log P``
  (KL plus the target's entropy, same gradient); ``"mse"``: ``sum (P - P_bar)^2``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from rlkit.errors import ConfigError

DISTANCES = ("kl", "ce", "mse")
SPACES = ("action_softmax", "c51_atoms")


def check_switches(dist: str, space: str) -> None:
    if dist not in DISTANCES:
        raise ConfigError(f"algo.vcr_dist={dist!r}; use one of {' | '.join(DISTANCES)}")
    if space not in SPACES:
        raise ConfigError(f"algo.vcr_space={space!r}; use one of {' | '.join(SPACES)}")


def distance(log_p: Tensor, target_p: Tensor, dist: str) -> Tensor:
    """``Dist(target_p, p)`` over the last axis, from log-probabilities ``log_p`` and probabilities ``target_p``."""
    if dist == "kl":
        return (target_p * (target_p.clamp_min(1e-12).log() - log_p)).sum(-1)
    if dist == "ce":
        return -(target_p * log_p).sum(-1)
    if dist == "mse":
        return (log_p.exp() - target_p).pow(2).sum(-1)
    raise ConfigError(f"unknown VCR distance {dist!r}; use one of {DISTANCES}")


def action_value_consistency(q: Tensor, q_target: Tensor, dist: str = "kl", temperature: float = 1.0) -> Tensor:
    """``Dist(softmax(q_target / T), softmax(q / T))`` over the last (action) axis; ``q_target`` is detached."""
    log_p = F.log_softmax(q.float() / temperature, dim=-1)
    target_p = F.softmax(q_target.detach().float() / temperature, dim=-1)
    return distance(log_p, target_p, dist)


def atom_consistency(logits: Tensor, target_logits: Tensor, dist: str = "kl") -> Tensor:
    """C51 space: ``sum_a Dist(p_bar(., a), p(., a))`` for logits ``[..., A, atoms]`` (target detached)."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    target_p = F.softmax(target_logits.detach().float(), dim=-1)
    return distance(log_p, target_p, dist).sum(-1)
