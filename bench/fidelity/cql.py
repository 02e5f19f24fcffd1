"""CQL against the authors' code (aviralkumar2907/CQL: ``d4rl/rlkit/torch/sac/cql.py``, ``CQLTrainer``; its
``TanhGaussianPolicy`` and ``FlattenMlp`` networks), update for update, with the README's MuJoCo settings.

``--ref cql=PATH`` is the clone's root; the trainer is imported from ``PATH/d4rl``, whose package is named
``rlkit`` like ours: rlkit's side is built first, then the reference is imported with our ``rlkit.*`` out of
``sys.modules`` (restored afterwards; module objects stay alive).  Only its logging/plotting imports are stubbed.

Two cases, both ``method=cql``: the README's MuJoCo settings (``algo=cql_authors``) and its AntMaze script
(``algo=cql_authors env=antmaze-*``: Lagrange with threshold 5 and min-Q weight 5, rewards ``4 (r - 0.5)``,
which the script applies to its dataset and the adapter to the reference's batch).

rlkit runs ``algo=cql_authors`` (the released code's mechanics and settings): the reference's
``policy_eval_start`` is ``bc_steps + 1`` (its BC warm-up runs while ``_current_epoch < policy_eval_start``,
counted from 1); the check uses 25 so that both the BC phase and the Q phase fall inside 50 updates.

Two things of the reference's environment are reproduced, not changed:

* its optimizers step ``p.data`` (PyTorch < 1.5, which its environment pins), so the policy loss recorded
  before the Q step back-propagates after it through the stepped weights; PyTorch >= 1.5 refuses that
  backward, so the reference gets :class:`LegacyAdam` (Adam on ``.data`` aliases, the old behaviour);
* every random draw comes from a queue: the reference's ``TanhNormal.rsample`` standard normals and its
  ``torch.FloatTensor(...).uniform_(-1, 1)`` random actions; rlkit's ``randn_like``/``uniform_`` likewise.
  The reference lays ``n`` samples per state out state-major (``(B n, |A|)``), rlkit sample-major
  (``(n, B, |A|)``); the same draws are fed in each layout.  The reference's third policy sample
  (``new_curr_actions``, never used) gets its own draw.

Quantities: the TD target (hooks on the target critics), each head's TD term (its ``qf_criterion``) and
conservative gap ``T logsumexp(·/T) - Q`` (its ``torch.logsumexp``), the policy loss (from its recorded
``log π``, ``Q(s, ã)``, BC log-likelihood and the stepped ``α``), the temperature loss, the gradients at each
optimizer step, and every parameter after the update (actor, both critics, targets, ``log α``); with Lagrange
also ``α'``, its gradient and ``log α'``.
"""

from __future__ import annotations

import types
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from bench.fidelity.core import Adapter, Case, default_dtype, reference_imports, rlkit_algorithm
from bench.fidelity.offline_data import (
    ACT_DIM,
    BATCH_SIZE,
    OBS_DIM,
    GradTap,
    batch_indices,
    copy_layers,
    layer_dict,
    member_layers,
    mlp_layers,
    pairs,
    rlkit_batch,
    synthetic_d4rl,
)

#: the reference's logging/plotting/timing imports (none computes anything an update uses)
STUBS = ("gtimer", "matplotlib", "matplotlib.pyplot", "dateutil", "dateutil.tz", "tensorboardX")


class LegacyAdam(torch.optim.Adam):
    """Adam stepping ``.data`` aliases of the parameters, as PyTorch < 1.5's optimizers did (``p.data.add_``).

    An alias shares the parameter's storage but not its version counter, so a graph recorded before the step
    still back-propagates after it (through the stepped values), which the reference's update relies on."""

    def __init__(self, params: Any, **kwargs: Any) -> None:
        self._owners = list(params)
        self._aliases = [p.data for p in self._owners]
        super().__init__(self._aliases, **kwargs)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self._owners:
            p.grad = None

    def step(self, closure: Any = None) -> Any:
        for p, alias in zip(self._owners, self._aliases, strict=True):
            alias.grad = p.grad
        return super().step(closure)


class DrawQueue:
    """Random draws handed out in order; each request must match the next draw's shape."""

    def __init__(self) -> None:
        self.items: deque[torch.Tensor] = deque()

    def take(self, shape: tuple[int, ...]) -> torch.Tensor:
        if not self.items:
            raise RuntimeError(f"a draw of shape {shape} was requested but none is left")
        draw = self.items.popleft()
        if tuple(draw.shape) != tuple(shape):
            raise RuntimeError(f"the next draw has shape {tuple(draw.shape)}, the code asked for {shape}")
        return draw.clone()


class _PresetUniform(torch.Tensor):
    """A tensor whose ``uniform_`` keeps its (injected) values."""

    def uniform_(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.as_subclass(torch.Tensor)


class _TorchProxy(types.ModuleType):
    """``torch`` for one module, with its random draws and chosen calls redirected (everything else is torch)."""

    def __init__(self, **overrides: Any) -> None:
        super().__init__("torch")
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


class CQLAdapter(Adapter):
    name = "cql"
    reference = "aviralkumar2907/CQL"
    #: the reference's BC warm-up switch, and rlkit's bc_steps that should match it
    POLICY_EVAL_START, BC_STEPS = 25, 24

    def cases(self) -> list[Case]:
        bc = f"algo.bc_steps={self.BC_STEPS}"
        return [
            Case("cql", ("algo=cql_authors", bc), switch="algo=cql_authors",
                 note="algo=cql (CORL's settings) differs by design; bc_steps=24 <-> policy_eval_start=25"),
            # examples/cql_antmaze_new.py with the README's flags: Lagrange (threshold 5, min-Q weight 5) and
            # rewards (r - 0.5) * 4, which its load_hdf5 applies to the dataset before training
            Case("cql", ("algo=cql_authors", "env=antmaze-umaze", bc), switch="algo=cql_authors env=antmaze-*",
                 options={"lagrange_thresh": 5.0, "reward_center": 0.5, "reward_scale": 4.0}),
        ]

    # ------------------------------------------------------------------ build
    def build(self, case: Case) -> None:
        from gymnasium import spaces

        self.case = case
        self.data = synthetic_d4rl()
        obs_space = spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        act_space = spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
        with default_dtype(torch.float64):
            self.algo = rlkit_algorithm(case.overrides, obs_space, act_space)
        a = self.algo
        root = self.path / "d4rl"
        with reference_imports(root, stubs=STUBS, isolate=["rlkit"]):
            import rlkit.torch.distributions as ref_dist  # noqa: PLC0415  (the reference's rlkit)
            import rlkit.torch.pytorch_util as ptu  # noqa: PLC0415
            import rlkit.torch.sac.cql as ref_cql  # noqa: PLC0415
            from rlkit.torch.networks import FlattenMlp  # noqa: PLC0415
            from rlkit.torch.sac.policies import TanhGaussianPolicy  # noqa: PLC0415
        ptu.set_gpu_mode(False)
        self.normals, self.uniforms = DrawQueue(), DrawQueue()
        self.rl_normals, self.rl_uniforms = DrawQueue(), DrawQueue()
        normals = self.normals

        class InjectedNormal(torch.distributions.Normal):
            def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
                return normals.take(tuple(self._extended_shape(torch.Size(sample_shape))))

        ref_dist.Normal = InjectedNormal
        self.recorded: dict[str, list[torch.Tensor]] = {"logsumexp": [], "mse": []}
        ref_cql.torch = _TorchProxy(FloatTensor=self._ref_float_tensor, logsumexp=self._ref_logsumexp)

        hidden = [w.shape[0] for w, _ in mlp_layers(a.actor.trunk)[:-1]]
        c_hidden = [layer[0].shape[0] for layer in member_layers(a.critic, 0)[:-1]]
        with default_dtype(torch.float64):
            policy = TanhGaussianPolicy(hidden_sizes=hidden, obs_dim=OBS_DIM, action_dim=ACT_DIM)
            qfs = [FlattenMlp(input_size=OBS_DIM + ACT_DIM, output_size=1, hidden_sizes=c_hidden)
                   for _ in range(4)]
            env = types.SimpleNamespace(action_space=types.SimpleNamespace(shape=(ACT_DIM,)))
            self.ref = ref_cql.CQLTrainer(
                env, policy, *qfs, discount=a.gamma, reward_scale=1.0,
                policy_lr=a.actor_opt.param_groups[0]["lr"], qf_lr=a.critic_opt.param_groups[0]["lr"],
                optimizer_class=LegacyAdam, soft_target_tau=a.tau, use_automatic_entropy_tuning=a.autotune,
                policy_eval_start=self.POLICY_EVAL_START, num_qs=2, min_q_version=3 if a.importance_sample else 2,
                temp=a.cql_temp, min_q_weight=a.cql_alpha, max_q_backup=a.max_target_backup,
                deterministic_backup=not a.backup_entropy, num_random=a.n_actions, with_lagrange=a.lagrange,
                lagrange_thresh=case.options.get("lagrange_thresh", 0.0))
        self.ref.qf_criterion = self._ref_mse
        self._hooks()

    def _ref_float_tensor(self, *shape: int) -> torch.Tensor:
        return self.uniforms.take(tuple(shape)).as_subclass(_PresetUniform)

    def _ref_logsumexp(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = torch.logsumexp(x, *args, **kwargs)
        self.recorded["logsumexp"].append(out.detach().clone())
        return out

    def _ref_mse(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out = torch.nn.functional.mse_loss(pred, target)
        self.recorded["mse"].append(out.detach().clone())
        return out

    def _hooks(self) -> None:
        r = self.ref
        for name in ("qf1", "qf2", "target_qf1", "target_qf2", "policy"):
            self.recorded[name] = []
            getattr(r, name).register_forward_hook(
                lambda m, i, o, name=name: self.recorded[name].append(
                    tuple(x.detach().clone() if isinstance(x, torch.Tensor) else x for x in o)
                    if isinstance(o, tuple) else o.detach().clone()))
        log_prob = r.policy.log_prob

        def recording_log_prob(obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
            out = log_prob(obs, actions)
            self.recorded.setdefault("bc_log_prob", []).append(out.detach().clone())
            return out
        r.policy.log_prob = recording_log_prob
        critic_loss = self.algo.critic_loss

        def recording_critic_loss(*args: Any, **kwargs: Any) -> Any:
            loss, parts = critic_loss(*args, **kwargs)
            self.rl_parts = {k: v.detach().clone() for k, v in parts.items()}
            return loss, parts
        self.algo.critic_loss = recording_critic_loss
        a = self.algo
        self.taps = (GradTap(), GradTap())
        self.taps[0].watch("critic", a.critic_opt, dict(a.critic.named_parameters()))
        self.taps[0].watch("actor", a.actor_opt, dict(a.actor.named_parameters()))
        self.taps[0].watch("log_alpha", a.alpha_opt, {"log_alpha": a.log_alpha})
        for k in (1, 2):
            self.taps[1].watch(f"critic{k - 1}", getattr(r, f"qf{k}_optimizer"),
                               dict(getattr(r, f"qf{k}").named_parameters()))
        self.taps[1].watch("actor", r.policy_optimizer, dict(r.policy.named_parameters()))
        self.taps[1].watch("log_alpha", r.alpha_optimizer, {"log_alpha": r.log_alpha})
        if a.lagrange:
            self.taps[0].watch("log_alpha_prime", a.alpha_prime_opt, {"log_alpha_prime": a.log_alpha_prime})
            self.taps[1].watch("log_alpha_prime", r.alpha_prime_optimizer, {"log_alpha_prime": r.log_alpha_prime})

    # ------------------------------------------------------------------ transplant
    def _ref_policy_layers(self) -> list[torch.nn.Linear]:
        p = self.ref.policy
        return [*p.fcs, p.last_fc, p.last_fc_log_std]

    def _rlkit_policy_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        *hidden, (w, b) = mlp_layers(self.algo.actor.trunk)
        return [*hidden, (w[:ACT_DIM], b[:ACT_DIM]), (w[ACT_DIM:], b[ACT_DIM:])]

    def _ref_q_layers(self, name: str) -> list[torch.nn.Linear]:
        q = getattr(self.ref, name)
        return [*q.fcs, q.last_fc]

    def transplant(self) -> None:
        a = self.algo
        copy_layers(self._rlkit_policy_layers(), self._ref_policy_layers())
        for k in range(2):
            copy_layers(member_layers(a.critic, k), self._ref_q_layers(f"qf{k + 1}"))
            copy_layers(member_layers(a.critic_target, k), self._ref_q_layers(f"target_qf{k + 1}"))
        with torch.no_grad():
            self.ref.log_alpha.copy_(a.log_alpha.reshape(1))
            if a.lagrange:
                self.ref.log_alpha_prime.copy_(a.log_alpha_prime.reshape(1))

    # ------------------------------------------------------------------ draws
    def draws(self, step: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(step)
        b, n, d = BATCH_SIZE, self.algo.n_actions, ACT_DIM

        def normal(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=g, dtype=torch.float64)
        return {"idx": batch_indices(step), "eps_pi": normal(b, d), "eps_next": normal(b, d),
                "eps_unused": normal(b, d), "unif": torch.rand(n, b, d, generator=g, dtype=torch.float64) * 2 - 1,
                "eps_cur": normal(n, b, d), "eps_next_pi": normal(n, b, d)}

    def _queue(self, draws: Mapping[str, Any]) -> None:
        def state_major(x: torch.Tensor) -> torch.Tensor:  # (n, B, |A|) -> (B n, |A|), row b n + j
            return x.transpose(0, 1).reshape(-1, x.shape[-1])
        self.normals.items.extend([draws["eps_pi"], draws["eps_next"], draws["eps_unused"],
                                   state_major(draws["eps_cur"]), state_major(draws["eps_next_pi"])])
        self.uniforms.items.append(state_major(draws["unif"]))
        self.rl_normals.items.extend([draws["eps_pi"], draws["eps_next"],
                                      torch.cat([draws["eps_cur"], draws["eps_next_pi"]], dim=1)])
        self.rl_uniforms.items.append(draws["unif"])

    # ------------------------------------------------------------------ compare
    def _rlkit_update(self, batch: Any) -> Any:
        """rlkit's update with its ``randn_like``/``randn``/``uniform_`` draws taken from the queue."""
        import rlkit.algorithms.offline.cql as rl_cql
        import rlkit.nets.distributions as rl_dist

        normals, uniforms = self.rl_normals, self.rl_uniforms

        def empty(*shape: Any, **kwargs: Any) -> torch.Tensor:
            return uniforms.take(tuple(shape)).as_subclass(_PresetUniform)
        def randn(*shape: Any, **kwargs: Any) -> torch.Tensor:  # CQL.critic_noise's torch.randn(n, b, a, device=)
            if len(shape) == 1 and isinstance(shape[0], tuple | list | torch.Size):
                shape = tuple(shape[0])
            return normals.take(tuple(shape))
        saved = rl_dist.torch, rl_cql.torch
        rl_dist.torch = _TorchProxy(randn_like=lambda x: normals.take(tuple(x.shape)))
        rl_cql.torch = _TorchProxy(empty=empty, randn=randn)
        try:
            return self.algo.update(batch)
        finally:
            rl_dist.torch, rl_cql.torch = saved

    def compare(self, draws: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        idx = draws["idx"]
        for v in self.recorded.values():
            v.clear()
        self._queue(draws)
        r, a = self.ref, self.algo
        log_alpha_before = r.log_alpha.detach().clone()
        d = {k: torch.as_tensor(v[idx].astype(np.float64)) for k, v in self.data.items()}
        options = self.case.options
        if "reward_scale" in options:  # the reference's script transforms its dataset's rewards
            d["rewards"] = (d["rewards"] - options["reward_center"]) * options["reward_scale"]
        alpha_prime_before = r.log_alpha_prime.detach().exp().clamp(0.0, 1e6) if a.lagrange else None
        ref_batch = {"observations": d["observations"], "actions": d["actions"],
                     "next_observations": d["next_observations"], "rewards": d["rewards"][:, None],
                     "terminals": d["terminals"][:, None]}
        with default_dtype(torch.float64):
            metrics = self._rlkit_update(rlkit_batch(self.data, idx)).metrics
            r.train_from_torch(ref_batch)
        for q in (self.normals, self.uniforms, self.rl_normals, self.rl_uniforms):
            if q.items:
                raise RuntimeError(f"{len(q.items)} injected draw(s) left unused: the draw sites changed")
        ours_g, theirs_g = self.taps[0].take(), self.taps[1].take()
        rec, parts = self.recorded, self.rl_parts
        out: dict[str, tuple[Any, Any]] = {}

        # policy evaluation: target, per-head TD terms and conservative gaps
        target_next = torch.minimum(rec["target_qf1"][0], rec["target_qf2"][0])[:, 0]
        target = d["rewards"] + (1.0 - d["terminals"]) * a.gamma * target_next
        out["target"] = (parts["target"], target)
        q_pred = torch.stack([rec["qf1"][1][:, 0], rec["qf2"][1][:, 0]])
        out["q"] = (parts["q"], q_pred)
        out["td_loss"] = (parts["td_loss"], rec["mse"][0] + rec["mse"][1])
        lse = torch.stack([x.mean() for x in rec["logsumexp"]]) * a.cql_temp
        out["cql_gap"] = (parts["cql_gap"], lse - q_pred.mean(1))
        out["critic_grad"] = (self._rlkit_critic(ours_g["critic"]),
                              {k: layer_dict(pairs(theirs_g[k])) for k in ("critic0", "critic1")})

        # policy improvement: log π of the reparameterised sample, objective, new α, loss
        log_pi = rec["policy"][0][3][:, 0]
        alpha = r.log_alpha.detach().exp()[0]
        if rec.get("bc_log_prob"):  # the reference's BC warm-up phase
            objective = rec["bc_log_prob"][0]
        else:
            objective = torch.minimum(rec["qf1"][0], rec["qf2"][0])[:, 0]
        out["entropy"] = (metrics["train/entropy"], -log_pi.mean())
        out["alpha"] = (metrics["train/alpha"], alpha)
        out["alpha_loss"] = (metrics["train/alpha_loss"],
                             -(log_alpha_before[0] * (log_pi + r.target_entropy)).mean())
        out["actor_loss"] = (metrics["train/actor_loss"], (alpha * log_pi - objective).mean())
        out["actor_grad"] = (self._split_actor(layer_dict(pairs(self._actor_grads(ours_g["actor"])))),
                             layer_dict(pairs(self._ref_actor_grads(theirs_g["actor"]))))
        out["alpha_grad"] = (ours_g["log_alpha"]["log_alpha"], theirs_g["log_alpha"]["log_alpha"][0])
        if a.lagrange:
            out["alpha_prime"] = (parts["alpha_prime"], alpha_prime_before[0])
            out["alpha_prime_grad"] = (ours_g["log_alpha_prime"]["log_alpha_prime"],
                                       theirs_g["log_alpha_prime"]["log_alpha_prime"][0])
        out["params"] = (self._rlkit_params(), self._ref_params())
        return out

    # ------------------------------------------------------------------ layouts
    def _rlkit_critic(self, grads: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {f"critic{k}": layer_dict((w[k].T, b[k, 0]) for w, b in pairs(grads)) for k in range(2)}

    def _actor_grads(self, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {k: v for k, v in grads.items() if k.startswith("trunk.")}
        if any(k.startswith("log_std_") for k in grads):
            raise RuntimeError("rlkit's actor has the learnable log-std scale/offset; run algo=cql_authors")
        return out

    def _split_actor(self, layers: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """rlkit's last trunk layer ``[mean; log σ]`` as the reference's two heads."""
        last = max(int(k.split(".")[0]) for k in layers)
        w, b = layers.pop(f"{last}.w"), layers.pop(f"{last}.b")
        layers.update({f"{last}.w": w[:ACT_DIM], f"{last}.b": b[:ACT_DIM],
                       f"{last + 1}.w": w[ACT_DIM:], f"{last + 1}.b": b[ACT_DIM:]})
        return layers

    def _ref_actor_grads(self, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        p = self.ref.policy
        names = [f"fc{i}" for i in range(len(p.fcs))] + ["last_fc", "last_fc_log_std"]
        return {f"{n}.{t}": grads[f"{n}.{t}"] for n in names for t in ("weight", "bias")}

    def _rlkit_params(self) -> dict[str, Any]:
        a = self.algo
        extra = {"log_alpha_prime": a.log_alpha_prime.reshape(1)} if a.lagrange else {}
        return {"actor": layer_dict(self._rlkit_policy_layers()), "log_alpha": a.log_alpha.reshape(1), **extra,
                **{f"critic{k}": layer_dict(member_layers(a.critic, k)) for k in range(2)},
                **{f"critic_target{k}": layer_dict(member_layers(a.critic_target, k)) for k in range(2)}}

    def _ref_params(self) -> dict[str, Any]:
        r = self.ref

        def lin(layers: list[torch.nn.Linear]) -> dict[str, torch.Tensor]:
            return layer_dict((m.weight, m.bias) for m in layers)
        extra = {"log_alpha_prime": r.log_alpha_prime} if self.algo.lagrange else {}
        return {"actor": lin(self._ref_policy_layers()), "log_alpha": r.log_alpha, **extra,
                **{f"critic{k}": lin(self._ref_q_layers(f"qf{k + 1}")) for k in range(2)},
                **{f"critic_target{k}": lin(self._ref_q_layers(f"target_qf{k + 1}")) for k in range(2)}}
