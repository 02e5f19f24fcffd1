"""IQL against the authors' code (ikostrikov/implicit_q_learning, JAX/flax: ``learner.py``, ``critic.py``,
``actor.py``, ``policy.py``), update for update, with its MuJoCo configuration (expectile 0.7, temperature 3,
no dropout, cosine actor-learning-rate decay over 1M steps) and its locomotion reward scaling.

rlkit runs ``algo=iql env=hopper-medium`` (its MuJoCo family settings) on a synthetic dataset; the reference's
``Learner`` gets rlkit's initial weights (flax ``kernel`` = rlkit's ``weight.T``; both critics and the target
copy), float64 throughout (``jax_enable_x64``).  The reference's dataset path is its own code too:
``dataset_utils.D4RLDataset`` (actions clipped to ``±(1 - 1e-5)``, episode ends from state discontinuities)
and ``train_offline.normalize`` (rewards ``· 1000 / (G_max - G_min)``), fed the synthetic arrays instead of
``d4rl.qlearning_dataset``.  Its scaled rewards are compared with rlkit's (``rewards``: equal to the float32 it
stores them in); the updates are then fed the same scaled rewards in float64, so that rounding does not
blur the update check.  Its update runs under ``jax.disable_jit()`` so that the gradients each
``Model.apply_gradient`` hands its optax transformation can be recorded (a wrapper around ``tx.update``).

IQL draws nothing at random without dropout (the MuJoCo configuration has none), so there are no draws to
inject.  Stubs: its CLI/logging imports (absl, ml_collections, tensorboardX) and the environment imports of
the data path it does not use (gym, d4rl, its ``wrappers``/``evaluation``).  Newer JAX renamed
``jax.tree_multimap`` to ``jax.tree_util.tree_map`` and newer flax returns plain dicts from ``init``: the
adapter provides the old name and asks flax for frozen dicts (``flax_return_frozendict``), the API the
reference was written against.

Quantities: the value loss and ``V``, the advantage weights (``min(exp(β (Q̄ - V_new)), 100)``: the actor reads
the value function after its step), the actor loss, the TD target ``r + γ m V_new(s')`` and the critic loss,
the return scale, the gradients of all three networks, and every parameter after the update.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import types
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from bench.fidelity.core import Adapter, Case, default_dtype, reference_imports, rlkit_algorithm
from bench.fidelity.offline_data import (
    ACT_DIM,
    OBS_DIM,
    GradTap,
    batch_indices,
    member_layers,
    mlp_layers,
    pairs,
    rlkit_batch,
    rlkit_dataset,
    synthetic_d4rl,
)

STUBS = ("gym", "d4rl", "absl", "absl.app", "absl.flags", "ml_collections", "ml_collections.config_flags",
         "tensorboardX", "wrappers", "evaluation")
MODULES = ("learner", "policy", "value_net", "actor", "critic", "common", "dataset_utils", "train_offline")


@contextlib.contextmanager
def _lenient_static_argnames() -> Iterator[None]:
    """``jax.jit`` that drops ``static_argnames`` its function does not take, as JAX before 0.4 did (with a
    warning): the reference's ``policy._sample_actions`` (acting only) names a ``distribution`` it lacks."""
    import jax

    jit = jax.jit

    def lenient(fun: Any = None, **kwargs: Any) -> Any:
        if fun is None:
            return functools.partial(lenient, **kwargs)
        names = kwargs.get("static_argnames")
        if names is not None:
            params = inspect.signature(fun).parameters
            kwargs["static_argnames"] = tuple(n for n in names if n in params)
        return jit(fun, **kwargs)

    jax.jit = lenient
    try:
        yield
    finally:
        jax.jit = jit


def _np(x: Any) -> np.ndarray:
    """A float64 numpy *copy* (JAX on the CPU may alias a numpy buffer, which may alias a torch tensor)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.array(x, dtype=np.float64, copy=True)


class IQLAdapter(Adapter):
    name = "iql"
    reference = "ikostrikov/implicit_q_learning"

    def cases(self) -> list[Case]:
        return [Case("iql", ("algo=iql", "env=hopper-medium"),
                     note="rewards: the reference keeps its scaled rewards in float32 (D4RLDataset), ~2e-7; "
                          "the update is fed them in float64")]

    def build(self, case: Case) -> None:
        import flax
        import jax
        from gymnasium import spaces

        from rlkit.config import compose

        jax.config.update("jax_enable_x64", True)
        flax.config.update("flax_return_frozendict", True)
        if not hasattr(jax, "tree_multimap"):
            jax.tree_multimap = jax.tree_util.tree_map
        self.data = synthetic_d4rl()
        obs_space = spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        act_space = spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
        with default_dtype(torch.float64):
            self.algo = rlkit_algorithm(case.overrides, obs_space, act_space)
            self.algo.on_dataset(rlkit_dataset(self.data))
        a = self.algo
        with reference_imports(self.path, stubs=STUBS, isolate=MODULES), _lenient_static_argnames():
            import dataset_utils  # noqa: PLC0415
            import learner  # noqa: PLC0415
            import train_offline  # noqa: PLC0415
        self.ref_modules = types.SimpleNamespace(learner=learner, dataset_utils=dataset_utils)
        # the reference's own dataset path on the synthetic arrays
        arrays = {k: v.copy() for k, v in self.data.items()}
        dataset_utils.d4rl = types.SimpleNamespace(qlearning_dataset=lambda env: arrays)
        self.ref_data = dataset_utils.D4RLDataset(env=None)
        train_offline.normalize(self.ref_data)
        # the update is fed the scaled rewards in float64 (rlkit's transform of the raw ones): the reference keeps
        # its scaled rewards in float32, a rounding the "rewards" row reports on its own
        self.scaled_rewards = _np(a.transform_reward(torch.as_tensor(_np(self.data["rewards"]))))
        import jax.numpy as jnp

        obs0 = jnp.asarray(_np(self.data["observations"][:1]))
        act0 = jnp.asarray(_np(self.data["actions"][:1]))
        self.ref = learner.Learner(0, obs0, act0, actor_lr=a.actor_opt.defaults["lr"],
                                   value_lr=a.value_opt.defaults["lr"], critic_lr=a.critic_opt.defaults["lr"],
                                   hidden_dims=tuple(w.shape[0] for w, _ in mlp_layers(a.value)[:-1]),
                                   discount=a.gamma, tau=a.tau, expectile=a.expectile,
                                   temperature=a.temperature, dropout_rate=None,
                                   max_steps=int(compose(list(case.overrides)).algo.max_steps),
                                   opt_decay_schedule="cosine")
        self.grads: dict[str, Any] = {}
        self.tap = GradTap()
        self.tap.watch("value", a.value_opt, dict(a.value.named_parameters()))
        self.tap.watch("actor", a.actor_opt, dict(a.actor.named_parameters()))
        self.tap.watch("critic", a.critic_opt, dict(a.critic.named_parameters()))
        self.recorded: dict[str, Any] = {}
        for name in ("value_terms", "critic_terms"):  # (Q̄, V before the step, L_V) and (Q, y, L_Q)
            method = getattr(a, name)

            def recording(*args: Any, _method: Any = method, _name: str = name) -> Any:
                out = _method(*args)
                self.recorded[_name] = tuple(x.detach().clone() for x in out)
                return out
            setattr(a, name, recording)

    # ------------------------------------------------------------------ parameter trees
    @staticmethod
    def _dense(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
        return {f"Dense_{i}": {"kernel": _np(w.detach().T), "bias": _np(b.detach())}
                for i, (w, b) in enumerate(layers)}

    def _rlkit_trees(self) -> dict[str, Any]:
        """rlkit's parameters laid out as the reference's flax trees."""
        a = self.algo
        *hidden, last = mlp_layers(a.actor.trunk)
        return {
            "actor": {"MLP_0": self._dense(hidden), "Dense_0": self._dense([last])["Dense_0"],
                      "log_stds": _np(a.actor.log_std.detach())},
            "critic": {f"Critic_{k}": {"MLP_0": self._dense(member_layers(a.critic, k))} for k in range(2)},
            "target_critic": {f"Critic_{k}": {"MLP_0": self._dense(member_layers(a.critic_target, k))}
                              for k in range(2)},
            "value": {"MLP_0": self._dense(mlp_layers(a.value))},
        }

    def _ref_trees(self) -> dict[str, Any]:
        import flax

        return {name: flax.core.unfreeze(getattr(self.ref, name).params)
                for name in ("actor", "critic", "target_critic", "value")}

    def transplant(self) -> None:
        import flax
        import jax
        import jax.numpy as jnp

        trees = self._rlkit_trees()
        for name, tree in trees.items():
            model = getattr(self.ref, name)
            theirs = flax.core.unfreeze(model.params)
            if jax.tree_util.tree_structure(theirs) != jax.tree_util.tree_structure(tree):
                raise ValueError(f"{name}: the reference's parameter tree differs from rlkit's layout")
            params = flax.core.freeze(jax.tree_util.tree_map(jnp.asarray, tree))
            opt_state = model.tx.init(params) if model.tx is not None else None
            setattr(self.ref, name, model.replace(params=params, opt_state=opt_state))
        for name in ("actor", "critic", "value"):
            model = getattr(self.ref, name)
            setattr(self.ref, name, model.replace(tx=self._recording(name, model.tx)))

    def _recording(self, name: str, tx: Any) -> Any:
        """``tx`` whose ``update`` first records the gradients it is handed (under ``disable_jit``)."""
        import optax

        def update(grads: Any, state: Any, params: Any = None) -> Any:
            self.grads[name] = grads
            return tx.update(grads, state, params)
        return optax.GradientTransformation(tx.init, update)

    # ------------------------------------------------------------------ draws and compare
    def draws(self, step: int) -> dict[str, Any]:
        return {"idx": batch_indices(step)}

    def compare(self, draws: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        import flax
        import jax
        import jax.numpy as jnp

        idx = draws["idx"]
        rd = self.ref_data
        batch = self.ref_modules.dataset_utils.Batch(
            observations=jnp.asarray(_np(rd.observations[idx])), actions=jnp.asarray(_np(rd.actions[idx])),
            rewards=jnp.asarray(self.scaled_rewards[idx]), masks=jnp.asarray(_np(rd.masks[idx])),
            next_observations=jnp.asarray(_np(rd.next_observations[idx])))
        with default_dtype(torch.float64):
            metrics = self.algo.update(rlkit_batch(self.data, idx)).metrics
        with jax.disable_jit():
            info = self.ref.update(batch)
        ours_g = self.tap.take()
        a, r = self.algo, self.ref
        _, v_before, value_loss = self.recorded["value_terms"]
        q, target, critic_loss = self.recorded["critic_terms"]
        next_v = r.value.apply_fn.apply({"params": r.value.params}, batch.next_observations)
        adv_weight = np.minimum(np.exp(_np(info["adv"]) * a.temperature), 100.0)
        out: dict[str, tuple[Any, Any]] = {
            "rewards": (self.scaled_rewards, _np(rd.rewards)),
            "value_loss": (value_loss, info["value_loss"]),
            "v_mean": (v_before.mean(), info["v"]),
            "adv_weight_mean": (metrics["train/adv_weight_mean"], adv_weight.mean()),
            "actor_loss": (metrics["train/actor_loss"], info["actor_loss"]),
            "target": (target, batch.rewards + r.discount * batch.masks * next_v),
            "critic_loss": (critic_loss, info["critic_loss"]),
            "q_mean": (q.mean(1), np.array([info["q1"], info["q2"]])),
        }
        theirs_g = {k: flax.core.unfreeze(v) for k, v in self.grads.items()}
        out["grads"] = (self._grad_trees(ours_g), {k: jax.tree_util.tree_map(_np, theirs_g[k])
                                                   for k in ("actor", "critic", "value")})
        out["params"] = (self._rlkit_trees(), jax.tree_util.tree_map(_np, self._ref_trees()))
        return out

    def _grad_trees(self, grads: dict[str, dict[str, torch.Tensor]]) -> dict[str, Any]:
        """rlkit's recorded gradients in the reference's flax layout."""
        actor = dict(grads["actor"])
        log_std = actor.pop("log_std")
        *hidden, last = pairs(actor)
        critic = pairs(grads["critic"])
        return {
            "actor": {"MLP_0": self._dense(hidden), "Dense_0": self._dense([last])["Dense_0"],
                      "log_stds": _np(log_std)},
            "critic": {f"Critic_{k}": {"MLP_0": self._dense([(w[k].T, b[k, 0]) for w, b in critic])}
                       for k in range(2)},
            "value": {"MLP_0": self._dense(pairs(grads["value"]))},
        }
