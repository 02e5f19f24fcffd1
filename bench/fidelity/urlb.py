"""rlkit's URLB agents against the released URLB code (rll-research/url_benchmark, ``agent/*.py``), update for update.

For state observations (the DDPG encoder is the identity) each case builds rlkit's agent (``rlkit train algo=M``)
and URLB's agent from the same hyperparameters (URLB's ``agent/M.yaml`` values; rlkit's configs carry the same;
only the widths and the batch size are shrunk, identically on both sides, so that 50 updates of 9 agents run in a
minute on a CPU), copies rlkit's initial parameters into URLB's modules (pairs of modules whose parameters are
registered in the same order, checked shape by shape), feeds both the same float64 replay batch (obs, action,
reward, discount, next_obs and the skill/task of skill agents) and the same random draws: each side's
``torch.randn``/``randn_like``/``multinomial`` (and URLB's ``utils._standard_normal``, its
``TruncatedNormal.sample``) pops the next injected array, in the order that side draws (a side asking for another
shape or more draws than URLB makes stops the check, naming the draw).

Compared after 1 and 50 updates: the intrinsic reward (as returned, and as the critic receives it), the critic
target ``y``, the critic and actor losses, the number of draws used, the gradients of every trained module and
the updated parameters (actor, critic, critic target, intrinsic modules).

rlkit's ``encode`` casts state observations to float32 (``obs.float()``); for the float64 comparison the harness
replaces it with the identity on the agent instance (the DDPG encoder of states is the identity on both sides).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np

from bench.fidelity.core import Adapter, Case, default_dtype, import_reference, rlkit_algorithm

OBS_DIM, ACT_DIM = 24, 6  # walker's state and action sizes
HIDDEN, BATCH = 64, 64  # shrunk widths/batch (both sides): shapes only, not the math
STUBS = ("hydra", "wandb", "dm_env", "dmc", "dm_control")

#: method -> (URLB module, agent class, extra URLB kwargs beyond the yaml, [(rlkit module, URLB module)], skill)
AGENTS: dict[str, tuple[str, str, dict[str, Any], list[tuple[str, str]], str]] = {
    "ddpg": ("agent.ddpg", "DDPGAgent", {}, [], ""),
    "rnd": ("agent.rnd", "RNDAgent", {}, [("rnd", "rnd")], ""),
    "icm": ("agent.icm", "ICMAgent", {}, [("icm", "icm")], ""),
    "disagreement": ("agent.disagreement", "DisagreementAgent", {}, [("disagreement", "disagreement")], ""),
    "apt": ("agent.icm_apt", "ICMAPTAgent", {}, [("icm", "icm")], ""),
    "diayn": ("agent.diayn", "DIAYNAgent", {}, [("diayn", "diayn")], "onehot"),
    "smm": ("agent.smm", "SMMAgent", {}, [("discriminator", "smm.z_pred_net"), ("vae", "smm.vae")], "onehot"),
    "aps": ("agent.aps", "APSAgent", {}, [("aps", "aps")], "unit"),
    "proto": ("agent.proto", "ProtoAgent", {}, [("proto.predictor", "predictor"), ("proto.projector", "projector"),
                                                ("proto.protos", "protos"),
                                                ("proto.predictor_target", "predictor_target")], ""),
}
#: URLB yaml file of each method
YAML = {"apt": "icm_apt"}
#: URLB yaml keys that are not constructor arguments or that the harness sets
_SET_HERE = {"_target_", "name", "reward_free", "obs_type", "obs_shape", "action_shape", "device", "use_tb",
             "use_wandb", "num_expl_steps", "update_encoder", "hidden_dim", "batch_size"}


def _attr(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


class DrawQueue:
    """Injected standard-normal draws, popped in the order a side asks for them (shape-checked)."""

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays, self.used = list(arrays), 0

    def next(self, shape: tuple[int, ...], dtype: Any) -> Any:
        import torch

        if self.used >= len(self.arrays):
            raise RuntimeError(f"side asked for draw #{self.used + 1} of shape {shape}; only {len(self.arrays)} made")
        value = self.arrays[self.used]
        if tuple(value.shape) != tuple(shape):
            raise RuntimeError(f"draw #{self.used + 1}: side asked for shape {tuple(shape)}, injected {value.shape}")
        self.used += 1
        return torch.as_tensor(value, dtype=dtype)


@contextlib.contextmanager
def injected(queue: DrawQueue, urlb_utils: Any = None) -> Iterator[None]:
    """``torch.randn``/``randn_like``/``multinomial`` (and URLB's ``utils._standard_normal``) pop from ``queue`` in
    the block (a categorical draw is the sampled index per row, ``(rows, 1)``)."""
    import torch

    real_randn, real_like, real_multinomial = torch.randn, torch.randn_like, torch.multinomial

    def randn(*size: Any, dtype: Any = None, device: Any = None, **_: Any) -> Any:
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], list | tuple | torch.Size) else size
        return queue.next(tuple(int(s) for s in shape), dtype or torch.get_default_dtype())

    def randn_like(t: Any, **_: Any) -> Any:
        return queue.next(tuple(t.shape), t.dtype)

    def multinomial(probs: Any, num_samples: int, *args: Any, **kwargs: Any) -> Any:
        return queue.next((probs.shape[0], int(num_samples)), torch.long)

    torch.randn, torch.randn_like, torch.multinomial = randn, randn_like, multinomial
    saved = None
    if urlb_utils is not None:
        saved = urlb_utils._standard_normal
        urlb_utils._standard_normal = lambda shape, dtype, device: queue.next(tuple(shape), dtype)
    try:
        yield
    finally:
        torch.randn, torch.randn_like, torch.multinomial = real_randn, real_like, real_multinomial
        if urlb_utils is not None:
            urlb_utils._standard_normal = saved


class _RecordingF:
    """URLB's ``F`` (torch.nn.functional) with ``mse_loss`` recording its target (the critic target ``y``)."""

    def __init__(self, real: Any) -> None:
        self.real, self.targets = real, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def mse_loss(self, input: Any, target: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: A002
        self.targets.append(target.detach().clone())
        return self.real.mse_loss(input, target, *args, **kwargs)


class URLBAdapter(Adapter):
    """URLB's DDPG and its eight agents (module docstring)."""

    name: ClassVar[str] = "urlb"
    reference: ClassVar[str] = "rll-research/url_benchmark"
    agents: ClassVar[dict[str, tuple[str, str, dict[str, Any], list[tuple[str, str]], str]]] = AGENTS
    #: the reference's method returning the intrinsic reward (None: computed inline or as a pair of terms; the
    #: reward is then compared as the critic receives it)
    reward_methods: ClassVar[dict[str, str | None]] = {"ddpg": None, "smm": None, "aps": None}
    #: the reference's logging switch: URLB's metrics carry the losses (CIC's crash with it on: the harness sets it
    #: only around update_critic/update_actor)
    use_tb: ClassVar[bool] = True

    def cases(self) -> list[Case]:
        note = f"states, obs {OBS_DIM}, actions {ACT_DIM}, hidden {HIDDEN}, batch {BATCH}, float64"
        cases = [Case(m, (f"algo={m}",), note=note) for m in self.agents]
        if "aps" in self.agents:  # finetuning from a pretrained APS: which feature net the task regression reads
            cases.append(Case("aps", ("algo=aps", "algo.init_sf=fresh"), switch="algo.init_sf=fresh",
                              note=note + "; finetuning after init_from (URLB) / init_from_snapshot (rlkit)",
                              options={"finetune": True}))
        return cases

    # ------------------------------------------------------------------ build
    def _urlb_kwargs(self, method: str, reward_free: bool = True) -> dict[str, Any]:
        import yaml

        raw = yaml.safe_load((self.path / "agent" / f"{YAML.get(method, method)}.yaml").read_text())
        kwargs = {k: v for k, v in raw.items() if k not in _SET_HERE}
        kwargs.update(name=method, reward_free=reward_free and method != "ddpg", obs_type="states",
                      obs_shape=(OBS_DIM,), action_shape=(ACT_DIM,), device="cpu", use_tb=self.use_tb,
                      use_wandb=False, num_expl_steps=0,
                      hidden_dim=HIDDEN, batch_size=BATCH, lr=float(kwargs["lr"]))
        if "update_encoder" in raw and method != "ddpg":  # states: the identity encoder, nothing to train
            kwargs["update_encoder"] = True
        kwargs.update(self.agents[method][2])
        for key, value in list(kwargs.items()):
            if isinstance(value, str) and key.endswith(("lr", "clip", "beta")):
                kwargs[key] = float(value)
        return kwargs

    def build(self, case: Case) -> None:
        import gymnasium as gym
        import torch

        self.case, self.method = case, case.method
        module, cls, _, self.pairs, self.skill_kind = self.agents[case.method]
        obs_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float64)
        act_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float64)
        self.finetune = bool(case.options.get("finetune", False))
        with default_dtype(torch.float64):
            self.urlb_utils = import_reference(self.path, "utils", STUBS)
            with contextlib.ExitStack() as stack:
                from bench.fidelity.core import reference_imports

                stack.enter_context(reference_imports(self.path, STUBS, ("agent", "utils")))
                import importlib
                import sys

                sys.modules["utils"] = self.urlb_utils
                mod = importlib.import_module(module)
                self.ddpg_mod = importlib.import_module("agent.ddpg")

            def pair(reward_free: bool, seed: int) -> tuple[Any, Any]:
                torch.manual_seed(seed)
                ours = rlkit_algorithm([*case.overrides, f"algo.hidden_dim={HIDDEN}", *self.rlkit_sizes()],
                                       obs_space, act_space)
                if case.method != "ddpg":
                    ours.setup_urlb(reward_free=reward_free, seed_steps=0, episode_steps=1000)
                ours.encode = lambda obs: obs  # states: identity encoder, kept float64 (module docstring)
                torch.manual_seed(seed + 1)
                return ours, getattr(mod, cls)(**self._urlb_kwargs(case.method, reward_free))

            self.ours, self.theirs = pair(not self.finetune, 0)
            #: finetuning cases: the pretrained pair whose snapshot the finetuning pair starts from
            self.pretrained = pair(True, 10) if self.finetune else None
        self.recording_f = _RecordingF(self.ddpg_mod.F)
        self.ddpg_mod.F = self.recording_f
        mod.F = self.recording_f  # APS's own update_critic

    def rlkit_sizes(self) -> list[str]:
        return []

    def modules(self, ours: Any = None, theirs: Any = None) -> list[tuple[str, Any, Any]]:
        """``(name, rlkit module, URLB module)`` of every compared network (of the given pair, else the checked)."""
        ours, theirs = (self.ours, self.theirs) if ours is None else (ours, theirs)
        out = [("actor", ours.actor, theirs.actor), ("critic", ours.critic, theirs.critic),
               ("critic_target", ours.critic_target, theirs.critic_target)]
        out += [(a, _attr(ours, a), _attr(theirs, b)) for a, b in self.pairs]
        return out

    def transplant(self) -> None:
        """rlkit's parameters into URLB's; finetuning cases: both pairs, then each side's own hand-off (rlkit's
        ``init_from_snapshot`` of the pretrained agent's ``state_dict``, URLB's ``init_from``)."""
        self._copy(self.modules())
        if self.pretrained is not None:
            pre_ours, pre_theirs = self.pretrained
            self._copy(self.modules(pre_ours, pre_theirs))
            self.ours.init_from_snapshot(pre_ours.state_dict())
            self.theirs.init_from(pre_theirs)

    def _copy(self, modules: list[tuple[str, Any, Any]]) -> None:
        import torch

        for name, ours, theirs in modules:
            a, b = list(ours.named_parameters()), list(theirs.named_parameters())
            if len(a) != len(b):
                raise RuntimeError(f"{name}: {len(a)} parameters in rlkit, {len(b)} in URLB")
            with torch.no_grad():
                for (na, pa), (nb, pb) in zip(a, b, strict=True):
                    if pa.shape != pb.shape:
                        raise RuntimeError(f"{name}: rlkit {na} {tuple(pa.shape)} vs URLB {nb} {tuple(pb.shape)}")
                    pb.copy_(pa)

    # ------------------------------------------------------------------ draws
    def draws(self, step: int) -> dict[str, Any]:
        rng = np.random.default_rng(1000 + step)
        b = BATCH
        d: dict[str, Any] = {
            "obs": rng.normal(size=(b, OBS_DIM)), "next_obs": rng.normal(size=(b, OBS_DIM)),
            "action": rng.uniform(-0.99, 0.99, size=(b, ACT_DIM)), "reward": rng.normal(size=b),
            "discount": 0.99**3 * (rng.uniform(size=b) > 0.05),
        }
        if self.skill_kind == "onehot":
            k = int(self.ours.meta_dim)
            d["skill"] = np.eye(k)[rng.integers(0, k, b)]
        elif self.skill_kind == "uniform":
            d["skill"] = rng.uniform(0.0, 1.0, size=(b, int(self.ours.meta_dim)))
        elif self.skill_kind == "unit":
            z = rng.normal(size=(b, int(self.ours.meta_dim)))
            d["skill"] = z / np.linalg.norm(z, axis=1, keepdims=True)
        d["normals"] = self.normal_draws(rng)
        return d

    def normal_draws(self, rng: np.random.Generator) -> list[np.ndarray]:
        """The random draws of one update, in the order URLB makes them: SMM's VAE code noise ``(B, code)``,
        ProtoRL's candidate per prototype ``(K, 1)``, then the target-policy and actor-loss noise ``(B, |A|)``."""
        out = []
        if self.method == "smm":
            out.append(rng.normal(size=(BATCH, int(self.ours.vae.code_dim))))
        if self.method == "proto":
            out.append(rng.integers(0, BATCH, size=(int(self.ours.proto.protos.out_features), 1)))
        return out + [rng.normal(size=(BATCH, ACT_DIM)) for _ in range(2)]

    # ------------------------------------------------------------------ compare
    def compare(self, draws: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        import torch

        from rlkit.replay.batch import Batch

        t = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in draws.items() if k != "normals"}
        ours_rec: dict[str, Any] = {}
        theirs_rec: dict[str, Any] = {}

        # rlkit
        batch = Batch(obs=t["obs"], next_obs=t["next_obs"], action=t["action"], reward=t["reward"],
                      discount=t["discount"], **({"skill": t["skill"]} if "skill" in t else {}))
        agent = self.ours
        real_ac, real_ir = agent.update_actor_critic, getattr(agent, "intrinsic_reward", None)

        def ac(*args: Any) -> Any:
            metrics, q, target = real_ac(*args)
            ours_rec.update(critic_reward=args[2], target=target, critic_loss=metrics["train/critic_loss"],
                            actor_loss=metrics["train/actor_loss"])
            return metrics, q, target

        def ir(*args: Any) -> Any:
            reward = real_ir(*args)
            ours_rec["intrinsic_reward"] = reward
            return reward

        agent.update_actor_critic = ac
        if self.method != "ddpg":
            agent.intrinsic_reward = ir
        q_ours = DrawQueue(draws["normals"])
        with default_dtype(torch.float64), injected(q_ours):
            agent.update(batch)
        del agent.update_actor_critic
        if self.method != "ddpg":
            del agent.intrinsic_reward

        # URLB
        them = self.theirs
        col = lambda x: x.reshape(-1, 1)  # noqa: E731
        items = [t["obs"], t["action"], col(t["reward"]), col(t["discount"]), t["next_obs"]]
        if "skill" in t:
            items.append(t["skill"])
        replay = iter([tuple(x.numpy() for x in items)])
        reward_method = self.reward_methods.get(self.method, "compute_intr_reward")
        wrapped = [name for name in (reward_method, "update_critic", "update_actor") if name]
        real = {name: getattr(them, name) for name in wrapped}

        def recording(name: str) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                if name == "update_critic":
                    theirs_rec["critic_reward"] = args[2]
                them.use_tb = True
                try:
                    out = real[name](*args, **kwargs)
                finally:
                    them.use_tb = self.use_tb
                if name == "update_critic":
                    theirs_rec["critic_loss"] = out["critic_loss"]
                elif name == "update_actor":
                    theirs_rec["actor_loss"] = out["actor_loss"]
                else:
                    theirs_rec["intrinsic_reward"] = out
                return out
            return call

        for name in wrapped:
            setattr(them, name, recording(name))
        self.recording_f.targets.clear()
        q_theirs = DrawQueue(draws["normals"])
        with default_dtype(torch.float64), injected(q_theirs, self.urlb_utils):
            them.update(replay, 0)
        for name in wrapped:
            delattr(them, name)
        theirs_rec["target"] = self.recording_f.targets[-1]

        out: dict[str, tuple[Any, Any]] = {}
        if "intrinsic_reward" in theirs_rec:
            out["intrinsic_reward"] = (ours_rec["intrinsic_reward"], theirs_rec["intrinsic_reward"])
        for key in ("critic_reward", "target", "critic_loss", "actor_loss"):
            out[key] = (ours_rec[key], theirs_rec[key])
        out["normal_draws_used"] = (q_ours.used, q_theirs.used)
        for name, ours, theirs in self.modules():
            if name == "critic_target":
                continue
            out[f"grad.{name}"] = (_grads(ours), _grads(theirs, keys=_grads(ours)))
        for name, ours, theirs in self.modules():
            out[f"params.{name}"] = (_params(ours), _params(theirs, keys=_params(ours)))
        return out


def _grads(module: Any, keys: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Gradients by rlkit's parameter names (URLB's zipped in order); a parameter without one reads 0."""
    import torch

    params = list(module.named_parameters())
    names = list(keys) if keys is not None else [n for n, _ in params]
    return {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
            for n, (_, p) in zip(names, params, strict=True)}


def _params(module: Any, keys: Mapping[str, Any] | None = None) -> dict[str, Any]:
    params = list(module.named_parameters())
    names = list(keys) if keys is not None else [n for n, _ in params]
    return {n: p.detach().clone() for n, (_, p) in zip(names, params, strict=True)}


