"""Whole-update CUDA-graph capture: one recorded kernel sequence per update *phase*, replayed each step.

A small-network update (2x256 MLPs, batch 256) launches a few hundred tiny kernels; on a GPU the Python and
launch overhead, not the arithmetic, sets its speed.  :class:`GraphedUpdate` records the forward passes,
backward passes, optimizer steps and target updates of one update into a ``torch.cuda.CUDAGraph`` and
afterwards only copies the new batch into the graph's static input tensors and replays it (PyTorch's
"whole network capture", ``torch.cuda.graphs``).

Rules the wrapped function must follow (TD3+BC's ``_step`` does):

* it only does tensor work on the device: no host synchronisation, no Python state changes (counters live
  outside and select the *phase*, e.g. "critic only" vs "critic + actor + targets" under a policy delay);
* its optimizers are passed in: they are switched to ``capturable`` mode (step counts on the device)
  before the first warm-up call;
* its random numbers come from PyTorch's CUDA generator (graph-safe: each replay advances the offset), so
  replays draw fresh noise, but not the same numbers an eager run would draw.

Each phase (and each distinct set of batch keys/shapes) gets ``warmup`` eager calls on a side stream
(real updates on the real batches, as in the eager path) before it is recorded; the recording call's
update is then done by the first replay, so every call is exactly one update.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch

from rlkit.errors import ConfigError
from rlkit.replay.batch import Batch


def require_cuda(device: torch.device, option: str = "algo.cuda_graph") -> None:
    """Refuse CUDA-graph capture off CUDA (one-line ConfigError naming the fix)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        raise ConfigError(f"{option}=true needs a CUDA device (got {device}); set {option}=false or device=cuda")


class GraphedUpdate:
    """``fn(batch, *phase) -> outputs`` recorded once per (phase, batch layout), then replayed.

    ``batch`` is a mapping of tensors (nested mappings and a :class:`Batch`'s ``policy_batch`` allowed); the
    outputs are tensors in dicts, tuples, NamedTuples or dataclasses; replays return clones of the
    graph's static outputs, so a caller may keep them across steps.
    """

    def __init__(self, fn: Callable[..., Any], optimizers: Sequence[torch.optim.Optimizer] = (),
                 warmup: int = 3) -> None:
        self.fn, self.warmup, self.optimizers = fn, int(warmup), list(optimizers)
        self._eager_calls: dict[Hashable, int] = {}
        self._graphs: dict[Hashable, tuple[list[torch.Tensor], torch.cuda.CUDAGraph, Any]] = {}
        self._stream: torch.cuda.Stream | None = None

    @staticmethod
    def _layout(batch: Mapping[str, Any]) -> tuple[list[torch.Tensor], Hashable]:
        leaves = _tensors(batch)
        return leaves, (_structure(batch), tuple((t.shape, t.dtype, t.device) for t in leaves))

    def __call__(self, batch: Mapping[str, Any], *phase: Hashable) -> Any:
        leaves, layout = self._layout(batch)
        key = (phase, layout)
        if key in self._graphs:
            static_in, graph, static_out = self._graphs[key]
            for dst, src in zip(static_in, leaves):
                dst.copy_(src, non_blocking=True)
            graph.replay()
            return _clone(static_out)
        if self._stream is None:
            self._stream = torch.cuda.Stream()
        make_capturable(self.optimizers)
        done = self._eager_calls.get(key, 0)
        if done < self.warmup:  # eager warm-up on a side stream (allocator, cuBLAS handles, lazy state)
            self._eager_calls[key] = done + 1
            self._stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self._stream):
                out = self.fn(batch, *phase)
            torch.cuda.current_stream().wait_stream(self._stream)
            return out
        static_in = [t.clone() for t in leaves]
        static_batch = _rebuild(batch, iter(static_in))
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            static_out = self.fn(static_batch, *phase)
        self._graphs[key] = (static_in, graph, static_out)
        return self(batch, *phase)  # recording ran no kernels: the first replay does this call's update


def make_capturable(optimizers: Sequence[torch.optim.Optimizer]) -> None:
    """Put the optimizers in capturable mode (step counts on the parameters' device).  Needed again after
    ``load_state_dict``, which restores the saved ``capturable`` flag (e.g. from an eager run's checkpoint)."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["capturable"] = True
        for param, state in opt.state.items():
            step = state.get("step") if isinstance(state, dict) else None
            if isinstance(step, torch.Tensor) and step.device != param.device:
                state["step"] = step.to(device=param.device, dtype=torch.float32)


def _policy_batch(batch: Mapping[str, Any]) -> Batch | None:
    """The decoupled policy batch a :class:`Batch` carries beside its columns (None for other mappings)."""
    return batch.policy_batch if isinstance(batch, Batch) else None


def _tensors(batch: Mapping[str, Any]) -> list[torch.Tensor]:
    """The batch's tensors in key order, nested mappings depth first, then its policy batch's."""
    out: list[torch.Tensor] = []
    for value in batch.values():
        if isinstance(value, Mapping):
            out.extend(_tensors(value))
        elif isinstance(value, torch.Tensor):
            out.append(value)
    policy = _policy_batch(batch)
    if policy is not None:
        out.extend(_tensors(policy))
    return out


def _structure(batch: Mapping[str, Any]) -> Hashable:
    """Keys, nesting and non-tensor values: two batches with the same structure share a graph."""
    policy = _policy_batch(batch)
    return (tuple((k, _structure(v) if isinstance(v, Mapping) else ("T" if isinstance(v, torch.Tensor) else v))
                  for k, v in batch.items()), None if policy is None else _structure(policy))


def _rebuild(batch: Mapping[str, Any], tensors) -> Mapping[str, Any]:
    """A copy of ``batch`` (same mapping classes) with its tensors taken in order from ``tensors``."""
    items = {}
    for key, value in batch.items():
        if isinstance(value, Mapping):
            items[key] = _rebuild(value, tensors)
        elif isinstance(value, torch.Tensor):
            items[key] = next(tensors)
        else:
            items[key] = value
    copy = type(batch)(items)
    policy = _policy_batch(batch)
    if policy is not None:
        copy.policy_batch = _rebuild(policy, tensors)
    return copy


def _clone(out: Any) -> Any:
    """A copy of the graph's outputs (tensors cloned), so the next replay cannot overwrite what was returned."""
    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, Mapping):
        return type(out)({k: _clone(v) for k, v in out.items()})
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        return type(out)(*(_clone(v) for v in out))
    if isinstance(out, list | tuple):
        return type(out)(_clone(v) for v in out)
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return dataclasses.replace(out, **{f.name: _clone(getattr(out, f.name)) for f in dataclasses.fields(out)
                                           if f.init})
    return out
