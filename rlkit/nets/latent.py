"""Pixel encoders and K-step latent transition models shared by the representation-learning agents
(SPR, VCR) -- one interface, two action kinds.

Encoders (``[N, C, H, W]`` float in [0, 1] -> latent):

* :class:`NatureEncoder` -- the DQN "Nature" CNN (Mnih et al. 2015): Conv 8x8/4 (32), Conv 4x4/2 (64),
  Conv 3x3/1 (64), ReLU after each -> ``64 x 7 x 7`` at 84x84 input; optional per-sample min-max
  renormalisation ``(x - min) / (max - min)`` over all features (SPR, Schwarzer et al. 2021, App. D);
* :class:`DrQEncoder` -- DrQ's encoder (Kostrikov et al. 2021, App. B; the SAC-AE conv stack of
  Yarats et al. 2021): Conv 3x3/2 then ``layers - 1`` Conv 3x3/1 (32 channels, ReLU), flatten,
  Linear -> LayerNorm -> tanh to ``feature_dim`` (50).

Transition models (``step(z, a) -> z'``; ``rollout(z_0, a_{0..K-1}) -> z_{0..K}`` stacked on axis 1):

* :class:`ConvTransition` -- SPR's model for discrete actions: ``[z, onehot(a)]`` (the action broadcast as
  ``A`` constant planes) -> Conv 3x3 (64) -> ReLU -> BatchNorm -> Conv 3x3 (64) -> ReLU, renormalised;
* :class:`MLPTransition` -- for continuous actions on a vector latent: ``[z, a]`` -> MLP -> ``z'``, with an
  optional LayerNorm + tanh squash so that ``z'`` lives where the encoder's features do;
* :class:`TransformerTransition` -- either action kind, either latent: the causal transformer of
  :mod:`rlkit.nets.transformer` (every attention kind and norm) over one token per replayed action, each
  token also carrying ``z_0``; all K predictions come from one parallel pass, and stepping one action
  at a time goes through the attention kind's rollout state with the same result.

Stepping: :meth:`TransitionModel.begin` ``(z_0) -> state`` and :meth:`TransitionModel.advance`
``(state, a) -> (z', state)`` step any model one action at a time (for the conv and MLP models the state is
the last latent); :meth:`TransitionModel.rollout` is the K-step pass the losses use.
:func:`make_transition` builds the model ``algo.transition`` names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlkit.errors import ConfigError
from rlkit.nets.mlp import MLP
from rlkit.nets.transformer import CausalTransformer, TransformerConfig, TransformerState

TRANSITIONS = ("conv", "mlp", "transformer")


def renormalize(x: Tensor) -> Tensor:
    """Per-sample min-max scaling of all non-batch features to [0, 1]: ``(x - min) / (max - min)``, with no
    epsilon in the denominator, as mila-iqia/spr's ``src/models.py`` ``renormalize``."""
    flat = x.flatten(1)
    low, high = flat.min(1, keepdim=True)[0], flat.max(1, keepdim=True)[0]
    return ((flat - low) / (high - low)).view_as(x)


class NatureEncoder(nn.Module):
    """Nature-CNN feature map (module docstring); ``renorm`` applies :func:`renormalize` to the output."""

    def __init__(self, in_channels: int, channels: Sequence[int] = (32, 64, 64),
                 kernels: Sequence[int] = (8, 4, 3), strides: Sequence[int] = (4, 2, 1), renorm: bool = True) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        prev = in_channels
        for c, k, s in zip(channels, kernels, strides):
            mods += [nn.Conv2d(prev, c, k, s), nn.ReLU()]
            prev = c
        self.net = nn.Sequential(*mods)
        self.renorm = renorm
        self.out_channels = prev

    def forward(self, x: Tensor) -> Tensor:
        z = self.net(x)
        return renormalize(z) if self.renorm else z

    def output_shape(self, in_shape: Sequence[int]) -> tuple[int, int, int]:
        with torch.no_grad():
            return tuple(self.net(torch.zeros(1, *in_shape)).shape[1:])  # type: ignore[return-value]


class DrQEncoder(nn.Module):
    """DrQ's conv encoder + Linear/LayerNorm/tanh trunk (module docstring): ``[N, C, H, W]`` -> ``[N, feature_dim]``."""

    def __init__(self, in_shape: Sequence[int], channels: int = 32, layers: int = 4, feature_dim: int = 50) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_shape[0], channels, 3, stride=2), nn.ReLU()]
        for _ in range(layers - 1):
            mods += [nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU()]
        self.convs = nn.Sequential(*mods)
        with torch.no_grad():
            flat = int(self.convs(torch.zeros(1, *in_shape)).numel())
        self.trunk = nn.Sequential(nn.Linear(flat, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        self.feature_dim = feature_dim

    def conv_features(self, x: Tensor) -> Tensor:
        return self.convs(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.trunk(self.conv_features(x))


class TransitionModel(nn.Module):
    """Interface: ``step(z, a) -> z'``; :meth:`begin` / :meth:`advance` step one action at a time through a
    rollout state; :meth:`rollout` predicts K latents along replayed actions."""

    def step(self, z: Tensor, action: Tensor) -> Tensor:
        raise NotImplementedError

    def begin(self, z0: Tensor) -> Any:
        """Rollout state before the first action (Markov models: the latent itself)."""
        return z0

    def advance(self, state: Any, action: Tensor) -> tuple[Tensor, Any]:
        """One action ``[B, ...]`` -> (next latent, next state)."""
        z = self.step(state, action)
        return z, z

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """``z_0`` ``[B, ...]`` and actions ``[B, K, ...]`` -> ``[B, K + 1, ...]`` = ``z_0, T(z_0, a_0), ...``."""
        out = [z0]
        state = self.begin(z0)
        for k in range(actions.shape[1]):
            z, state = self.advance(state, actions[:, k])
            out.append(z)
        return torch.stack(out, dim=1)


class ConvTransition(TransitionModel):
    """SPR's convolutional transition model for discrete actions (module docstring)."""

    def __init__(self, channels: int, action_dim: int, hidden: int = 64, renorm: bool = True) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.net = nn.Sequential(
            nn.Conv2d(channels + action_dim, hidden, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(hidden),
            nn.Conv2d(hidden, channels, 3, padding=1), nn.ReLU(),
        )
        self.renorm = renorm

    def step(self, z: Tensor, action: Tensor) -> Tensor:
        planes = F.one_hot(action.long(), self.action_dim).to(z.dtype)[:, :, None, None]
        x = torch.cat([z, planes.expand(-1, -1, *z.shape[-2:])], dim=1)
        out = self.net(x)
        return renormalize(out) if self.renorm else out


class MLPTransition(TransitionModel):
    """``z' = squash(MLP([z, a]))`` for continuous actions (module docstring); ``squash``: LayerNorm + tanh."""

    def __init__(self, latent_dim: int, action_dim: int, hidden: Sequence[int] = (1024,), squash: bool = True) -> None:
        super().__init__()
        self.net = MLP(latent_dim + action_dim, hidden, latent_dim)
        self.squash = nn.Sequential(nn.LayerNorm(latent_dim), nn.Tanh()) if squash else nn.Identity()

    def step(self, z: Tensor, action: Tensor) -> Tensor:
        return self.squash(self.net(torch.cat([z, action.to(z.dtype)], dim=-1)))


class TransformerTransition(TransitionModel):
    """K-step latent prediction with a causal transformer (module docstring) [ours: neither SPR nor VCR
    uses one; STORM's sequence model on SPR's open-loop prediction task].

    Tokens, one per action of the window: ``x_k = E_z(z_0) + E_a(a_k)``, where ``E_z`` is a Linear on the
    flattened latent (Atari's 64x7x7 conv map or DMC's feature vector) and ``E_a`` an embedding (discrete)
    or a Linear (continuous); positions come from the transformer. Every token carries ``z_0`` so that a
    sliding window shorter than K still sees it. The
    prediction ``z_hat_{k+1} = out(D(h_k))``, ``D`` a Linear back to the latent's shape and ``out`` the
    latent's own range (``renorm``: SPR's per-sample min-max, as :class:`ConvTransition`; ``squash``:
    LayerNorm + tanh, as :class:`MLPTransition`; ``none``). ``h_k`` sees ``z_0`` and ``a_0..a_k`` only, so
    ``z_hat_{k+1}`` depends on what SPR's ``T^{k+1}(z_0, a_0..a_k)`` depends on and the SPR / VCR losses
    read it unchanged; since no token depends on a prediction, :meth:`rollout` is one parallel pass and
    equals stepping with :meth:`advance` through the attention kind's rollout state (KV cache, recurrent
    state or sliding window)."""

    OUTPUTS = ("renorm", "squash", "none")

    def __init__(self, latent_shape: Sequence[int], action_dim: int, discrete: bool,
                 config: TransformerConfig, output: str = "renorm") -> None:
        super().__init__()
        if output not in self.OUTPUTS:
            raise ConfigError(f"transformer transition output={output!r}; use one of {self.OUTPUTS}")
        self.latent_shape = tuple(int(d) for d in latent_shape)
        self.discrete, self.output = bool(discrete), output
        flat, d = math.prod(self.latent_shape), config.d_model
        self.latent_in = nn.Linear(flat, d)
        self.action_in = nn.Embedding(action_dim, d) if discrete else nn.Linear(action_dim, d)
        self.core = CausalTransformer(config)
        self.latent_out = nn.Linear(d, flat)
        self.squash = nn.Sequential(nn.LayerNorm(flat), nn.Tanh()) if output == "squash" else None

    def _action_tokens(self, actions: Tensor) -> Tensor:
        if self.discrete:
            return self.action_in(actions.long())
        return self.action_in(actions.to(self.latent_in.weight.dtype))

    def _decode(self, h: Tensor) -> Tensor:
        z = self.latent_out(h)
        if self.squash is not None:
            z = self.squash(z)
        z = z.view(*h.shape[:-1], *self.latent_shape)
        if self.output == "renorm":
            z = renormalize(z.flatten(0, -len(self.latent_shape) - 1)).view_as(z)
        return z

    def predict(self, z0: Tensor, actions: Tensor) -> Tensor:
        """``z_hat_1..z_hat_K`` ``[B, K, *latent]`` in one parallel pass (``K >= 1``)."""
        tokens = self._action_tokens(actions) + self.latent_in(z0.flatten(1))[:, None]
        return self._decode(self.core(tokens))

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        if actions.shape[1] == 0:
            return z0[:, None]
        return torch.cat([z0[:, None], self.predict(z0, actions)], dim=1)

    def begin(self, z0: Tensor) -> tuple[Tensor, TransformerState]:
        """(``E_z(z_0)``, added to every action's token; the empty transformer state)."""
        embedded = self.latent_in(z0.flatten(1))
        return embedded, self.core.init_state(len(z0), device=z0.device, dtype=embedded.dtype)

    def advance(self, state: tuple[Tensor, TransformerState], action: Tensor
                ) -> tuple[Tensor, tuple[Tensor, TransformerState]]:
        latent, core_state = state
        h, core_state = self.core.step(self._action_tokens(action) + latent, core_state)
        return self._decode(h), (latent, core_state)

    def step(self, z: Tensor, action: Tensor) -> Tensor:
        """``z_hat_1`` from ``z`` and one action (a fresh rollout)."""
        return self.advance(self.begin(z), action)[0]


def make_transition(kind: str, latent_shape: Sequence[int], action_dim: int, *, discrete: bool, horizon: int,
                    hidden: int | Sequence[int], renorm: bool = True,
                    transformer: Mapping[str, Any] | None = None) -> TransitionModel:
    """The transition model ``algo.transition`` names: ``conv`` (:class:`ConvTransition`, discrete actions on a
    conv map, width ``hidden``), ``mlp`` (:class:`MLPTransition`, a vector latent, hidden sizes ``hidden``) or
    ``transformer`` (:class:`TransformerTransition` with ``TransformerConfig(**transformer)``, either; its
    ``max_len`` must cover the ``horizon`` K). Conv maps leave renormalised (``renorm``), vectors squashed."""
    shape = tuple(int(d) for d in latent_shape)
    if kind not in TRANSITIONS:
        raise ConfigError(f"algo.transition={kind!r} is unknown; use one of {', '.join(TRANSITIONS)}")
    if kind == "conv":
        if len(shape) != 3 or not discrete:
            raise ConfigError("algo.transition=conv needs discrete actions on a conv latent (atari100k-<game>); "
                              "use mlp or transformer here")
        return ConvTransition(shape[0], action_dim, int(hidden), renorm=renorm)
    if kind == "mlp":
        if len(shape) != 1 or discrete:
            raise ConfigError("algo.transition=mlp needs continuous actions on a vector latent (dmc-<domain>_<task>); "
                              "use conv or transformer here")
        return MLPTransition(shape[0], action_dim, tuple(hidden))
    try:
        cfg = TransformerConfig(**dict(transformer or {}))
    except TypeError as exc:
        raise ConfigError(f"algo.transformer has an unknown key ({exc}); valid keys are the fields of "
                          "rlkit.nets.transformer.TransformerConfig") from None
    if cfg.positions == "learned" and horizon > cfg.max_len:
        raise ConfigError(f"algo.transformer.max_len={cfg.max_len} is shorter than the prediction depth {horizon}; "
                          f"raise it to >= {horizon}")
    output = ("renorm" if renorm else "none") if len(shape) == 3 else "squash"
    return TransformerTransition(shape, action_dim, discrete, cfg, output)
