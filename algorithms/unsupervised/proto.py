"""ProtoRL -- Reinforcement Learning with Prototypical Representations (Yarats et al. 2021, arXiv 2102.11271) as URLB
runs it on states (Laskin et al. 2021, released ``agent/proto.py`` and ``proto.yaml``), on the URLB DDPG backbone.

* **Embeddings**: predictor ``p = Linear(obs, pred_dim)`` (128), projector ``g = Linear(pred_dim, proj_dim) ->
  ReLU -> Linear(proj_dim, pred_dim)`` (512), prototypes ``C`` (``num_protos`` x ``pred_dim``, 512 x 128, rows
  renormalised to unit length before every use), a target predictor ``p_bar`` (EMA, ``predictor_target_tau``
  0.05, after every representation step).  The encoder is the identity on states.
* **Loss** (Sec. 4.1): online ``u = g(p(s_t))/||.||``, log-probabilities ``log softmax(C u / T)``; target
  ``v = p_bar(s_{t+n})/||.||``, codes ``q = SK(C v / T)`` with ``T = temperature`` (0.1) and ``SK`` three
  Sinkhorn-Knopp iterations over the batch (:func:`sinkhorn_knopp`); ``L = -mean_B sum_k q_k log p_k`` (Adam on
  ``p, g, C``, lr 1e-4), one step per update **before** the reward.
* **Reward** (Sec. 4.2, entropy from prototypes): ``v_i = p(s_{t+n,i})/||.||``; for each prototype ``c_k`` one
  candidate row is sampled from ``softmax_i(c_k^T v_i)`` (over the batch) and the ``num_protos`` candidates are
  pushed into a FIFO queue of ``queue_size`` (2048) embeddings (zeros at first); ``r_i`` is the distance from
  ``v_i`` to its ``topk``-th (3rd) nearest queue entry, no log and no normalisation (URLB's code).
* **Finetuning** (URLB's ``ProtoAgent.init_from``): actor, predictor, projector, prototypes and, with
  ``init_critic``, the *whole* critic (heads included) are copied; ``init_full_critic: false`` copies only the
  trunk as the other URLB agents do.  The critic target stays fresh (``target_from_fresh_critic``).

URLB names the softmax temperature ``tau`` and the target EMA ``encoder_target_tau``; here ``temperature`` and
``predictor_target_tau`` (``tau`` is the critic target EMA of the DDPG backbone).  States only here.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rlkit.algorithms.unsupervised.ddpg import DDPG, orthogonal_init
from rlkit.algorithms.unsupervised.knn_reward import CandidateQueue
from rlkit.algorithms.unsupervised.rnd import states_only
from rlkit.errors import ConfigError
from rlkit.nets import polyak_update
from rlkit.optim import adam, step


def sinkhorn_knopp(scores: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Codes ``q`` (``B x K``, rows summing to 1) of scores ``B x K`` (SwAV, Caron et al. 2020, Alg. 1; ProtoRL
    Sec. 4.1): ``Q = exp(S - max S)^T / sum``; ``iterations`` times scale the ``K`` rows of ``Q`` to sum ``1/K``,
    then the ``B`` columns to sum ``1/B``; finally normalise each column to 1 and transpose."""
    q = torch.exp(scores - scores.max()).T
    q = q / q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q = q * ((1.0 / k) / q.sum(dim=1, keepdim=True))
        q = q * ((1.0 / b) / q.sum(dim=0, keepdim=True))
    return (q / q.sum(dim=0, keepdim=True)).T


class PrototypeNetworks(nn.Module):
    """Predictor, target predictor, projector, prototypes and the candidate queue (module docstring)."""

    def __init__(self, obs_dim: int, pred_dim: int, proj_dim: int, num_protos: int, queue_size: int) -> None:
        super().__init__()
        self.predictor = nn.Linear(obs_dim, pred_dim)
        self.projector = nn.Sequential(nn.Linear(pred_dim, proj_dim), nn.ReLU(), nn.Linear(proj_dim, pred_dim))
        self.protos = nn.Linear(pred_dim, num_protos, bias=False)
        self.apply(orthogonal_init)
        self.predictor_target = copy.deepcopy(self.predictor).requires_grad_(False)
        self.queue = CandidateQueue(queue_size, pred_dim)

    def trained_parameters(self) -> list[nn.Parameter]:
        return [*self.predictor.parameters(), *self.projector.parameters(), *self.protos.parameters()]

    def prototypes(self) -> torch.Tensor:
        """``C`` with unit rows."""
        return F.normalize(self.protos.weight, dim=1)

    @torch.no_grad()
    def normalize_protos(self) -> None:
        self.protos.weight.copy_(self.prototypes())


class ProtoRL(DDPG):
    """ProtoRL on the URLB DDPG backbone (module docstring)."""

    regimes: ClassVar[tuple[str, ...]] = ("pretrain", "finetune")
    observation: ClassVar[str] = "vector"  # states only here
    architecture_keys: ClassVar[tuple[str, ...]] = ("obs_type", "hidden_dim", "feature_dim", "pred_dim", "proj_dim",
                                                    "num_protos", "queue_size")

    def __init__(self, observation_space, action_space, device="cpu", *, pred_dim: int = 128, proj_dim: int = 512,
                 num_protos: int = 512, queue_size: int = 2048, topk: int = 3, temperature: float = 0.1,
                 predictor_target_tau: float = 0.05, sinkhorn_iterations: int = 3, init_full_critic: bool = True,
                 **ddpg_kwargs: Any) -> None:
        states_only("ProtoRL", ddpg_kwargs)
        if int(num_protos) > int(queue_size):
            raise ConfigError(f"algo.num_protos={num_protos} candidates per batch exceed algo.queue_size={queue_size}; "
                              "use queue_size >= num_protos")
        if not 1 <= int(topk) <= int(queue_size):
            raise ConfigError(f"algo.topk must be in [1, queue_size={queue_size}], got {topk}")
        super().__init__(observation_space, action_space, device, **ddpg_kwargs)
        self.topk, self.temperature = int(topk), float(temperature)
        self.predictor_target_tau, self.sinkhorn_iterations = float(predictor_target_tau), int(sinkhorn_iterations)
        self.init_full_critic = bool(init_full_critic)
        self.proto = PrototypeNetworks(self.obs_dim, int(pred_dim), int(proj_dim), int(num_protos),
                                       int(queue_size)).to(self.device)
        self.proto_opt = adam(self.proto.trained_parameters(), self.lr)

    # ------------------------------------------------------------------ the intrinsic reward
    def update_representation(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Adam step on the swapped-prediction loss (module docstring), the prototypes re-normalised, then the
        target predictor's EMA."""
        net = self.proto
        net.normalize_protos()
        online = F.normalize(net.projector(net.predictor(obs)), dim=1)
        log_p = F.log_softmax(net.protos(online) / self.temperature, dim=1)
        with torch.no_grad():
            target = F.normalize(net.predictor_target(next_obs), dim=1)
            codes = sinkhorn_knopp(net.protos(target) / self.temperature, self.sinkhorn_iterations)
        loss = -(codes * log_p).sum(dim=1).mean()
        step(self.proto_opt, loss)
        # URLB's reward (compute_intr_reward, right after this step) re-normalises the stored prototypes in place;
        # doing it here keeps the stored weights (and snapshots) equal to URLB's; the math is unchanged
        net.normalize_protos()
        polyak_update(net.predictor, net.predictor_target, self.predictor_target_tau)
        return {"train/proto_loss": loss.detach()}

    @torch.no_grad()
    def intrinsic_reward(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Distance of ``v_i`` to its ``topk``-th nearest queued candidate, after this batch's candidates are
        queued (module docstring).  Advances only the queue (reward state, like running statistics)."""
        net = self.proto
        v = F.normalize(net.predictor(next_obs), dim=1)
        prob = F.softmax(net.prototypes() @ v.T, dim=1)  # (K, B): each prototype's distribution over the batch
        candidates = torch.multinomial(prob, 1).squeeze(1)
        net.queue.push(v[candidates])
        distances = torch.cdist(v.unsqueeze(0), net.queue.items.unsqueeze(0),
                                compute_mode="donot_use_mm_for_euclid_dist").squeeze(0)
        return distances.topk(self.topk, dim=1, largest=False).values[:, -1]

    # ------------------------------------------------------------------ finetuning
    def init_from_snapshot(self, state: dict[str, Any]) -> None:
        """DDPG's copy, then (``init_critic`` and ``init_full_critic``) the whole pretrained critic."""
        super().init_from_snapshot(state)
        if self.init_critic and self.init_full_critic:
            self.critic.load_state_dict(state["critic"])
            if not self.target_from_fresh_critic:
                self.critic_target.load_state_dict(self.critic.state_dict())
