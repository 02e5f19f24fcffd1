"""rlkit's STORM against the authors' released code (weipu-zhang/STORM), update for update.

One update on each side = one world-model update on a replayed batch, one imagination rollout from replayed
contexts and one actor-critic update on it, the released training loop's order (``train.py``:
``train_world_model_step``, ``world_model_imagine_data``, ``agent.update``).  Reported per update: the
world-model loss terms (the reference's logged values), the world model's clipped gradients and updated
parameters (with the BatchNorm running statistics), the imagined states, actions, rewards and continuation
flags, both lambda-returns (critic and slow critic), the actor-critic loss terms and return scale, the
actor-critic's clipped gradients and the updated actor, critic and slow critic.

Same configuration on both sides: the released model at a smaller transformer width (64 frames 64x64x3, the
fixed 32-256 channel encoder/decoder and 32x32 latent; 2 layers, 4 heads, d_model 64, FFN 128; heads and
agent 64 wide), the released optimizers, loss weights, free bits, gamma, lambda, entropy and EMA settings;
batches of 2 x 8 world-model steps and 4 contexts of 4 steps imagined 8 steps ahead.  rlkit's reward head's
output weights are scaled by 4 before the copy, so that imagined rewards spread (std ~15) and the return scale
S = max(1, EMA(P95) - EMA(P5)) leaves its floor from update 2 on (at PyTorch's init it stays 1 throughout);
about 1 in 10 imagined steps terminates and every action is drawn.  Dropout off (the
reference's 0.1 is hard-coded: its ``nn.Dropout`` modules are set to p = 0).

Precision: both sides in float64.  The released code runs bfloat16 autocast with a GradScaler on CUDA
(``use_amp = True``), which is rlkit's ``precision=auto`` on CUDA; here the reference's ``use_amp`` is off, its
``tensor_dtype`` float64 and its scaler disabled, so its fp32 path runs in float64.  Its ``calc_lambda_return``
writes the returns into a float32 buffer by default (argument ``dtype``): the check passes ``dtype=float64``.
The bf16 path is not compared (it needs CUDA, and bf16 rounding is far above the tolerance).  By reading,
rlkit's bf16 path (``precision=auto`` on CUDA) differs from the released one in one place: the reference
decodes the critic's and slow critic's values inside its autocast region (``agents.py``:
``symlog_twohot_loss.decode`` under ``torch.autocast``), so ``softmax(logits) @ bins`` runs in bfloat16 and
the lambda-returns and advantages see values rounded to bfloat16; rlkit decodes them in float32.  Its bf16
imagination buffers (``init_imagine_buffer``) round the hidden states, which the agent's first Linear casts to
bfloat16 anyway; its GradScaler only skips steps with non-finite gradients.
The reference hard-codes ``device="cuda"`` (buffers, the KV cache, ``torch.ones(1).cuda()``):
:func:`import_storm_reference` maps those to the CPU (shared with ``bench/storm_reference.py``).

Random draws: every categorical sample (the posterior and prior latents, the actor's actions) is drawn on both
sides by Gumbel-max from the same uniform noise, ``argmax(l - log(-log u))``, fed through the samplers each
side calls (rlkit's :func:`rlkit.nets.heads.sample_categorical`; the reference's ``OneHotCategorical.sample``
and ``Categorical.sample``).  The reference's context loop samples a prior at every context step and keeps
only the last; its other samples get their own noise.
"""

from __future__ import annotations

import contextlib
import importlib
import types
from collections import deque
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.fidelity.core import Adapter, Case, default_dtype, reference_imports, rlkit_algorithm

A, D, AGENT_HIDDEN, HEADS, LAYERS = 4, 64, 64, 4, 2
WM_B, WM_T, IM_B, IM_CTX, IM_H = 2, 8, 4, 4, 8
K = 32  # the reference's fixed 32 x 32 latent
OVERRIDES = (
    "algo=storm", "env=atari100k-pong", "algo.precision=fp32",
    f"algo.transformer.d_model={D}", f"algo.transformer.n_heads={HEADS}", f"algo.transformer.n_layers={LAYERS}",
    f"algo.transformer.d_ff={2 * D}", "algo.transformer.dropout=0.0", "algo.transformer.attn_dropout=0.0",
    f"algo.head_hidden={D}", f"algo.agent_hidden={AGENT_HIDDEN}", f"algo.wm_batch_size={WM_B}",
    f"algo.wm_seq_len={WM_T}", f"algo.imagine_batch_size={IM_B}", f"algo.imagine_context={IM_CTX}",
    f"algo.imagine_horizon={IM_H}",
)
STUBS = ("tensorboardX", "yacs", "yacs.config")  # logging / config only


# ------------------------------------------------------------------------------- importing the reference


def import_storm_reference(ref: Path, device: torch.device | str = "cpu") -> dict[str, types.ModuleType]:
    """The reference's ``agents``, ``sub_models.world_models`` and ``sub_models.transformer_model`` modules,
    imported from the clone at ``ref`` (logging-only imports stubbed when missing, module names isolated); where
    ``device`` is not CUDA, their ``torch.zeros(..., device="cuda")`` allocations land on ``device``
    (``Tensor.cuda()`` needs :func:`cuda_calls_to` around the calls)."""
    device = torch.device(device)
    with reference_imports(ref, STUBS, isolate=("agents", "utils", "sub_models")):
        modules = {name: importlib.import_module(name)
                   for name in ("agents", "sub_models.world_models", "sub_models.transformer_model")}
    if device.type != "cuda":
        class _Torch(types.ModuleType):
            """``torch`` as the reference sees it: ``device="cuda"`` allocations land on ``device``."""

            def __getattr__(self, name: str) -> Any:
                return getattr(torch, name)

            def zeros(self, *args: Any, **kwargs: Any) -> Tensor:
                if kwargs.get("device") == "cuda":
                    kwargs["device"] = device
                return torch.zeros(*args, **kwargs)

        shim = _Torch("torch")
        for module in modules.values():
            module.torch = shim
    return modules


@contextlib.contextmanager
def cuda_calls_to(device: torch.device | str) -> Iterator[None]:
    """``Tensor.cuda()`` returns the tensor on ``device`` inside the block (the reference's
    ``torch.ones(1).cuda()``); restored after."""
    device = torch.device(device)
    if device.type == "cuda":
        yield
        return
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self.to(device)
    try:
        yield
    finally:
        torch.Tensor.cuda = original


def reference_fp32(*modules: nn.Module, dtype: torch.dtype = torch.float32) -> None:
    """Switch the reference's mixed precision off: no bfloat16 autocast, buffers in ``dtype``, no loss scaling."""
    for module in modules:
        module.use_amp = False
        module.tensor_dtype = dtype
        module.scaler = torch.amp.GradScaler("cpu", enabled=False)


# ------------------------------------------------------------------------------------- injected draws


class _Draws:
    """Queues of uniform noise, one per side; every categorical sample pops the next one (shapes checked)."""

    def __init__(self) -> None:
        self.queue: deque[Tensor] = deque()

    def indices(self, logits: Tensor) -> Tensor:
        if not self.queue:
            raise RuntimeError("a categorical sample was drawn that the adapter did not provide noise for")
        u = self.queue.popleft()
        if u.numel() != logits.numel():
            raise RuntimeError(f"noise of shape {tuple(u.shape)} drawn for logits {tuple(logits.shape)}")
        return (logits - torch.log(-torch.log(u.reshape(logits.shape).to(logits.dtype)))).argmax(-1)


def _injected_distributions(draws: _Draws) -> tuple[type, types.ModuleType]:
    """A ``OneHotCategorical`` and a ``torch.distributions`` stand-in whose ``Categorical`` sample from ``draws``."""

    class OneHotCategorical(torch.distributions.OneHotCategorical):
        def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
            return F.one_hot(draws.indices(self.logits), self.logits.shape[-1]).to(self.probs.dtype)

    class Categorical(torch.distributions.Categorical):
        def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
            return draws.indices(self.logits)

    module = types.ModuleType("distributions")
    module.__dict__.update({k: v for k, v in vars(torch.distributions).items() if not k.startswith("__")})
    module.Categorical = Categorical
    return OneHotCategorical, module


# ------------------------------------------------------------------------------------------ name maps

#: rlkit state_dict prefix -> the reference's (the longest matching prefix wins)
_WM_PREFIXES = {
    "encoder.net.": "encoder.backbone.",
    "posterior_head.": "dist_head.post_head.",
    "prior_head.": "dist_head.prior_head.",
    "decoder.stem.": "image_decoder.backbone.0.",
    "stem.": "storm_transformer.stem.",
    "transformer.pos_embedding.": "storm_transformer.position_encoding.pos_emb.",
    "transformer.input_norm.": "storm_transformer.layer_norm.",
    "reward_head.6.": "reward_decoder.head.",
    "reward_head.": "reward_decoder.backbone.",
    "termination_head.6.": "termination_decoder.head.0.",
    "termination_head.": "termination_decoder.backbone.",
}
_BLOCK = {"attn.q_proj.": "slf_attn.w_qs.", "attn.k_proj.": "slf_attn.w_ks.", "attn.v_proj.": "slf_attn.w_vs.",
          "attn.out_proj.": "slf_attn.fc.", "norm1.": "slf_attn.layer_norm.", "ffn.0.": "pos_ffn.w_1.",
          "ffn.2.": "pos_ffn.w_2.", "norm2.": "pos_ffn.layer_norm."}
for _i in range(LAYERS):
    _WM_PREFIXES.update({f"transformer.blocks.{_i}.{a}": f"storm_transformer.layer_stack.{_i}.{b}"
                         for a, b in _BLOCK.items()})


def _wm_name(name: str) -> str:
    if name.startswith("decoder.net."):  # the reference's decoder has Linear and Rearrange in front
        index, rest = name[len("decoder.net."):].split(".", 1)
        return f"image_decoder.backbone.{int(index) + 2}.{rest}"
    prefix = max((p for p in _WM_PREFIXES if name.startswith(p)), key=len)
    return _WM_PREFIXES[prefix] + name[len(prefix):]


def _group(name: str) -> str:
    """Report group of a parameter: its top module (the transformer per block)."""
    parts = name.split(".")
    return ".".join(parts[:3]) if parts[0] == "transformer" and parts[1] == "blocks" else parts[0]


# ------------------------------------------------------------------------------------------ the adapter


class StormAdapter(Adapter):
    name = "storm"
    reference = "weipu-zhang/STORM"

    def cases(self) -> list[Case]:
        return [Case("storm", OVERRIDES, note="fp32 path of the released code, run in float64 on both sides")]

    def build(self, case: Case) -> None:
        ref = import_storm_reference(self.path, "cpu")
        self.agents, self.world_models = ref["agents"], ref["sub_models.world_models"]
        with default_dtype(torch.float64):
            self.algo = rlkit_algorithm(case.overrides, gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
                                        gym.spaces.Discrete(A))
            self.wm = self.world_models.WorldModel(in_channels=3, action_dim=A, transformer_max_length=64,
                                                   transformer_hidden_dim=D, transformer_num_layers=LAYERS,
                                                   transformer_num_heads=HEADS)
            self.agent = self.agents.ActorCriticAgent(feat_dim=K * K + D, num_layers=2, hidden_dim=AGENT_HIDDEN,
                                                      action_dim=A, gamma=0.985, lambd=0.95, entropy_coef=3e-4)
        reference_fp32(self.wm, self.agent, dtype=torch.float64)
        for module in self.wm.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
        # injected draws on both sides
        self.ours_draws, self.theirs_draws = _Draws(), _Draws()
        one_hot, distributions = _injected_distributions(self.theirs_draws)
        self.world_models.OneHotCategorical = one_hot
        self.agents.distributions = distributions
        # the reference's lambda-returns in float64 (its dtype argument) and recorded on both sides
        self.returns: dict[str, list[Tensor]] = {"ours": [], "theirs": []}
        original = self.agents.calc_lambda_return

        def theirs_returns(*args: Any, **kwargs: Any) -> Tensor:
            out = original(*args, **{**kwargs, "dtype": torch.float64})
            self.returns["theirs"].append(out.detach().clone())
            return out

        self.agents.calc_lambda_return = theirs_returns

    def transplant(self) -> None:
        with torch.no_grad():  # imagined rewards with spread (std ~15): the return scale leaves its floor of 1
            self.algo.world_model.reward_head[-1].weight.mul_(4.0)
        ours, theirs = self.algo.world_model.state_dict(), self.wm.state_dict()
        self.wm_names = {name: _wm_name(name) for name in ours}
        missing = set(theirs) - set(self.wm_names.values())
        if missing or any(v not in theirs for v in self.wm_names.values()):
            raise ValueError(f"world-model name map incomplete: {sorted(missing)}")
        for name, ref_name in self.wm_names.items():
            if theirs[ref_name].shape != ours[name].shape:
                raise ValueError(f"{name} {tuple(ours[name].shape)} vs {ref_name} {tuple(theirs[ref_name].shape)}")
        self.wm.load_state_dict({self.wm_names[k]: v.clone() for k, v in ours.items()})
        ac = self.algo.actor_critic
        self.agent.actor.load_state_dict(ac.actor.state_dict())
        self.agent.critic.load_state_dict(ac.critic.state_dict())
        self.agent.slow_critic.load_state_dict(self.algo.slow_critic.state_dict())
        # the optimizers were built over the parameters in __init__ (Adam state is empty until the first step)
        self.grads: dict[str, dict[str, Tensor]] = {}
        for side, opt, params in (("ours_wm", self.algo.wm_opt, self.algo.world_model.named_parameters),
                                  ("theirs_wm", self.wm.optimizer, self.wm.named_parameters),
                                  ("ours_ac", self.algo.ac_opt, self.algo.actor_critic.named_parameters),
                                  ("theirs_ac", self.agent.optimizer, self.agent.named_parameters)):
            opt.step = self._recording(opt.step, side, params)

    def _recording(self, step: Any, side: str, named_parameters: Any) -> Any:
        """``optimizer.step`` that first records the (clipped) gradients: the reference clears them after its
        step."""
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.grads[side] = {n: p.grad.detach().clone() for n, p in named_parameters() if p.grad is not None}
            return step(*args, **kwargs)
        return wrapped

    def draws(self, step: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(step)
        uniform = partial(torch.rand, generator=g, dtype=torch.float64)
        reward = torch.randn(WM_B, WM_T, generator=g, dtype=torch.float64) * (torch.rand(WM_B, WM_T, generator=g) < 0.3)
        return {
            "wm": {"obs": torch.randint(0, 256, (WM_B, WM_T, 64, 64, 3), generator=g, dtype=torch.uint8),
                   "action": torch.randint(0, A, (WM_B, WM_T), generator=g),
                   "reward": reward,
                   "terminated": (torch.rand(WM_B, WM_T, generator=g) < 0.1).double(),
                   "life_loss": torch.zeros(WM_B, WM_T, dtype=torch.float64)},
            "ctx": {"obs": torch.randint(0, 256, (IM_B, IM_CTX, 64, 64, 3), generator=g, dtype=torch.uint8),
                    "action": torch.randint(0, A, (IM_B, IM_CTX), generator=g)},
            "wm_posterior": uniform(WM_B, WM_T, K, K).clamp_(min=1e-300),
            "ctx_posterior": uniform(IM_B, IM_CTX, K, K).clamp_(min=1e-300),
            "ctx_priors": uniform(IM_CTX, IM_B, K, K).clamp_(min=1e-300),  # the last one is used
            "actions": uniform(IM_H, IM_B, A).clamp_(min=1e-300),
            "priors": uniform(IM_H, IM_B, K, K).clamp_(min=1e-300),
        }

    def _queue(self, draws: Mapping[str, Any], reference: bool) -> list[Tensor]:
        queue = [draws["wm_posterior"], draws["ctx_posterior"]]
        queue += list(draws["ctx_priors"]) if reference else [draws["ctx_priors"][-1]]
        for i in range(IM_H):
            queue += [draws["actions"][i], draws["priors"][i]]
        return queue

    @contextlib.contextmanager
    def _rlkit_draws(self) -> Iterator[None]:
        from rlkit.algorithms.world_models import storm as storm_module
        from rlkit.nets import heads

        saved = heads.sample_categorical, storm_module.sample_categorical
        heads.sample_categorical = storm_module.sample_categorical = self.ours_draws.indices
        try:
            yield
        finally:
            heads.sample_categorical, storm_module.sample_categorical = saved

    def compare(self, draws: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        q: dict[str, tuple[Any, Any]] = {}
        with default_dtype(torch.float64):
            ours = self._rlkit_update(draws)
            theirs = self._reference_update(draws)
        for key in ours:
            q[key] = (ours[key], theirs[key])
        for part, ours_model, theirs_model in (("wm", self.algo.world_model, self.wm),):
            for group, (a, b) in self._wm_groups(self.grads[f"ours_{part}"], self.grads[f"theirs_{part}"]).items():
                q[f"grad.{group}"] = (a, b)
            sd_ours, sd_theirs = ours_model.state_dict(), theirs_model.state_dict()
            grouped = self._wm_groups(sd_ours, sd_theirs)
            for group, (a, b) in grouped.items():
                q[f"param.{group}"] = (a, b)
        ga, gb = self.grads["ours_ac"], self.grads["theirs_ac"]
        for net in ("actor", "critic"):
            q[f"grad.{net}"] = ({k: v for k, v in ga.items() if k.startswith(net)},
                                {k: v for k, v in gb.items() if k.startswith(net)})
        ac = self.algo.actor_critic
        q["param.actor"] = (ac.actor.state_dict(), self.agent.actor.state_dict())
        q["param.critic"] = (ac.critic.state_dict(), self.agent.critic.state_dict())
        q["param.slow_critic"] = (self.algo.slow_critic.state_dict(), self.agent.slow_critic.state_dict())
        return {k: _detached(v) for k, v in q.items()}

    def _wm_groups(self, ours: Mapping[str, Tensor], theirs: Mapping[str, Tensor]
                   ) -> dict[str, tuple[dict[str, Tensor], dict[str, Tensor]]]:
        out: dict[str, tuple[dict[str, Tensor], dict[str, Tensor]]] = {}
        if set(map(self.wm_names.get, ours)) != set(theirs):
            raise ValueError("the two world models name different tensors")
        for name, value in ours.items():
            a, b = out.setdefault(_group(name), ({}, {}))
            a[name], b[name] = value, theirs[self.wm_names[name]]
        return out

    def _rlkit_update(self, draws: Mapping[str, Any]) -> dict[str, Any]:
        algo = self.algo
        self.ours_draws.queue.extend(self._queue(draws, reference=False))
        import rlkit.algorithms.world_models.storm as storm_module

        original_returns = storm_module.lambda_returns

        def returns(*args: Any, **kwargs: Any) -> Tensor:
            out = original_returns(*args, **kwargs)
            self.returns["ours"].append(out.detach().clone())
            return out

        rollouts: list[tuple[Tensor, ...]] = []
        imagine = algo.imagine

        def recorded_imagine(*args: Any, **kwargs: Any) -> tuple[Tensor, ...]:
            rollouts.append(imagine(*args, **kwargs))
            return rollouts[-1]

        with self._rlkit_draws():
            storm_module.lambda_returns = returns
            algo.imagine = recorded_imagine
            try:
                metrics = algo.update({"wm": draws["wm"], "ctx": draws["ctx"]}).metrics
            finally:
                storm_module.lambda_returns = original_returns
                del algo.imagine
        if self.ours_draws.queue:
            raise RuntimeError(f"rlkit left {len(self.ours_draws.queue)} draws unused")
        value_returns, slow_returns = self.returns["ours"][-2:]
        (states, actions, rewards, continues), m = rollouts[-1], metrics
        return {
            "wm.reconstruction": m["wm/reconstruction"], "wm.reward": m["wm/reward"],
            "wm.termination": m["wm/termination"], "wm.dynamics": m["wm/dynamics"],
            "wm.representation": m["wm/representation"], "wm.kl": m["wm/kl"], "wm.loss": m["wm/loss"],
            "imagine.states": states, "imagine.actions": actions, "imagine.rewards": rewards,
            "imagine.continues": continues, "lambda_returns": value_returns, "slow_lambda_returns": slow_returns,
            "ac.policy": m["agent/policy"], "ac.value": m["agent/value"], "ac.entropy": m["agent/entropy"],
            "ac.return_scale": m["agent/return_scale"], "ac.loss": m["agent/loss"],
            "ac.slow_value_reg": m["agent/slow_value_reg"],
        }

    def _reference_update(self, draws: Mapping[str, Any]) -> dict[str, Any]:
        wm, agent = self.wm, self.agent
        self.theirs_draws.queue.extend(self._queue(draws, reference=True))
        b, c = draws["wm"], draws["ctx"]
        obs = b["obs"].permute(0, 1, 4, 2, 3).double() / 255  # replay_buffer.sample: float / 255, B T C H W
        logged: dict[str, float] = {}
        logger = types.SimpleNamespace(log=lambda name, value: logged.__setitem__(name, value))
        with cuda_calls_to("cpu"):
            wm.update(obs, b["action"], b["reward"], b["terminated"], logger=logger)
            wm.eval()  # train.py's world_model_imagine_data
            agent.eval()
            with torch.no_grad():
                latent, action, reward, termination = wm.imagine_data(
                    agent, c["obs"].permute(0, 1, 4, 2, 3).double() / 255, c["action"], imagine_batch_size=IM_B,
                    imagine_batch_length=IM_H, log_video=False, logger=None)
            agent.update(latent=latent, action=action, old_logprob=None, old_value=None, reward=reward,
                         termination=termination, logger=logger)
        if self.theirs_draws.queue:
            raise RuntimeError(f"the reference left {len(self.theirs_draws.queue)} draws unused")
        slow_returns, value_returns = self.returns["theirs"][-2:]  # agents.update: slow critic's first
        entropy = logged["ActorCritic/entropy_loss"]
        slow_reg = (logged["ActorCritic/total_loss"] - logged["ActorCritic/policy_loss"]
                    - logged["ActorCritic/value_loss"] + agent.entropy_coef * entropy)
        return {
            "wm.reconstruction": logged["WorldModel/reconstruction_loss"],
            "wm.reward": logged["WorldModel/reward_loss"], "wm.termination": logged["WorldModel/termination_loss"],
            "wm.dynamics": logged["WorldModel/dynamics_loss"],
            "wm.representation": logged["WorldModel/representation_loss"],
            "wm.kl": logged["WorldModel/dynamics_real_kl_div"], "wm.loss": logged["WorldModel/total_loss"],
            "imagine.states": latent.clone(), "imagine.actions": action.clone(), "imagine.rewards": reward.clone(),
            "imagine.continues": 1.0 - termination, "lambda_returns": value_returns,
            "slow_lambda_returns": slow_returns,
            "ac.policy": logged["ActorCritic/policy_loss"], "ac.value": logged["ActorCritic/value_loss"],
            "ac.entropy": entropy, "ac.return_scale": logged["ActorCritic/norm_ratio"],
            "ac.loss": logged["ActorCritic/total_loss"],
            "ac.slow_value_reg": slow_reg,
        }


def _detached(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _detached(v) for k, v in value.items()}
    if isinstance(value, Tensor):
        return value.detach().clone()
    return value

