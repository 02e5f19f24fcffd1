"""Image augmentations of data-efficient pixel RL, batched on the tensor's device.

* :func:`random_shift` -- replicate-pad every side by ``pad`` pixels, then crop back to ``H x W`` at an
  integer offset ``(dy, dx) ~ U{0..2 pad}^2`` drawn per sample (DrQ, Kostrikov et al. 2021, Sec. 3.1;
  SPR, Schwarzer et al. 2021, Sec. 2.1 and App. D);
* :func:`intensity` -- ``x (1 + s clip(eps, -2, 2))`` with ``eps ~ N(0, 1)`` per sample (SPR, App. D,
  ``s = 0.05``);
* :class:`Augment` -- the configured chain, with a ``torch.Generator`` so that draws are reproducible
  under a seed and do not consume the global RNG.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from rlkit.errors import ConfigError

AUGMENTATIONS = ("shift", "intensity")


def random_shift(x: Tensor, pad: int = 4, generator: torch.Generator | None = None) -> Tensor:
    """Per-sample random translation of ``x [N, C, H, W]`` by up to ``pad`` pixels (replicate padding)."""
    if pad <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x if x.is_floating_point() else x.float(), (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device="cpu").to(x.device)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # [N, H]
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # [N, W]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def intensity(x: Tensor, scale: float = 0.05, generator: torch.Generator | None = None) -> Tensor:
    """``x (1 + scale clip(eps, -2, 2))`` with one ``eps ~ N(0, 1)`` per sample."""
    if scale <= 0:
        return x
    eps = torch.randn((x.shape[0],) + (1,) * (x.dim() - 1), generator=generator, device="cpu").to(x.device)
    return x * (1.0 + scale * eps.clamp(-2.0, 2.0))


class Augment:
    """The chain ``names`` (any of ``shift``, ``intensity``, applied in that order) on float images.

    ``seed`` seeds a private CPU generator (offsets and noise are drawn on the CPU and moved, so CPU and
    CUDA runs draw the same augmentations).
    """

    def __init__(self, names: Sequence[str] = AUGMENTATIONS, pad: int = 4, intensity_scale: float = 0.05,
                 seed: int | None = None) -> None:
        unknown = sorted(set(names) - set(AUGMENTATIONS))
        if unknown:
            raise ConfigError(f"unknown augmentation(s) {unknown}; choose from {list(AUGMENTATIONS)}")
        self.names = tuple(names)
        self.pad, self.intensity_scale = int(pad), float(intensity_scale)
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(int(seed))

    def __call__(self, x: Tensor) -> Tensor:
        """Augment ``x [N, C, H, W]`` (or ``[N, T, C, H, W]``: each of the ``N T`` frames independently)."""
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])
        if "shift" in self.names:
            x = random_shift(x, self.pad, self.generator)
        if "intensity" in self.names:
            x = intensity(x, self.intensity_scale, self.generator)
        return x.reshape(*lead, *x.shape[-3:])

    def state_dict(self) -> dict[str, Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"])
