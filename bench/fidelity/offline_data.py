"""What the offline adapters (TD3+BC, IQL, CQL) share: a small synthetic D4RL-schema dataset, the batches drawn
from it by index (the same rows for both sides), gradients captured at each optimizer step, and the maps between
rlkit's stacked layers and a reference's per-layer ``Linear`` weights.

Nothing here is a reference's code: these are the harness's views of rlkit's own modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from rlkit.nets.mlp import EnsembleLinear

#: Hopper's sizes (11-d states, 3-d actions); the networks keep rlkit's configured widths
OBS_DIM, ACT_DIM = 11, 3
DATASET_SIZE, BATCH_SIZE = 2000, 64


def synthetic_d4rl(seed: int = 0, n: int = DATASET_SIZE, obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM
                   ) -> dict[str, np.ndarray]:
    """D4RL arrays (float32 like the real datasets) laid out as episodes: within an episode each row's next
    state is the next row's state; an episode ends on a terminal flag (~2% of rows) or a timeout (every 200
    rows), after which a fresh state starts.  States have per-dimension offsets and scales (so that
    standardisation matters); actions lie inside (-1, 1) away from the ends (finite ``atanh``)."""
    rng = np.random.default_rng(seed)
    offset, scale = rng.normal(size=obs_dim) * 3.0, np.exp(rng.normal(size=obs_dim))
    terminals = rng.random(n) < 0.02
    timeouts = np.zeros(n, dtype=bool)
    timeouts[199::200] = True
    timeouts &= ~terminals
    states = np.empty((n + 1, obs_dim))
    next_obs = np.empty((n, obs_dim))
    states[0] = rng.normal(size=obs_dim) * scale + offset
    for i in range(n):
        next_obs[i] = states[i] + 0.1 * rng.normal(size=obs_dim) * scale
        ends = terminals[i] or timeouts[i]
        states[i + 1] = rng.normal(size=obs_dim) * scale + offset if ends else next_obs[i]
    return {
        "observations": states[:n].astype(np.float32),
        "actions": rng.uniform(-0.95, 0.95, size=(n, act_dim)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
        "next_observations": next_obs.astype(np.float32),
    }


def rlkit_dataset(arrays: Mapping[str, np.ndarray]) -> Any:
    """The arrays as rlkit's :class:`~rlkit.data.dataset.Dataset` (for ``algo.on_dataset``)."""
    from rlkit.data.dataset import Dataset

    return Dataset(**{k: np.asarray(v) for k, v in arrays.items()}, provenance={"source": "synthetic"})


def batch_indices(step: int, n: int = DATASET_SIZE, size: int = BATCH_SIZE) -> np.ndarray:
    """Row indices of update ``step``'s batch (seeded by the step, so both sides read the same rows)."""
    return np.random.default_rng(10_000 + step).integers(0, n, size=size)


def rlkit_batch(arrays: Mapping[str, np.ndarray], idx: np.ndarray, dtype: torch.dtype = torch.float64) -> Any:
    """rlkit's :class:`~rlkit.replay.Batch` of rows ``idx`` (raw states, env-scale actions, unit weights)."""
    from rlkit.replay import Batch

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype)

    return Batch(obs=t(arrays["observations"][idx]), action=t(arrays["actions"][idx]),
                 reward=t(arrays["rewards"][idx]), next_obs=t(arrays["next_observations"][idx]),
                 terminated=t(arrays["terminals"][idx]), indices=torch.as_tensor(idx),
                 weights=torch.ones(len(idx), dtype=dtype))


class GradTap:
    """Gradients of the named parameters as they are when their optimizer steps (a step pre-hook), so each
    network's gradient is compared at the moment it is used, whatever else later accumulates into ``.grad``."""

    def __init__(self) -> None:
        self.grads: dict[str, dict[str, torch.Tensor]] = {}
        self._handles: list[Any] = []

    def watch(self, name: str, optimizer: torch.optim.Optimizer, params: Mapping[str, torch.Tensor]) -> None:
        """Record ``params`` (name -> tensor) under ``name`` each time ``optimizer`` steps."""
        def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            self.grads[name] = {k: (torch.zeros_like(p) if p.grad is None else p.grad.detach().clone())
                                for k, p in params.items()}
        self._handles.append(optimizer.register_step_pre_hook(hook))

    def take(self) -> dict[str, dict[str, torch.Tensor]]:
        """The gradients recorded since the last call (and forget them)."""
        out, self.grads = self.grads, {}
        return out


def linear_layers(module: nn.Module) -> list[nn.Module]:
    """The ``Linear``/``EnsembleLinear`` layers of ``module`` in forward order."""
    return [m for m in module.modules() if isinstance(m, nn.Linear | EnsembleLinear)]


def member_layers(ensemble: nn.Module, member: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[(W (out, in), b (out,)), ...]`` of one member of a stacked ensemble, as ``nn.Linear`` lays them out
    (views of rlkit's ``(E, in, out)`` weights and ``(E, 1, out)`` biases)."""
    return [(layer.weight[member].T, layer.bias[member, 0]) for layer in linear_layers(ensemble)]


def mlp_layers(mlp: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[(W (out, in), b (out,)), ...]`` of a plain MLP (``nn.Linear`` layers in order)."""
    return [(layer.weight, layer.bias) for layer in linear_layers(mlp)]


def copy_layers(src: Iterable[tuple[torch.Tensor, torch.Tensor]], dst: Iterable[nn.Linear]) -> None:
    """Copy ``(W, b)`` pairs into ``nn.Linear`` layers (shapes must agree)."""
    src, dst = list(src), list(dst)
    if len(src) != len(dst):
        raise ValueError(f"{len(src)} layers here, {len(dst)} in the reference")
    with torch.no_grad():
        for (w, b), layer in zip(src, dst, strict=True):
            layer.weight.copy_(w)
            layer.bias.copy_(b)


def layer_dict(layers: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``{"0.w": W0, "0.b": b0, ...}`` (a structure :func:`bench.fidelity.core.difference` compares)."""
    out = {}
    for i, (w, b) in enumerate(layers):
        out[f"{i}.w"], out[f"{i}.b"] = w, b
    return out


def pairs(tensors: Mapping[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``{"l1.weight": W, "l1.bias": b, ...}`` (weight then bias per layer) -> ``[(W, b), ...]``."""
    names = list(tensors)
    if len(names) % 2 or not all(n.endswith("weight") for n in names[::2]):
        raise ValueError(f"expected weight/bias pairs, got {names}")
    return [(tensors[w], tensors[b]) for w, b in zip(names[::2], names[1::2], strict=True)]
