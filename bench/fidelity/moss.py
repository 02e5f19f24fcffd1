"""rlkit's MOSS against the authors' released JAX code (LeapLabTHU/MOSS, ``core/intrinsic/multimodal_cic.py``,
``core/intrinsic/cic.py``, ``core/calculations/losses.py``): the intrinsic module, update for update.

Scope: the CIC networks' contrastive (CPC) loss, its gradients, the Adam step (optax), the kNN entropy reward with
MOSS's running statistics (``(D - M)/S``, biased variance) on the pre-update networks, and the mixture's sign flip
of the control half of the batch (the reference orders the batch ``[mode 0; mode 1]`` and negates the second
block; rlkit negates by the stored mode).  The DDPG part (haiku actor/critic, simultaneous gradients) is not
compared here yet.  Hyperparameters from ``conf/intrinsic/multimodal_cic.yaml`` (temperature 0.5, k 16, clip
5e-4, running statistics with the mean subtracted, ``project_skill``); widths, skill_dim and batch shrunk on both
sides.  float64 on both sides (``jax_enable_x64``).

The reference's package imports its reverb/acme replay buffer at the top (``core/data``): those, ``chex`` and
``tree`` (assertion helpers of unused losses) are stubbed; nothing stubbed runs on the compared path.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from bench.fidelity.core import Adapter, Case, default_dtype, import_reference, rlkit_algorithm

OBS_DIM, ACT_DIM, HIDDEN, SKILL, BATCH = 24, 6, 32, 8, 64
STUBS = ("reverb", "dm_env", "wandb", "acme", "acme.adders", "acme.datasets", "dm_control", "imageio", "chex", "tree")


class MOSSAdapter(Adapter):
    """MOSS's intrinsic module (module docstring)."""

    name: ClassVar[str] = "moss"
    reference: ClassVar[str] = "LeapLabTHU/MOSS"

    def cases(self) -> list[Case]:
        return [Case("moss", ("algo=moss",), note=f"intrinsic module only; hidden {HIDDEN}, skill {SKILL}, "
                     f"batch {BATCH}, float64")]

    def build(self, case: Case) -> None:
        import gymnasium as gym
        import jax
        import torch
        import yaml

        jax.config.update("jax_enable_x64", True)
        obs_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float64)
        act_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float64)
        with default_dtype(torch.float64):
            torch.manual_seed(0)
            self.ours = rlkit_algorithm([*case.overrides, f"algo.hidden_dim={HIDDEN}", f"algo.skill_dim={SKILL}"],
                                        obs_space, act_space)
        self.ours.setup_urlb(reward_free=True, seed_steps=0, episode_steps=1000)
        self.ours.encode = lambda obs: obs  # states: identity encoder, kept float64
        cfg = yaml.safe_load((self.path / "conf" / "intrinsic" / "multimodal_cic.yaml").read_text())
        mod = import_reference(self.path, "core.intrinsic.multimodal_cic", STUBS, ("core",))
        self.theirs = mod.MultimodalCICReward(
            to_jit=False, network_cfg={**cfg["network_cfg"], "hidden_dim": HIDDEN, "skill_dim": SKILL},
            lr=float(cfg["lr"]), knn_entropy_config=cfg["knn_entropy_config"], temperature=float(cfg["temperature"]))
        self.state = self.theirs.init_params(jax.random.PRNGKey(0), np.zeros((1, OBS_DIM)), summarize=False)
        assert self.ours.knn_k == cfg["knn_entropy_config"]["knn_k"]
        assert self.ours.temperature == float(cfg["temperature"])

    def _linears(self) -> list[Any]:
        """rlkit's CIC linear layers in the reference's creation order: state_net, pred_net, skill_net."""
        cic = self.ours.cic
        return [m for net in (cic.state_net, cic.pred_net, cic.skill_net) for m in net
                if isinstance(m, __import__("torch").nn.Linear)]

    def _names(self) -> list[str]:
        return sorted(self.state.cic_params, key=lambda n: int(n.rsplit("_", 1)[1]) if n[-1].isdigit() else 0)

    def transplant(self) -> None:
        import jax.numpy as jnp

        params = dict(self.state.cic_params)
        for name, layer in zip(self._names(), self._linears(), strict=True):
            # copies: JAX on the CPU may alias a numpy buffer, which here would be the torch parameter itself
            w, b = layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy()
            assert params[name]["w"].shape == w.shape, (name, params[name]["w"].shape, w.shape)
            params[name] = {"w": jnp.array(w), "b": jnp.array(b)}
        self.state = self.state._replace(cic_params=params,
                                         cic_opt_params=self.theirs.cic_optimizer.init(params))

    def draws(self, step: int) -> dict[str, Any]:
        rng = np.random.default_rng(2000 + step)
        half = BATCH // 2
        u = rng.uniform(0.0, 1.0, size=(BATCH, SKILL // 2))
        zeros = np.zeros_like(u)
        skill = np.concatenate([np.concatenate([u[:half], zeros[:half]], 1),  # explore: [u, 0] (skill_mode half)
                                np.concatenate([zeros[half:], u[half:]], 1)])  # control: [0, u]
        return {"obs": rng.normal(size=(BATCH, OBS_DIM)), "next_obs": rng.normal(size=(BATCH, OBS_DIM)),
                "action": rng.uniform(-0.99, 0.99, size=(BATCH, ACT_DIM)), "reward": rng.normal(size=BATCH),
                "discount": np.full(BATCH, 0.99**3), "skill": skill,
                "mode": np.concatenate([np.zeros(half), np.ones(BATCH - half)])}

    def compare(self, draws: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        import jax
        import jax.numpy as jnp
        import torch

        from rlkit.replay.batch import Batch

        half = BATCH // 2
        # rlkit: one full update; the reward and the CIC step are recorded
        batch = Batch({k: torch.as_tensor(v, dtype=torch.float64) for k, v in draws.items()})
        rec: dict[str, Any] = {}
        real_ir, real_rep = self.ours.intrinsic_reward, self.ours.update_representation

        def ir(*args: Any) -> Any:
            rec["reward"] = real_ir(*args)
            return rec["reward"]

        def rep(*args: Any) -> Any:
            out = real_rep(*args)
            rec["loss"] = out["train/cic_loss"]
            return out

        self.ours.intrinsic_reward, self.ours.update_representation = ir, rep
        with default_dtype(torch.float64):
            self.ours.update(batch)
        del self.ours.intrinsic_reward, self.ours.update_representation
        ours_grads = {n: {"w": layer.weight.grad.T, "b": layer.bias.grad}
                      for n, layer in zip(self._names(), self._linears(), strict=True)}
        ours_params = {n: {"w": layer.weight.detach().T.clone(), "b": layer.bias.detach().clone()}
                       for n, layer in zip(self._names(), self._linears(), strict=True)}

        # the reference: its update_batch on the [mode 0; mode 1] lists, and its own gradient of the same loss
        def split(x: np.ndarray) -> list[Any]:
            return [jnp.asarray(x[:half]), jnp.asarray(x[half:])]

        ref_batch = types.SimpleNamespace(
            observation=split(draws["obs"]), next_observation=split(draws["next_obs"]),
            action=split(draws["action"]), reward=split(draws["reward"][:, None]),
            discount=split(draws["discount"][:, None]), extras={"skill": split(draws["skill"])})
        grads, logs = jax.grad(self.theirs._cpc_loss, has_aux=True)(
            self.state.cic_params, jnp.asarray(draws["obs"]), jnp.asarray(draws["next_obs"]),
            jnp.asarray(draws["skill"]))
        self.state, out_batch, _ = self.theirs.update_batch(self.state, ref_batch, 0)
        stats = self.ours.reward_stats
        return {
            "intrinsic_reward": (rec["reward"], np.asarray(out_batch.reward).reshape(-1)),
            "cpc_loss": (rec["loss"], logs["cpc_loss"]),
            "reward_running_stats": ([stats.mean, stats.var, stats.count],
                                     [self.state.mode_0_running_mean, self.state.mode_0_running_std,
                                      self.state.mode_0_running_num]),
            "grad.cic": (ours_grads, {n: dict(grads[n]) for n in self._names()}),
            "params.cic": (ours_params, {n: dict(self.state.cic_params[n]) for n in self._names()}),
        }
