"""STORM's networks (Zhang et al. 2023; layer layout of the authors' released code): the categorical VAE, the
token stem around the shared :class:`~rlkit.nets.transformer.CausalTransformer`, the reward / termination heads,
actor and critic.

Layouts at the paper size (64x64x3 frames, ``encoder_channels = (32, 64, 128, 256)``, 32x32 latent,
``d_model = 512``), with the parameter counts computed from that layer layout (asserted in ``tests/test_storm.py``):

* encoder: per channel entry one [Conv 4x4 stride 2 pad 1 without bias, BatchNorm, ReLU]; 64 -> 4 pixels
  (690,624); posterior head Linear(256*4*4 -> 32*32) with bias (4,195,328), then unimix;
* decoder: Linear(1024 -> 256*4*4) without bias, BN, ReLU; ConvT 4x4/2/1 without bias + BN + ReLU back to
  32 channels; ConvT 32 -> 3 with bias, linear output (4,884,931). It reads the posterior sample only;
* token stem: Linear(1024 + A -> 512) no bias, LN, ReLU, Linear(512 -> 512) no bias, LN; with the
  2-layer post-norm transformer 5,032,960 parameters for A = 18;
* prior head Linear(512 -> 1024) with bias (525,312), then unimix;
* reward head 2 x [Linear no bias, LN, ReLU] + Linear(512 -> 255) (657,151); termination head the same
  trunk + Linear(512 -> 1) (526,849);
* actor 2 x [Linear no bias, LN, ReLU] + Linear(512 -> A) on s = [z, h] (1536 wide; 1,059,858 for
  A = 18); critic the same trunk + Linear(512 -> 255) (1,181,439).

Smaller images and widths keep the structure: each ``encoder_channels`` entry halves the image, so a
16x16 frame with ``(16, 32)`` ends at 4x4 like the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlkit.errors import ConfigError
from rlkit.nets.heads import TwoHotSymlog, straight_through_sample, unimix_logits
from rlkit.nets.slide2d import SLIDE_FORMS, SlideBlock2d
from rlkit.nets.transformer import CausalTransformer, TransformerConfig, TransformerState


def trunk_mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """``layers`` x [Linear without bias, LayerNorm, ReLU] then Linear(hidden -> out_dim) with bias."""
    mods: list[nn.Module] = []
    prev = in_dim
    for _ in range(layers):
        mods += [nn.Linear(prev, hidden, bias=False), nn.LayerNorm(hidden), nn.ReLU()]
        prev = hidden
    mods.append(nn.Linear(prev, out_dim))
    return nn.Sequential(*mods)


ENCODER_ATTENTIONS = ("none", "slide")


class ConvEncoder(nn.Module):
    """[Conv 4x4/2/1 no bias, BatchNorm, ReLU] per entry of ``channels``; [N, C, S, S] -> [N, features].

    ``attention='slide'``: a 2-D Slide Attention block (Pan et al. 2023; :class:`SlideBlock2d`, 3x3
    neighbourhood, one head per 32 channels) after conv stage ``attention_stage`` (0-based); ``slide_form``
    'ours' (attention sublayer only) or 'released' (the authors' Slide-Swin block, see :mod:`rlkit.nets.slide2d`)."""

    def __init__(
        self, in_channels: int, channels: Sequence[int], attention: str = "none", attention_stage: int = 1,
        slide_form: str = "ours",
    ) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        prev = in_channels
        for i, c in enumerate(channels):
            mods += [nn.Conv2d(prev, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            if attention == "slide" and i == attention_stage:
                heads = max(1, c // 32)
                mods.append(SlideBlock2d(c, heads=heads if c % heads == 0 else 1, form=slide_form))
            prev = c
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1)


class ConvDecoder(nn.Module):
    """Linear(latent -> c_last*f*f) no bias, BN, ReLU; ConvT no bias + BN + ReLU down the channel list;
    ConvT(c_first -> out_channels) with bias and linear output (STORM's released decoder)."""

    def __init__(self, latent_dim: int, out_channels: int, channels: Sequence[int], feature_size: int) -> None:
        super().__init__()
        channels = list(channels)
        self.c_last, self.f = channels[-1], feature_size
        self.stem = nn.Linear(latent_dim, channels[-1] * feature_size**2, bias=False)
        mods: list[nn.Module] = [nn.BatchNorm2d(channels[-1]), nn.ReLU()]
        for c_in, c_out in zip(channels[::-1][:-1], channels[::-1][1:]):
            mods += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        mods.append(nn.ConvTranspose2d(channels[0], out_channels, 4, 2, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.stem(z).view(-1, self.c_last, self.f, self.f))


@dataclass
class WorldModelConfig:
    """Sizes of :class:`WorldModel`; defaults are the paper's (STORM's released config)."""

    obs_shape: tuple[int, int, int] = (64, 64, 3)  # H, W, C (uint8 frames, channels last)
    action_dim: int = 18
    encoder_channels: tuple[int, ...] = (32, 64, 128, 256)
    latent_vars: int = 32
    latent_classes: int = 32
    unimix: float = 0.01
    head_hidden: int = 512
    head_layers: int = 2
    reward_bins: int = 255
    reward_low: float = -20.0
    reward_high: float = 20.0
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    encoder_attention: str = "none"
    encoder_attention_stage: int = 1
    encoder_slide_form: str = "ours"

    def __post_init__(self) -> None:
        h, w, _ = self.obs_shape
        n = len(self.encoder_channels)
        if self.encoder_attention not in ENCODER_ATTENTIONS:
            raise ConfigError(f"algo.encoder_attention={self.encoder_attention!r}; use one of {ENCODER_ATTENTIONS}")
        if self.encoder_slide_form not in SLIDE_FORMS:
            raise ConfigError(f"algo.encoder_slide_form={self.encoder_slide_form!r}; use one of {SLIDE_FORMS}")
        if self.encoder_attention != "none" and not 0 <= self.encoder_attention_stage < n:
            raise ConfigError(f"algo.encoder_attention_stage={self.encoder_attention_stage} must name one of the "
                              f"{n} encoder stages (0..{n - 1})")
        if h != w or n < 1 or h % (2**n) or h // 2**n < 1:
            raise ConfigError(
                f"STORM needs square frames whose side is divisible by 2^len(encoder_channels); got "
                f"{self.obs_shape} with {n} encoder layers (the paper: 64x64x3 and 4 layers)"
            )

    @property
    def feature_size(self) -> int:
        return self.obs_shape[0] // 2 ** len(self.encoder_channels)

    @property
    def latent_dim(self) -> int:
        return self.latent_vars * self.latent_classes

    @property
    def state_dim(self) -> int:
        """Width of the agent state s = [z, h]."""
        return self.latent_dim + self.transformer.d_model


class WorldModel(nn.Module):
    """Categorical VAE + fused-token causal transformer + prior, reward and termination heads."""

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.obs_shape[2]
        d = cfg.transformer.d_model
        self.encoder = ConvEncoder(c, cfg.encoder_channels, cfg.encoder_attention, cfg.encoder_attention_stage,
                                   cfg.encoder_slide_form)
        features = cfg.encoder_channels[-1] * cfg.feature_size**2
        self.posterior_head = nn.Linear(features, cfg.latent_dim)
        self.decoder = ConvDecoder(cfg.latent_dim, c, cfg.encoder_channels, cfg.feature_size)
        self.stem = nn.Sequential(
            nn.Linear(cfg.latent_dim + cfg.action_dim, d, bias=False), nn.LayerNorm(d), nn.ReLU(),
            nn.Linear(d, d, bias=False), nn.LayerNorm(d),
        )
        self.transformer = CausalTransformer(cfg.transformer)
        self.prior_head = nn.Linear(d, cfg.latent_dim)
        self.reward_head = trunk_mlp(d, cfg.head_hidden, cfg.head_layers, cfg.reward_bins)
        self.termination_head = trunk_mlp(d, cfg.head_hidden, cfg.head_layers, 1)
        self.two_hot = TwoHotSymlog(cfg.reward_bins, cfg.reward_low, cfg.reward_high)

    # ------------------------------------------------------------------ latents
    def _latent_logits(self, raw: Tensor) -> Tensor:
        cfg = self.cfg
        return unimix_logits(raw.view(*raw.shape[:-1], cfg.latent_vars, cfg.latent_classes), cfg.unimix)

    def posterior_logits(self, obs: Tensor) -> Tensor:
        """uint8 frames [..., H, W, C] -> unimixed posterior logits [..., K, C] (float32; float64 for a
        float64 model)."""
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).permute(0, 3, 1, 2).to(self.posterior_head.weight.dtype).div_(255.0)
        return self._latent_logits(self.posterior_head(self.encoder(x)).view(*lead, -1))

    def prior_logits(self, h: Tensor) -> Tensor:
        """h [..., d_model] -> unimixed prior logits of the next latent [..., K, C]."""
        return self._latent_logits(self.prior_head(h))

    @staticmethod
    def sample(logits: Tensor) -> Tensor:
        """Straight-through one-hot sample, flattened to [..., K*C]."""
        return straight_through_sample(logits).flatten(-2)

    def decode(self, z: Tensor) -> Tensor:
        """Posterior samples [..., K*C] -> reconstructed frames [..., C, H, W] (linear output)."""
        lead = z.shape[:-1]
        out = self.decoder(z.reshape(-1, z.shape[-1]))
        return out.view(*lead, *out.shape[1:])

    # ------------------------------------------------------------------ sequence model
    def tokens(self, z: Tensor, action: Tensor) -> Tensor:
        """One fused token per step: stem(concat[z, onehot(a)])."""
        onehot = F.one_hot(action.long(), self.cfg.action_dim).to(z.dtype)
        return self.stem(torch.cat([z, onehot], dim=-1))

    def sequence(self, z: Tensor, action: Tensor) -> Tensor:
        """Parallel causal pass: h [B, T, d_model], h_t sees (z_<=t, a_<=t)."""
        return self.transformer(self.tokens(z, action))

    def prefill(self, z: Tensor, action: Tensor, capacity: int) -> tuple[Tensor, TransformerState]:
        """Context pass that also returns the KV cache for :meth:`step`."""
        return self.transformer.prefill(self.tokens(z, action), capacity=capacity)

    def step(self, z: Tensor, action: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState]:
        """One new token (z [B, K*C], a [B]) through the cache -> h [B, d_model]."""
        return self.transformer.step(self.tokens(z, action), state)

    # ------------------------------------------------------------------ heads
    def reward_logits(self, h: Tensor) -> Tensor:
        return self.reward_head(h)

    def termination_logit(self, h: Tensor) -> Tensor:
        return self.termination_head(h)[..., 0]

    def reward(self, h: Tensor) -> Tensor:
        """Decoded reward prediction symexp(E[bins])."""
        return self.two_hot.decode(self.reward_head(h))


class ActorCritic(nn.Module):
    """Separate actor (categorical logits) and critic (two-hot logits) MLPs on s = [z, h] (STORM's released agent)."""

    def __init__(self, state_dim: int, action_dim: int, hidden: int = 512, layers: int = 2,
                 bins: int = 255) -> None:
        super().__init__()
        self.actor = trunk_mlp(state_dim, hidden, layers, action_dim)
        self.critic = trunk_mlp(state_dim, hidden, layers, bins)
