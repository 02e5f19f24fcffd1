"""SPR (``mila-iqia/spr``, with its helper library ``astooke/rlpyt``) against rlkit's ``algo=spr`` and the SPR base
of ``algo=vcr``, update for update.

The reference runs as its ``scripts/run.py`` builds it (``SPRAgent`` + ``SPRCatDqnModel`` + ``SPRCategoricalDQN``
with the script's defaults and the README's ``--momentum-tau 1``); only its replay buffer is replaced by one that
hands over the shared batch and records the priorities, and ``optimize_agent`` runs the whole update (loss,
backward, the two gradient clips, Adam, priorities, target copy).  Imports stubbed: ``wandb`` (logging) and
``gym`` (``src/__init__.py`` registers an env id).  ``kornia`` (the reference's augmentation modules) must be
installed (``pip install -e .[fidelity]``); the augmentations themselves are draws, made here once and fed to
both sides.

Draws of update ``u`` (fed to both sides):

* the batch: ``o_{t..t+K+n}`` (uint8), actions, n-step returns, ``done`` for the window and ``done_n``, PER
  importance weights (rlkit's ``window_valid`` is the reference's ``1 - sign(cumsum(done))``);
* the augmented images of every call site: online ``o_t``, the SPR targets' window, the target net's ``o_{t+n}``
  and the online (double-DQN) ``o_{t+n}``: each its own shift + intensity draw, as the reference augments
  each call separately;
* the factorised noise of the four noisy layers: the online head's for update ``u``; the target head's is the
  online noise of update ``u - 1`` (the reference's target net is a ``load_state_dict`` copy of the online
  model, noise buffers included, made after each update).

Compared per update (``u1/``, ``u50/``): the online log-probabilities ``log p(o_t)``, the double-DQN action
``a*``, the C51 target (clamped at 1e-6 as the priority uses it), the per-row RL loss, the priorities, each
per-k SPR loss ``l_k`` (k = 0..K, masked), the total loss, the clipped gradients and the updated parameters of
encoder, Q head, transition model and predictor.  rlkit runs with ``spr_target_update=before_step`` (the code
updates its momentum encoder inside the loss, so its SPR targets lag by one update; the paper's Algorithm 1,
rlkit's default, updates after the optimiser step).  The ``vcr`` case runs ``algo=vcr`` with ``vcr_weight=0``
and ``keep_spr_loss=true`` against the same reference, and adds ``vs_spr/`` rows: the same update of rlkit's
own ``algo=spr`` from the same state, which must agree bit for bit.

Precision: float64 on both sides, except the SPR loss, which both compute in float32 (the reference's
``src/models.py`` ``spr_loss`` casts the projections with ``.float()``; rlkit's does the same, so that the
two agree to float64 rounding through 50 updates instead of drifting apart by float32 noise that Adam amplifies).
Tolerance 1e-5 relative: the PER leaves differ by rlkit's PER ``eps`` (1e-6 added to each priority; the
reference clamps its KL at 1e-6 instead), about 1e-6 relative; every other row agrees to ~1e-14.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import types
from collections.abc import Iterator, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from bench.fidelity.core import Adapter, Case, default_dtype, reference_imports, rlkit_algorithm

B, K, NSTEP, ACTIONS, GAMMA = 4, 5, 10, 4, 0.99
OBS = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
STUBS = ("wandb", "gym", "gym.envs", "gym.envs.registration")
#: tolerance: rlkit's PER eps (1e-6 on each priority) moves the PER leaves by ~1e-6 relative
TOLERANCE = 1e-5
NOTE = "float64; SPR loss float32 on both sides (src/models.py spr_loss); PER leaves differ by rlkit's PER eps 1e-6"
SWITCH = "algo.spr_target_update=before_step"

#: ``scripts/run.py`` defaults -> ``src/utils.py`` ``set_config`` (model), README: ``--momentum-tau 1``
MODEL_KWARGS = dict(dueling=True, jumps=K, spr=1, augmentation=["shift", "intensity"], target_augmentation=1,
                    eval_augmentation=0, dynamics_blocks=0, norm_type="bn", noisy_nets=1, aug_prob=1.0,
                    classifier="q_l1", imagesize=84, time_offset=0, local_spr=0, global_spr=1,
                    momentum_encoder=1, shared_encoder=0, distributional=1, dqn_hidden_size=256, momentum_tau=1.0,
                    renormalize=1, q_l1_type=["value", "advantage"], dropout=0.0, final_classifier="linear",
                    model_rl=0.0, noisy_nets_std=0.5, residual_tm=0)
#: rlpyt's ``configs["ernbw"]["algo"]`` updated by ``set_config`` and ``scripts/run.py`` defaults
ALGO_KWARGS = dict(discount=GAMMA, batch_size=B, min_steps_learn=0, delta_clip=1.0, replay_size=1000, replay_ratio=64,
                   target_update_tau=1.0, target_update_interval=1, n_step_return=NSTEP, learning_rate=1e-4,
                   clip_grad_norm=10.0, eps_steps=2001, double_dqn=True, prioritized_replay=True, pri_alpha=0.5,
                   pri_beta_steps=100000, model_rl_weight=0.0, reward_loss_weight=0.0, model_spr_weight=5.0,
                   t0_spr_loss_weight=0.0, time_offset=0, distributional=1)


class _Queue:
    """Hands out pre-drawn augmented images in call order, checking each call's shape."""

    def __init__(self, items: list[torch.Tensor]) -> None:
        self.items = list(items)

    def __call__(self, images: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.items.pop(0)
        if tuple(out.shape) != tuple(images.shape):
            raise RuntimeError(f"augmentation call of shape {tuple(images.shape)} got a draw of shape "
                               f"{tuple(out.shape)}: the call order changed")
        return out


class _Replay:
    """Stands in for the reference's prioritized sequence buffer: returns the shared batch, records priorities."""

    def __init__(self) -> None:
        self.batch: Any = None
        self.priorities: torch.Tensor | None = None

    def sample_batch(self, batch_size: int) -> Any:
        return self.batch

    def update_batch_priorities(self, priorities: torch.Tensor) -> None:
        self.priorities = priorities

    def set_beta(self, beta: float) -> None:
        pass


@contextlib.contextmanager
def capture(codes: Mapping[str, types.CodeType]) -> Iterator[dict[str, list[tuple[dict, Any]]]]:
    """Record ``(locals, return value)`` of every return from the functions whose code objects are given."""
    wanted = {code: name for name, code in codes.items()}
    seen: dict[str, list[tuple[dict, Any]]] = {name: [] for name in codes}

    def profile(frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "return" and frame.f_code in wanted:
            seen[wanted[frame.f_code]].append((dict(frame.f_locals), arg))

    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(None)


def _noise_of(head: torch.nn.Module, generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Factorised noise ``(f(e_in), f(e_out))`` for rlkit's four noisy layers (reference's ``linears`` order)."""
    out = []
    for layer in (head.advantage_hidden, head.advantage_out, head.value_hidden, head.value_out):
        e_in, e_out = torch.randn(layer.in_features, generator=generator), torch.randn(layer.out_features,
                                                                                     generator=generator)
        out.append((e_in.sign() * e_in.abs().sqrt(), e_out.sign() * e_out.abs().sqrt()))
    return [(a.double(), b.double()) for a, b in out]


def _set_ours(head: torch.nn.Module, noise: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for layer, (e_in, e_out) in zip((head.advantage_hidden, head.advantage_out, head.value_hidden, head.value_out),
                                    noise):
        layer.eps_in.copy_(e_in)
        layer.eps_out.copy_(e_out)


def _set_ref(head: torch.nn.Module, noise: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    with torch.no_grad():
        for layer, (e_in, e_out) in zip(head.linears, noise):
            layer.weight_epsilon.copy_(torch.outer(e_out, e_in))
            layer.bias_epsilon.copy_(e_out)


def _param_map(ours: Any, model: torch.nn.Module) -> dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Group -> name -> (rlkit parameter, reference parameter)."""
    q, head = ours.q_net, ours.q_net.head
    groups: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {
        "encoder": {}, "head": {}, "transition": {}, "predictor": {}}
    for i in (0, 2, 4):
        for p in ("weight", "bias"):
            groups["encoder"][f"conv{i // 2}.{p}"] = (getattr(q.encoder.net[i], p), getattr(model.conv.conv[i], p))
    for name, layer, ref in zip(("advantage_hidden", "advantage_out", "value_hidden", "value_out"),
                                (head.advantage_hidden, head.advantage_out, head.value_hidden, head.value_out),
                                model.head.linears):
        for p in ("weight_mu", "weight_sigma", "bias_mu", "bias_sigma"):
            groups["head"][f"{name}.{p}"] = (getattr(layer, p), getattr(ref, p))
    net, dyn = ours.transition.net, model.dynamics_model.network
    for name, mine, ref in (("conv0", net[0], dyn[0].net[0]), ("bn", net[2], dyn[2]), ("conv1", net[3], dyn[3].net[0])):
        for p in ("weight", "bias"):
            groups["transition"][f"{name}.{p}"] = (getattr(mine, p), getattr(ref, p))
    for p in ("weight", "bias"):
        groups["predictor"][p] = (getattr(ours.predictor, p), getattr(model.global_final_classifier[0], p))
    return groups


class SPRAdapter(Adapter):
    """``--ref spr=PATH --ref rlpyt=PATH``: JSON methods ``spr`` and ``vcr`` (module docstring)."""

    name = "spr"
    reference = "mila-iqia/spr"
    needs = ("rlpyt",)

    def cases(self) -> list[Case]:
        spr = ("algo=spr", f"algo.batch_size={B}", f"algo.prediction_depth={K}", f"algo.nstep={NSTEP}",
               "algo.spr_target_update=before_step")
        vcr = ("algo=vcr", "algo.vcr_weight=0.0", "algo.keep_spr_loss=true", f"algo.discrete.batch_size={B}",
               f"algo.discrete.prediction_depth={K}", f"algo.discrete.nstep={NSTEP}",
               "algo.discrete.spr_target_update=before_step")
        return [Case("spr", spr, SWITCH, TOLERANCE, NOTE),
                Case("vcr", vcr, "algo.vcr_weight=0 algo.keep_spr_loss=true algo.discrete.spr_target_update="
                     "before_step", TOLERANCE, NOTE, options={"spr_overrides": spr})]

    # ------------------------------------------------------------------ build
    def _modules(self) -> tuple[Any, Any, Any, Any]:
        with (reference_imports(self.refs["rlpyt"], isolate=["rlpyt"]),
              reference_imports(self.path, stubs=STUBS, isolate=["src"])):
            return (importlib.import_module("src.models"), importlib.import_module("src.algos"),
                    importlib.import_module("src.agent"), importlib.import_module("src.rlpyt_buffer"))

    def build(self, case: Case) -> None:
        models, algos, agents, self.buffers = self._modules()
        torch.manual_seed(0)  # rlkit's initial weights (then copied into the reference)
        with default_dtype(torch.float64), contextlib.redirect_stdout(io.StringIO()):
            self.ours = rlkit_algorithm(case.overrides, OBS, gym.spaces.Discrete(ACTIONS))
            self.ours.priority_feedback = True
            self.twin = None
            if "spr_overrides" in case.options:  # rlkit's own SPR, fed the same draws (vs_spr rows)
                self.twin = rlkit_algorithm(case.options["spr_overrides"], OBS, gym.spaces.Discrete(ACTIONS))
                self.twin.priority_feedback = True
            spaces = types.SimpleNamespace(observation=types.SimpleNamespace(shape=(4, 1, 84, 84)),
                                           action=types.SimpleNamespace(n=ACTIONS))
            agent = agents.SPRAgent(ModelCls=models.SPRCatDqnModel, model_kwargs=dict(MODEL_KWARGS), eps_init=1.0,
                                    eps_final=0.0, eps_eval=0.001)
            agent.initialize(spaces)
            algo = algos.SPRCategoricalDQN(optim_kwargs={"eps": 1.5e-4}, jumps=K, **ALGO_KWARGS)
        algo.agent = agent
        agent.give_V_min_max(algo.V_min, algo.V_max)
        algo.sampler_bs = 1
        algo.updates_per_optimize, algo.min_itr_learn = 1, 0
        algo.replay_buffer = _Replay()
        agent.train_mode(0)
        original = algos.to_categorical
        # the reward loss's target (weight 0 here) builds float32 one-hots, which float64 defaults break: run it
        # under its own float32 default
        algos.to_categorical = lambda *a, **k: _float32_default(original, *a, **k)
        self.agent, self.algo, self.models, self.algos = agent, algo, models, algos
        self.noise: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def transplant(self) -> None:
        model, agent = self.agent.model, self.agent
        with torch.no_grad():
            for group in _param_map(self.ours, model).values():
                for mine, ref in group.values():
                    ref.copy_(mine)
            bn_ours, bn_ref = self.ours.transition.net[2], model.dynamics_model.network[2]
            bn_ref.running_mean.copy_(bn_ours.running_mean)
            bn_ref.running_var.copy_(bn_ours.running_var)
            model.target_encoder.load_state_dict(model.conv.state_dict())
            model.global_target_classifier.load_state_dict(model.global_classifier.state_dict())
        self.algo.optim_initialize()  # Adam over the transplanted parameters
        self.noise[0] = _noise_of(self.ours.q_net.head, torch.Generator().manual_seed(10_000))
        _set_ref(model.head, self.noise[0])
        agent.target_model.load_state_dict(model.state_dict())
        if self.twin is not None:
            self.twin.load_state_dict(self.ours.state_dict())

    # ------------------------------------------------------------------ draws
    def draws(self, step: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(step)
        T = K + 1 + NSTEP
        frames = torch.randint(0, 256, (T, B, 4, 84, 84), generator=g, dtype=torch.uint8)
        actions = torch.randint(0, ACTIONS, (T, B), generator=g)
        rewards = torch.randint(-1, 2, (T, B), generator=g).double()
        done = torch.rand(K + 1, B, generator=g) < 0.08
        done_n = (torch.rand(K + 1, B, generator=g) < 0.2) | done.cumsum(0).bool()
        returns = 3.0 * torch.randn(K + 1, B, generator=g, dtype=torch.float64)
        weights = torch.rand(B, generator=g, dtype=torch.float64) * 0.9 + 0.1
        weights = weights / weights.max()
        augment = _augmenter(step)
        x = frames.double() / 255.0
        obs_t = augment(x[0])
        window = augment(x[: K + 1].transpose(0, 1).reshape(-1, 4, 84, 84)).view(B, K + 1, 4, 84, 84)
        next_target, next_select = augment(x[NSTEP]), augment(x[NSTEP])
        self.noise[step] = _noise_of(self.ours.q_net.head, torch.Generator().manual_seed(20_000 + step))
        return {"frames": frames, "actions": actions, "rewards": rewards, "done": done, "done_n": done_n,
                "returns": returns, "weights": weights, "obs_t": obs_t, "window": window,
                "next_target": next_target, "next_select": next_select, "step": step}

    # ------------------------------------------------------------------ one update each
    def _ours_update(self, algo: Any, d: Mapping[str, Any]) -> tuple[Any, dict]:
        frames = d["frames"]
        valid = (1.0 - torch.sign(torch.cumsum(d["done"].double(), 0))).T.contiguous()
        batch = {"obs": frames[0], "window_obs": frames[: K + 1].transpose(0, 1), "next_obs": frames[NSTEP],
                 "window_action": d["actions"][1:K + 1].T.contiguous(), "action": d["actions"][1],
                 "window_valid": valid, "reward": d["returns"][0],
                 "discount": GAMMA ** NSTEP * (1.0 - d["done_n"][0].double()), "weights": d["weights"]}
        algo.augment = _Queue([d["obs_t"], d["window"], d["next_target"], d["next_select"]])
        step = d["step"]

        def reset_noise() -> None:
            _set_ours(algo.q_net.head, self.noise[step])
            _set_ours(algo.target_net.head, self.noise[step - 1])

        algo._reset_noise = reset_noise
        spr_cls = type(algo).__mro__[[c.__name__ for c in type(algo).__mro__].index("SPR")]
        codes = {"rl_loss": spr_cls.rl_loss.__code__, "spr_loss": spr_cls.spr_loss.__code__,
                 "update": spr_cls.update.__code__}
        with default_dtype(torch.float64), capture(codes) as seen:
            result = algo.update(batch)
        return result, seen

    def _ref_update(self, d: Mapping[str, Any]) -> dict:
        model, agent = self.agent.model, self.agent
        samples = types.SimpleNamespace(
            all_observation=d["frames"][:, :, :, None], all_action=d["actions"], all_reward=d["rewards"],
            return_=d["returns"], done=d["done"], done_n=d["done_n"], is_weights=d["weights"])
        self.algo.replay_buffer.batch = samples
        model.transform = _Queue([d["obs_t"], d["window"], d["next_select"]])
        agent.target_model.transform = _Queue([d["next_target"]])
        step = d["step"]
        model.head.reset_noise = lambda: _set_ref(model.head, self.noise[step])
        codes = {"forward": self.models.SPRCatDqnModel.forward.__code__,
                 "do_spr_loss": self.models.SPRCatDqnModel.do_spr_loss.__code__,
                 "dist_rl_loss": self.algos.SPRCategoricalDQN.dist_rl_loss.__code__,
                 "loss": self.algos.SPRCategoricalDQN.loss.__code__}
        with default_dtype(torch.float64), capture(codes) as seen:
            self.algo.optimize_agent(step)
        return seen

    def _per_rows(self, priorities: torch.Tensor, step: int) -> dict[str, tuple[Any, Any]]:
        """PER: the leaves ``p^alpha`` the update's priorities become, and the importance weights of a batch drawn
        from them at the current beta: rlkit's ``PrioritizedSampler(weight_norm=batch_max)`` against the
        reference buffer's own ``update_batch_priorities`` and ``sample_batch`` code (``src/rlpyt_buffer.py``,
        rlpyt's ``PrioritizedSequenceReplay``) run on the same leaves and sampled rows."""
        from rlkit.replay import ColumnarStorage, PrioritizedSampler, transition_columns

        alpha, beta = ALGO_KWARGS["pri_alpha"], 0.4 + 0.6 * step / 98_000
        p = priorities.detach().numpy().astype(np.float64)
        storage = ColumnarStorage(2 * B, transition_columns((1,), ()))
        for _ in range(B):
            storage.add(obs=np.zeros((1, 1)), action=np.zeros(1), reward=np.zeros(1), next_obs=np.zeros((1, 1)),
                        terminated=np.zeros(1), truncated=np.zeros(1))
        sampler = PrioritizedSampler(alpha=alpha, beta=beta, seed=step, weight_norm="batch_max")
        sampler.bind(storage)
        sampler.update_priorities(np.arange(B), p)
        indices, weights = sampler.sample(B, storage)
        leaves = sampler.tree.leaves[:B].copy()
        buffer_cls = self.buffers.AsyncPrioritizedSequenceReplayFrameBufferExtended
        fields = self.buffers.SamplesFromReplayPriExt._fields
        n_plain = len(fields) - 3  # SamplesFromReplay's fields, then is_weights, values, age
        tree = _Tree(indices, leaves)
        fake = types.SimpleNamespace(
            alpha=alpha, beta=beta, priority_tree=tree, unique=False, rnn_state_interval=0, batch_T=1,
            n_step_return=NSTEP, t=0, T=2 * B, B=1, samples=types.SimpleNamespace(value=np.zeros((4 * B, 1))),
            _async_pull=lambda: None, extract_batch=lambda *a: tuple([None] * n_plain))
        # the async mixin only takes a lock around rlpyt's PrioritizedSequenceReplay.update_batch_priorities
        update = next(c.__dict__["update_batch_priorities"] for c in buffer_cls.__mro__
                      if "update_batch_priorities" in c.__dict__ and not c.__module__.endswith("async_"))
        update(fake, priorities.detach())
        ref_batch = buffer_cls.sample_batch(fake, B)
        return {"per_leaves": (leaves, tree.updated), "per_weights": (weights, ref_batch.is_weights)}

    def compare(self, draws: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        result, ours = self._ours_update(self.ours, draws)
        ref = self._ref_update(draws)
        rl_locals, (ce, _) = ours["rl_loss"][0]
        update_locals = ours["update"][0][0]
        train_forward = next(ret for _, ret in ref["forward"] if isinstance(ret, tuple))
        ref_rl_locals, (ref_ce, ref_kl) = ref["dist_rl_loss"][0]
        ref_loss = ref["loss"][0][1]
        nonterminals = 1.0 - torch.sign(torch.cumsum(draws["done"].double(), 0))
        ref_spr = (ref["do_spr_loss"][0][1] * nonterminals).T  # [B, K+1]
        spr = ours["spr_loss"][0][1]
        out: dict[str, tuple[Any, Any]] = {
            "q_log_probs": (torch.log_softmax(update_locals["logits"], -1), train_forward[0][0]),
            "double_dqn_action": (rl_locals["best"], ref_rl_locals["next_a"]),
            "c51_target": (rl_locals["target"].clamp(1e-6, 1.0), ref_rl_locals["target_p"]),
            "rl_loss_per_row": (ce, ref_ce),
            "priorities": (result.priorities, self.algo.replay_buffer.priorities),
            "priorities_kl": (update_locals["priorities"], ref_kl),
        }
        for k in range(K + 1):
            out[f"spr_loss_k{k}"] = (spr[:, k], ref_spr[:, k])
        out["loss_total"] = (result.metrics["train/loss"], ref_loss[0] + 5.0 * ref_loss[5] + 0.0 * ref_loss[4])
        groups = _param_map(self.ours, self.agent.model)
        missing = [n for pairs in groups.values() for n, (a, b) in pairs.items() if a.grad is None or b.grad is None]
        if missing:
            raise RuntimeError(f"no gradient for {missing}: the update did not reach these parameters")
        for group, pairs in groups.items():
            out[f"grad.{group}"] = ({n: a.grad for n, (a, _) in pairs.items()},
                                    {n: b.grad for n, (_, b) in pairs.items()})
        for group, pairs in groups.items():
            out[f"params.{group}"] = ({n: a for n, (a, _) in pairs.items()}, {n: b for n, (_, b) in pairs.items()})
        out.update(self._per_rows(self.algo.replay_buffer.priorities, draws["step"]))
        if self.twin is not None:
            twin_result, _ = self._ours_update(self.twin, draws)
            out["vs_spr/loss_total"] = (result.metrics["train/loss"], twin_result.metrics["train/loss"])
            out["vs_spr/priorities"] = (result.priorities, twin_result.priorities)
            mine = dict(self.ours.q_net.named_parameters()) | {f"t.{n}": p for n, p in
                                                                self.ours.transition.named_parameters()}
            theirs = dict(self.twin.q_net.named_parameters()) | {f"t.{n}": p for n, p in
                                                                  self.twin.transition.named_parameters()}
            out["vs_spr/params"] = (mine, theirs)
        return out


class _Tree:
    """The reference buffer's priority tree, reduced to what its ``sample_batch`` / ``update_batch_priorities``
    call: hands out the given sample and records the leaves it is given."""

    def __init__(self, indices: np.ndarray, leaves: np.ndarray) -> None:
        self.indices, self.leaves, self.updated = indices, leaves, None

    def sample(self, n: int, unique: bool = False) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        return (self.indices, np.zeros_like(self.indices)), self.leaves[self.indices]

    def update_batch_priorities(self, leaves: np.ndarray) -> None:
        self.updated = leaves


def _float32_default(fn: Any, *args: Any, **kwargs: Any) -> Any:
    with default_dtype(torch.float32):
        return fn(*args, **kwargs)


def _augmenter(step: int):
    """Random shift (replicate pad 4) + intensity (0.05) with a generator seeded by the update: one draw per
    image and call site (SPR, App. D; the same draws go to both sides)."""
    from rlkit.nets import Augment

    aug = Augment(("shift", "intensity"), 4, 0.05, seed=30_000 + step)
    return lambda x: aug(x).double()
