"""rlkit's AWAC against the authors' trainer (``--ref awac=PATH``: a clone of rail-berkeley/rlkit).

The reference is ``rlkit/torch/sac/awac_trainer.py``'s ``AWACTrainer.train_from_torch`` with the settings of
``examples/awac/mujoco/awac1.py`` (beta 2 from its sweep, ``alpha=0`` without entropy tuning,
``awr_min_q=True``, policy ``GaussianPolicy`` 4x256 with ``std_architecture="values"`` and log-std in
[-6, 0], Q ``ConcatMlp`` 2x256, Adam 3e-4 with policy weight decay 1e-4, tau 5e-3).  rlkit runs
``algo=awac algo.variant=released`` (the switch; batch 1024 as the example).

Its package is also named ``rlkit``: rlkit's side is built first, then the reference's modules are imported
with our ``rlkit.*`` lifted out of ``sys.modules`` (:func:`bench.fidelity.core.reference_imports`) and put
back after; each side keeps its own module objects.  Stubs: ``torchvision`` (a pretrained-CNN module the
networks package imports) and ``gtimer`` (timing/logging).

Draws: both sides draw their Gaussian noise with ``torch.distributions.Normal.rsample`` in the same order
(``ã ~ π(·|s)`` then ``a' ~ π(·|s')``) from the same generator state (``torch.manual_seed`` before each
side's update), so the injected noise is identical.  Compared: the Q losses (the reference's two summed),
the AWR policy loss, the advantage weights (the reference's logged max/min/mean), every gradient and every
updated parameter (policy, Q, target Q), float64 on both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bench.fidelity.core import Adapter, Case, default_dtype, import_reference, rlkit_algorithm

OBS_DIM, ACT_DIM = 6, 3
STUBS = ("torchvision", "torchvision.models", "gtimer")


class AWACAdapter(Adapter):
    name = "awac"
    reference = "rail-berkeley/rlkit"

    def cases(self) -> list[Case]:
        return [Case("awac", overrides=("algo=awac", "algo.variant=released", "env=hopper-medium"),
                     switch="algo.variant=released", options={"batch": 1024})]

    def build(self, case: Case) -> None:
        import gymnasium as gym
        import torch

        self.case = case
        obs_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        act_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
        with default_dtype(torch.float64):
            torch.manual_seed(0)
            self.algo = rlkit_algorithm(case.overrides, obs_space, act_space)
            trainer_mod = import_reference(self.path, "rlkit.torch.sac.awac_trainer", stubs=STUBS)
            policies = import_reference(self.path, "rlkit.torch.sac.policies", stubs=STUBS)
            networks = import_reference(self.path, "rlkit.torch.networks", stubs=STUBS)
            policy = policies.GaussianPolicy(hidden_sizes=[256] * 4, obs_dim=OBS_DIM, action_dim=ACT_DIM,
                                             max_log_std=0, min_log_std=-6, std_architecture="values")
            qfs = [networks.ConcatMlp(input_size=OBS_DIM + ACT_DIM, output_size=1, hidden_sizes=[256, 256])
                   for _ in range(4)]
            self.trainer = trainer_mod.AWACTrainer(
                env=None, policy=policy, qf1=qfs[0], qf2=qfs[1], target_qf1=qfs[2], target_qf2=qfs[3],
                discount=0.99, soft_target_tau=5e-3, target_update_period=1, policy_lr=3e-4, qf_lr=3e-4,
                reward_scale=1, beta=2, alpha=0, use_automatic_entropy_tuning=False, q_num_pretrain1_steps=0,
                q_num_pretrain2_steps=50000, policy_weight_decay=1e-4, train_bc_on_rl_buffer=False,
                buffer_policy_sample_actions=False, reparam_weight=0.0, awr_weight=1.0, bc_weight=0.0,
                compute_bc=False, awr_use_mle_for_vf=False, awr_sample_actions=False, awr_min_q=True)

    def transplant(self) -> None:
        import torch

        a, t = self.algo, self.trainer
        with torch.no_grad():
            for ours, theirs in zip(linears(a.actor.trunk), [*t.policy.fcs, t.policy.last_fc], strict=True):
                theirs.weight.copy_(ours.weight)
                theirs.bias.copy_(ours.bias)
            t.policy.log_std_logits.copy_(a.actor.log_std_logits)
            for net, heads in ((a.critic, (t.qf1, t.qf2)), (a.critic_target, (t.target_qf1, t.target_qf2))):
                for k, head in enumerate(heads):
                    for ours, theirs in zip(ensemble_layers(net), [*head.fcs, head.last_fc], strict=True):
                        theirs.weight.copy_(ours.weight[k].T)
                        theirs.bias.copy_(ours.bias[k].reshape(-1))

    def draws(self, step: int) -> dict[str, Any]:
        rng = np.random.default_rng(step)
        n = self.case.options["batch"]
        obs = rng.normal(size=(n, OBS_DIM))
        return {"obs": obs, "action": rng.uniform(-0.95, 0.95, (n, ACT_DIM)),
                "reward": rng.normal(size=n), "next_obs": obs + 0.1 * rng.normal(size=obs.shape),
                "terminated": (rng.random(n) < 0.05).astype(np.float64), "seed": 10_000 + step}

    def compare(self, draws: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        import torch

        from rlkit.replay.batch import Batch

        t = {k: torch.tensor(v) for k, v in draws.items() if k != "seed"}  # copies
        n = len(t["reward"])
        batch = Batch(obs=t["obs"], action=t["action"], reward=t["reward"], next_obs=t["next_obs"],
                      terminated=t["terminated"], indices=torch.arange(n), weights=torch.ones(n))
        with default_dtype(torch.float64):
            torch.manual_seed(draws["seed"])
            metrics = self.algo.update(batch).metrics
            torch.manual_seed(draws["seed"])
            losses = []
            original = torch.Tensor.backward

            def recording_backward(tensor, *args, **kwargs):
                losses.append(tensor.detach().clone())
                return original(tensor, *args, **kwargs)

            self.trainer._need_to_update_eval_statistics = True
            torch.Tensor.backward = recording_backward
            try:
                self.trainer.train_from_torch({
                    "observations": t["obs"], "actions": t["action"], "rewards": t["reward"][:, None],
                    "terminals": t["terminated"][:, None], "next_observations": t["next_obs"]})
            finally:
                torch.Tensor.backward = original
        qf1_loss, qf2_loss, policy_loss = losses
        stats = self.trainer.eval_statistics
        a, tr = self.algo, self.trainer
        return {
            "critic_loss": (metrics["train/critic_loss"], qf1_loss + qf2_loss),
            "actor_loss": (metrics["train/actor_loss"], policy_loss),
            "adv_weight_max": (metrics["train/adv_weight_max"], n * stats["Advantage Weights Max"]),
            "grads.actor": (self.actor_tensors(a, grad=True), self.ref_actor_tensors(tr, grad=True)),
            "grads.critic": (self.critic_tensors(a.critic, grad=True),
                             self.ref_critic_tensors((tr.qf1, tr.qf2), grad=True)),
            "params.actor": (self.actor_tensors(a), self.ref_actor_tensors(tr)),
            "params.critic": (self.critic_tensors(a.critic), self.ref_critic_tensors((tr.qf1, tr.qf2))),
            "params.critic_target": (self.critic_tensors(a.critic_target),
                                     self.ref_critic_tensors((tr.target_qf1, tr.target_qf2))),
        }

    # ------------------------------------------------------------------------------ parameter views
    @staticmethod
    def _policy_tensors(layers: list[Any], log_std_logits: Any, grad: bool) -> dict[str, Any]:
        """A Gaussian policy's linear layers and log-std logits under one set of names (both sides)."""
        out = {}
        for j, layer in enumerate(layers):
            out[f"l{j}.weight"] = _value(layer.weight, grad)
            out[f"l{j}.bias"] = _value(layer.bias, grad)
        out["log_std_logits"] = _value(log_std_logits, grad)
        return out

    @classmethod
    def actor_tensors(cls, algo, grad: bool = False) -> dict[str, Any]:
        return cls._policy_tensors(linears(algo.actor.trunk), algo.actor.log_std_logits, grad)

    @classmethod
    def ref_actor_tensors(cls, trainer, grad: bool = False) -> dict[str, Any]:
        return cls._policy_tensors([*trainer.policy.fcs, trainer.policy.last_fc], trainer.policy.log_std_logits, grad)

    @staticmethod
    def critic_tensors(net, grad: bool = False) -> dict[str, Any]:
        out = {}
        for k in range(2):
            for j, layer in enumerate(ensemble_layers(net)):
                out[f"q{k + 1}.l{j}.weight"] = _value(layer.weight, grad)[k].T
                out[f"q{k + 1}.l{j}.bias"] = _value(layer.bias, grad)[k].reshape(-1)
        return out

    @staticmethod
    def ref_critic_tensors(heads, grad: bool = False) -> dict[str, Any]:
        out = {}
        for k, head in enumerate(heads):
            for j, layer in enumerate([*head.fcs, head.last_fc]):
                out[f"q{k + 1}.l{j}.weight"] = _value(layer.weight, grad)
                out[f"q{k + 1}.l{j}.bias"] = _value(layer.bias, grad)
        return out


def _value(p, grad: bool):
    return (p.grad if grad else p).detach().clone()


def linears(module) -> list[Any]:
    from torch import nn

    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def ensemble_layers(net) -> list[Any]:
    from rlkit.nets.mlp import EnsembleLinear

    return [m for m in net.modules() if isinstance(m, EnsembleLinear)]
