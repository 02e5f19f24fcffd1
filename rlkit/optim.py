"""Optimizers: Adam with the fastest implementation the device supports (fused kernels on CUDA and on CPU in
recent PyTorch, else the multi-tensor ``foreach`` path), so no update pays a Python loop over parameters; and
:func:`step`, the one ``zero_grad; backward; step`` every algorithm's update uses."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def adam(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0,
         betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, capturable: bool = False) -> torch.optim.Adam:
    """Adam (Kingma & Ba 2015), fused where supported.  ``capturable=True`` keeps the step count on the
    device so the step can be recorded in a CUDA graph (:mod:`rlkit.cuda_graph`)."""
    params = list(params)
    kwargs = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
    if capturable:
        kwargs["capturable"] = True
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # fused unsupported for this device/dtype
        return torch.optim.Adam(params, foreach=True, **kwargs)


def adamw(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 1e-2) -> torch.optim.AdamW:
    params = list(params)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor,
         params: Iterable[torch.Tensor] | None = None) -> None:
    """``zero_grad; backward; step``.  With ``params`` the backward accumulates gradients into those
    tensors only (e.g. the actor's, when the actor loss runs through a critic that has its own optimizer),
    which skips the other networks' weight gradients."""
    optimizer.zero_grad(set_to_none=True)
    if params is None:
        loss.backward()
    else:
        loss.backward(inputs=params if isinstance(params, list | tuple) else list(params))
    optimizer.step()
