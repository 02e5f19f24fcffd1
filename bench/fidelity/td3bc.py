"""TD3+BC against the authors' code (sfujim/TD3_BC: ``TD3_BC.py``, ``utils.py``), update for update.

Both sides start from rlkit's initial weights (the reference's ``Actor``/``Critic`` ``Linear`` layers receive
rlkit's actor MLP and the two members of its stacked critic; targets are copies, as the reference's
``deepcopy`` at construction), read the same rows of one synthetic D4RL-schema dataset, and draw the target
policy smoothing noise from the same seeded ``torch.randn_like`` of the same ``(B, |A|)`` shape, in float64.

States: the reference standardises its replay buffer once with ``ReplayBuffer.normalize_states`` (its
``main.py``, ``--normalize`` on); rlkit keeps raw states and standardises inside the update with the
statistics ``on_dataset`` fixed.  The statistics are compared (``obs_stats``) and the reference is fed the
states its formula ``(s - mean) / std`` gives in float64.

Quantities: the critic's ``Q`` on the batch and the target ``Q̄(s', ã')`` (forward hooks on the reference's
critic and critic target), the loss terms the reference computes with
``F.mse_loss`` (each critic's TD term, the BC term), ``λ``, the gradients at each optimizer step, and all
parameters (online and target) after the update.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from bench.fidelity.core import Adapter, Case, default_dtype, import_reference, rlkit_algorithm
from bench.fidelity.offline_data import (
    ACT_DIM,
    OBS_DIM,
    GradTap,
    batch_indices,
    copy_layers,
    layer_dict,
    member_layers,
    mlp_layers,
    pairs,
    rlkit_batch,
    rlkit_dataset,
    synthetic_d4rl,
)


class _RecordingF(types.ModuleType):
    """``torch.nn.functional`` for the reference module, recording each ``mse_loss`` it returns."""

    def __init__(self) -> None:
        super().__init__("F")
        self.losses: list[torch.Tensor] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(torch.nn.functional, name)

    def mse_loss(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = torch.nn.functional.mse_loss(*args, **kwargs)
        self.losses.append(out.detach().clone())
        return out


class TD3BCAdapter(Adapter):
    name = "td3bc"
    reference = "sfujim/TD3_BC"

    def cases(self) -> list[Case]:
        return [Case("td3bc", ("algo=td3bc",))]

    def build(self, case: Case) -> None:
        from gymnasium import spaces

        ref = import_reference(self.path, "TD3_BC")
        ref_utils = import_reference(self.path, "utils")
        self.data = synthetic_d4rl()
        obs_space = spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        act_space = spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
        with default_dtype(torch.float64):
            self.algo = rlkit_algorithm(case.overrides, obs_space, act_space)
            self.algo.on_dataset(rlkit_dataset(self.data))
            # the reference builds on its module-level device; rlkit's side runs on the CPU too
            ref.device = torch.device("cpu")
            self.ref = ref.TD3_BC(OBS_DIM, ACT_DIM, max_action=1.0, discount=self.algo.gamma, tau=self.algo.tau,
                                  policy_noise=self.algo.policy_noise, noise_clip=self.algo.noise_clip,
                                  policy_freq=self.algo.policy_delay, alpha=self.algo.alpha)
        self.F = _RecordingF()
        ref.F = self.F
        # the reference's own state standardisation (utils.ReplayBuffer.normalize_states) on the same arrays
        buffer = ref_utils.ReplayBuffer(OBS_DIM, ACT_DIM)
        buffer.convert_D4RL(self.data)
        self.ref_mean, self.ref_std = buffer.normalize_states()
        self.ref_not_done = buffer.not_done[:, 0].astype(np.float64)
        self.ref_reward = buffer.reward[:, 0].astype(np.float64)
        self._hooks()

    def _hooks(self) -> None:
        self.seen: dict[str, list[Any]] = {"critic": [], "critic_target": [], "q1": []}
        critic, target = self.ref.critic, self.ref.critic_target
        critic.register_forward_hook(lambda m, i, o: self.seen["critic"].append(torch.stack(o).detach().clone()))

        target.register_forward_hook(
            lambda m, i, o: self.seen["critic_target"].append(torch.stack(o).detach().clone()))
        q1 = critic.Q1

        def recording_q1(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
            out = q1(state, action)
            self.seen["q1"].append(out.detach().clone())
            return out
        critic.Q1 = recording_q1
        critic_loss = self.algo._losses["critic"]

        def recording_critic_loss(*args: Any) -> Any:
            loss, q, target = critic_loss(*args)
            self.recorded_critic = (q.detach().clone(), target.detach().clone())
            return loss, q, target
        self.algo._losses["critic"] = recording_critic_loss
        self.taps = (GradTap(), GradTap())
        self.taps[0].watch("critic", self.algo.critic_opt, dict(self.algo.critic.named_parameters()))
        self.taps[0].watch("actor", self.algo.actor_opt, dict(self.algo.actor.named_parameters()))
        self.taps[1].watch("critic", self.ref.critic_optimizer, dict(self.ref.critic.named_parameters()))
        self.taps[1].watch("actor", self.ref.actor_optimizer, dict(self.ref.actor.named_parameters()))

    def _ref_critic_layers(self, critic: Any) -> list[list[torch.nn.Linear]]:
        return [[critic.l1, critic.l2, critic.l3], [critic.l4, critic.l5, critic.l6]]

    def transplant(self) -> None:
        a, r = self.algo, self.ref
        copy_layers(mlp_layers(a.actor), [r.actor.l1, r.actor.l2, r.actor.l3])
        copy_layers(mlp_layers(a.actor_target), [r.actor_target.l1, r.actor_target.l2, r.actor_target.l3])
        for k, layers in enumerate(self._ref_critic_layers(r.critic)):
            copy_layers(member_layers(a.critic, k), layers)
        for k, layers in enumerate(self._ref_critic_layers(r.critic_target)):
            copy_layers(member_layers(a.critic_target, k), layers)

    def draws(self, step: int) -> dict[str, Any]:
        return {"idx": batch_indices(step), "seed": step}

    def _ref_sampler(self, idx: np.ndarray) -> Any:
        d = self.data

        def norm(s: np.ndarray) -> torch.Tensor:
            return torch.as_tensor((s.astype(np.float64) - self.ref_mean.astype(np.float64))
                                   / self.ref_std.astype(np.float64))

        def col(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x.astype(np.float64)).reshape(len(idx), -1)
        batch = (norm(d["observations"][idx]), col(d["actions"][idx]), norm(d["next_observations"][idx]),
                 col(self.ref_reward[idx]), col(self.ref_not_done[idx]))
        return types.SimpleNamespace(sample=lambda batch_size: batch)

    def _ref_params(self) -> dict[str, Any]:
        r = self.ref

        def lin(layers: list[torch.nn.Linear]) -> dict[str, torch.Tensor]:
            return layer_dict((m.weight, m.bias) for m in layers)
        actor = [r.actor.l1, r.actor.l2, r.actor.l3]
        actor_t = [r.actor_target.l1, r.actor_target.l2, r.actor_target.l3]
        return {"actor": lin(actor), "actor_target": lin(actor_t),
                **{f"critic{k}": lin(ls) for k, ls in enumerate(self._ref_critic_layers(r.critic))},
                **{f"critic_target{k}": lin(ls) for k, ls in enumerate(self._ref_critic_layers(r.critic_target))}}

    def _rlkit_params(self) -> dict[str, Any]:
        a = self.algo
        return {"actor": layer_dict(mlp_layers(a.actor)), "actor_target": layer_dict(mlp_layers(a.actor_target)),
                **{f"critic{k}": layer_dict(member_layers(a.critic, k)) for k in range(2)},
                **{f"critic_target{k}": layer_dict(member_layers(a.critic_target, k)) for k in range(2)}}

    def compare(self, draws: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        idx = draws["idx"]
        for v in self.seen.values():
            v.clear()
        self.F.losses.clear()
        with default_dtype(torch.float64):
            torch.manual_seed(draws["seed"])
            metrics = self.algo.update(rlkit_batch(self.data, idx)).metrics
            torch.manual_seed(draws["seed"])
            self.ref.train(self._ref_sampler(idx), batch_size=len(idx))
        ours_g, theirs_g = self.taps[0].take(), self.taps[1].take()
        a = self.algo
        out: dict[str, tuple[Any, Any]] = {
            "obs_stats": ((a.obs_norm.mean, a.obs_norm.std), (self.ref_mean[0], self.ref_std[0])),
        }
        # the critic's TD terms: F.mse_loss(Q1, y) + F.mse_loss(Q2, y) in the reference
        q_ref, q_next_ref = self.seen["critic"][0], self.seen["critic_target"][0].min(0).values
        reward = torch.as_tensor(self.ref_reward[idx])
        not_done = torch.as_tensor(self.ref_not_done[idx])
        target_ref = reward + not_done * a.gamma * q_next_ref[:, 0]
        out["critic_loss"] = (metrics["train/critic_loss"], self.F.losses[0] + self.F.losses[1])
        ours_q, ours_target = self.recorded_critic
        out["q"] = (ours_q, q_ref[..., 0])
        out["target"] = (ours_target, target_ref)
        out["critic_grad"] = (self._rlkit_grads(ours_g["critic"]), self._ref_grads(theirs_g["critic"]))
        if "train/actor_loss" in metrics:
            q1 = self.seen["q1"][0][:, 0]
            lmbda = a.alpha / q1.abs().mean()
            bc = self.F.losses[2]
            out["lambda"] = (metrics["train/lambda"], lmbda)
            out["bc_loss"] = (metrics["train/bc_loss"], bc)
            out["actor_loss"] = (metrics["train/actor_loss"], -lmbda * q1.mean() + bc)
            out["actor_grad"] = (layer_dict(pairs(ours_g["actor"])), layer_dict(pairs(theirs_g["actor"])))
        out["params"] = (self._rlkit_params(), self._ref_params())
        return out

    def _rlkit_grads(self, grads: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Per-member ``(out, in)`` layouts of the stacked critic's recorded gradients."""
        return {f"critic{k}": layer_dict((w[k].T, b[k, 0]) for w, b in pairs(grads)) for k in range(2)}

    def _ref_grads(self, grads: dict[str, torch.Tensor]) -> dict[str, Any]:
        def lin(names: list[str]) -> dict[str, torch.Tensor]:
            return layer_dict((grads[f"{n}.weight"], grads[f"{n}.bias"]) for n in names)
        return {"critic0": lin(["l1", "l2", "l3"]), "critic1": lin(["l4", "l5", "l6"])}
