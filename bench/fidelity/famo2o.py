"""rlkit's FamO2O (IQL base) against LeapLabTHU/FamO2O's released JAX code (``--ref famo2o=PATH``).

The reference is ``jax_iql/family_learner.py``'s ``FamilyLearner.update`` (``_family_update_jit``: V ->
balance model and its temperature -> universal model -> Q -> Polyak) with its only released configuration,
``configs/family_antmaze_finetune_config.py`` (coefficients in [8, 14], expectile 0.9, no learning-rate decay,
2x256 networks), and the training script's AntMaze reward ``r - 1``.  rlkit runs ``algo=famo2o
env=antmaze-umaze algo.advantage_weighting=released`` (the switch; AntMaze's per-family settings give the
rest: balance model every update, expectile 0.9, ``r - 1``).  Two phases: ``offline`` (uniform
coefficients, ``random_hierarchical_coefficients=True``) and ``online`` (coefficients from the balance model).

Float64: JAX with ``jax_enable_x64``; the reference's models get rlkit's initial parameters as float64 arrays
(and fresh Adam states for them).  Flax is asked for ``FrozenDict`` variables (``flax_return_frozendict``),
which the 2021-era ``common.Model.create`` unpacks.  Draws: the reference's update splits its ``rng`` into
one key for the balance step (its coefficient noise and, with the same key, the universal model's action
noise) and one for the actor's coefficients; the adapter sets that ``rng``, reproduces the three draws from
the same keys (``tfd.MultivariateNormalDiag(0, 1).sample(seed=key)`` and ``jax.random.uniform``) and feeds
them to rlkit (its ``torch.randn_like`` calls, in order, and the family's uniform draw).  Gradients: at the
updates in ``GRAD_STEPS`` the reference runs with ``jax.disable_jit()`` and ``Model.apply_gradient`` records
each network's gradient; other updates run jitted and report nothing (``--updates`` should pick from
``GRAD_STEPS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bench.fidelity.core import Adapter, Case, default_dtype, import_reference, rlkit_algorithm

OBS_DIM, ACT_DIM, BATCH, BETA_RANGE = 8, 3, 256, (8.0, 14.0)
#: updates whose quantities are compared (the harness's default ``--updates 1,50``): the reference runs them
#: unjitted to record its gradients; the updates between run jitted (same arithmetic, much faster)
GRAD_STEPS = (1, 2, 10, 50)
REF_MODULES = ("family_learner", "family_actor", "family_temperature", "family_utils", "common", "critic",
               "policy", "value_net", "learner", "actor")


class FamO2OAdapter(Adapter):
    name = "famo2o"
    reference = "LeapLabTHU/FamO2O"

    def cases(self) -> list[Case]:
        overrides = ("algo=famo2o", "algo.base=iql", "env=antmaze-umaze", "algo.advantage_weighting=released")
        return [Case("famo2o", overrides, switch="algo.advantage_weighting=released", options={"phase": phase})
                for phase in ("offline", "online")]

    def build(self, case: Case) -> None:
        import gymnasium as gym
        import jax
        import torch

        jax.config.update("jax_enable_x64", True)
        import flax

        flax.config.update("flax_return_frozendict", True)
        self.case = case
        self.phase = case.options["phase"]
        obs_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        act_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
        with default_dtype(torch.float64):
            torch.manual_seed(0)
            self.algo = rlkit_algorithm(case.overrides, obs_space, act_space)
        self.algo.begin_phase(self.phase)
        root = self.path / "jax_iql"
        fl = import_reference(root, "family_learner", isolate=REF_MODULES)
        self.Model, self.Batch, self.tfd = fl.Model, fl.Batch, fl.policy.tfd  # the module objects it uses
        self.learner = fl.FamilyLearner(
            0, np.zeros((2, OBS_DIM)), np.zeros((2, ACT_DIM)), actor_lr=3e-4, value_lr=3e-4, critic_lr=3e-4,
            hidden_dims=(256, 256), discount=0.99, tau=0.005, expectile=0.9, dropout_rate=None,
            opt_decay_schedule=None, family_sin_cos_n=10000.0, family_sin_cos_d=6,
            family_coefficient_range=BETA_RANGE, target_entropy=None, hierarchical_init_temperature=1.0,
            hierarchical_temp_lr=3e-4)

    # ------------------------------------------------------------------------------------ parameters
    def rlkit_params(self, grad: bool = False) -> dict[str, Any]:
        """rlkit's networks in the reference's Flax layout (``kernel`` = torch weight transposed)."""
        impl = self.algo.impl

        def val(p):
            t = p.grad if grad else p
            return np.array(t.detach().cpu().numpy(), dtype=np.float64)  # a copy: JAX may alias numpy memory

        def mlp(module, head: bool) -> dict[str, Any]:
            layers = linears(module)
            body = {f"Dense_{j}": {"kernel": val(m.weight).T, "bias": val(m.bias)} for j, m in enumerate(layers)}
            if not head:
                return {"MLP_0": body}
            last = body.pop(f"Dense_{len(layers) - 1}")
            return {"MLP_0": body, "Dense_0": last}

        def double(net) -> dict[str, Any]:
            out = {}
            for k in range(2):
                out[f"Critic_{k}"] = {"MLP_0": {f"Dense_{j}": {"kernel": val(m.weight)[k],
                                                                "bias": val(m.bias)[k].reshape(-1)}
                                                for j, m in enumerate(ensemble_layers(net))}}
            return out

        out = {
            "value": mlp(impl.value, head=False),
            "critic": double(impl.critic),
            "actor": {**mlp(impl.actor.trunk, head=True), "log_stds": val(impl.actor.log_std)},
            "balance": {**mlp(impl.family.model.trunk, head=True), "log_stds": val(impl.family.model.log_std)},
            "temperature": {"log_temp": val(impl.family.log_temperature).reshape(())},
        }
        if not grad:
            out["critic_target"] = double(impl.critic_target)
        return out

    def ref_params(self) -> dict[str, Any]:
        L = self.learner
        return {name: to_numpy(model.params) for name, model in self.models().items()} | {
            "critic_target": to_numpy(L.target_critic.params)}

    def models(self) -> dict[str, Any]:
        L = self.learner
        return {"value": L.value, "critic": L.critic, "actor": L.actor, "balance": L.hierarchical_actor,
                "temperature": L.hierarchical_temp}

    def transplant(self) -> None:
        import flax
        import jax.numpy as jnp

        ours = self.rlkit_params()
        L = self.learner

        def frozen(tree):
            return flax.core.freeze(jax_tree(tree, jnp))

        def fresh(model, params):
            return model.replace(params=params, opt_state=model.tx.init(params) if model.tx is not None else None)

        L.value = fresh(L.value, frozen(ours["value"]))
        L.critic = fresh(L.critic, frozen(ours["critic"]))
        L.target_critic = L.target_critic.replace(params=frozen(ours["critic_target"]))
        L.actor = fresh(L.actor, frozen(ours["actor"]))
        L.hierarchical_actor = fresh(L.hierarchical_actor, frozen(ours["balance"]))
        L.hierarchical_temp = fresh(L.hierarchical_temp, frozen(ours["temperature"]))
        assert to_numpy(L.actor.params).keys() == ours["actor"].keys()

    # ------------------------------------------------------------------------------------ draws
    def draws(self, step: int) -> dict[str, Any]:
        import jax
        import jax.numpy as jnp

        rng = np.random.default_rng(step)
        obs = rng.normal(size=(BATCH, OBS_DIM))
        key_rng = jax.random.PRNGKey(10_000 + step)
        key1, rest = jax.random.split(key_rng)  # _family_update_jit: key, rng = jax.random.split(rng), twice
        key2, _ = jax.random.split(rest)
        std = self.tfd.MultivariateNormalDiag
        eps_u = std(jnp.zeros((BATCH, 1)), jnp.ones((1,))).sample(seed=key1)
        eps_a = std(jnp.zeros((BATCH, ACT_DIM)), jnp.ones((ACT_DIM,))).sample(seed=key1)
        if self.phase == "offline":
            beta = jax.random.uniform(key=key2, shape=(BATCH, 1), minval=BETA_RANGE[0], maxval=BETA_RANGE[1])
            eps_beta = None
        else:
            beta, eps_beta = None, std(jnp.zeros((BATCH, 1)), jnp.ones((1,))).sample(seed=key2)
        return {"obs": obs, "action": rng.uniform(-0.95, 0.95, (BATCH, ACT_DIM)), "reward": rng.random(BATCH),
                "next_obs": obs + 0.1 * rng.normal(size=obs.shape),
                "terminated": (rng.random(BATCH) < 0.05).astype(np.float64), "rng": key_rng, "step": step,
                "eps_u": np.asarray(eps_u), "eps_a": np.asarray(eps_a),
                "beta": None if beta is None else np.asarray(beta)[:, 0],
                "eps_beta": None if eps_beta is None else np.asarray(eps_beta)}

    # ------------------------------------------------------------------------------------ compare
    def compare(self, draws: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        import jax
        import torch

        from rlkit.replay.batch import Batch

        t = {k: torch.tensor(draws[k]) for k in ("obs", "action", "reward", "next_obs", "terminated")}  # copies
        batch = Batch(obs=t["obs"], action=t["action"], reward=t["reward"], next_obs=t["next_obs"],
                      terminated=t["terminated"], indices=torch.arange(BATCH), weights=torch.ones(BATCH))
        # rlkit's draws in its order: (online: the actor's coefficients first), the balance model's u, the action
        queue = ([draws["eps_beta"]] if self.phase == "online" else []) + [draws["eps_u"], draws["eps_a"]]
        queue = [torch.tensor(q) for q in queue]
        impl = self.algo.impl
        original_randn_like = torch.randn_like

        def injected(like, *args, **kwargs):
            eps = queue.pop(0)
            assert eps.shape == like.shape, (eps.shape, like.shape)
            return eps.to(like.dtype)

        if draws["beta"] is not None:
            impl.family.uniform = lambda obs: torch.tensor(draws["beta"])
        torch.randn_like = injected
        try:
            with default_dtype(torch.float64):
                metrics = self.algo.update(batch).metrics
        finally:
            torch.randn_like = original_randn_like
        assert not queue, "rlkit drew fewer random numbers than the reference"
        ours_grads = self.rlkit_params(grad=True)

        # the reference, unjitted so that each network's gradient can be recorded
        grads: list[Any] = []
        Model = self.Model
        original_apply_gradient = Model.apply_gradient

        def recording(model, loss_fn, info=None):
            grads.append(jax.grad(loss_fn, has_aux=True)(model.params)[0])
            return original_apply_gradient(model, loss_fn, info)

        L = self.learner
        L.rng = draws["rng"]
        ref_batch = self.Batch(observations=draws["obs"], actions=draws["action"],
                                      rewards=draws["reward"] - 1.0,  # family_train_finetune.py, AntMaze
                                      masks=1.0 - draws["terminated"], next_observations=draws["next_obs"])
        offline = self.phase == "offline"
        if draws["step"] not in GRAD_STEPS:  # jitted: only the reported updates need the (slow) recording
            info = L.update(ref_batch, random_hierarchical_coefficients=offline)
            return {}
        Model.apply_gradient = recording
        try:
            with jax.disable_jit():
                info = L.update(ref_batch, random_hierarchical_coefficients=offline)
        finally:
            Model.apply_gradient = original_apply_gradient
        value_g, balance_g, temp_g, actor_g, critic_g = (to_numpy(g) for g in grads)
        p = self.phase
        out = {
            f"{p}.value_loss": (metrics["train/value_loss"], info["value_loss"]),
            f"{p}.balance_loss": (metrics["train/balance_loss"], info["hierarchical_loss"]),
            f"{p}.balance_entropy": (metrics["train/balance_entropy"], info["hierarchical_entropy"]),
            f"{p}.actor_loss": (metrics["train/actor_loss"], info["actor_loss"]),
            f"{p}.critic_loss": (metrics["train/critic_loss"], info["critic_loss"]),
            f"{p}.grads.value": (ours_grads["value"], value_g),
            f"{p}.grads.balance": (ours_grads["balance"], balance_g),
            f"{p}.grads.temperature": (ours_grads["temperature"], temp_g),
            f"{p}.grads.actor": (ours_grads["actor"], actor_g),
            f"{p}.grads.critic": (ours_grads["critic"], critic_g),
        }
        ours, theirs = self.rlkit_params(), self.ref_params()
        for name in theirs:
            out[f"{p}.params.{name}"] = (ours[name], theirs[name])
        return out


def to_numpy(tree) -> dict[str, Any]:
    """A (Frozen)dict of JAX arrays -> nested dicts of float64 numpy arrays."""
    if hasattr(tree, "items"):
        return {k: to_numpy(v) for k, v in tree.items()}
    return np.array(tree, dtype=np.float64)


def jax_tree(tree, jnp) -> dict[str, Any]:
    if isinstance(tree, dict):
        return {k: jax_tree(v, jnp) for k, v in tree.items()}
    return jnp.array(np.array(tree, dtype=np.float64))  # copies (jnp.asarray may share numpy's memory)


def linears(module) -> list[Any]:
    from torch import nn

    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def ensemble_layers(net) -> list[Any]:
    from rlkit.nets.mlp import EnsembleLinear

    return [m for m in net.modules() if isinstance(m, EnsembleLinear)]
