"""The shared shape of a single-block check (SiameseNorm, slide attention): one network block of rlkit and the
reference's block with the same parameters, trained side by side on the same random regression batches.

Each update ``k``: input ``x_k`` and target ``t_k`` drawn from ``N(0, 1)`` (seeded by ``k``, the same on both
sides), loss ``L = mean((f(x_k) - t_k)^2)``, one Adam step (lr 1e-3, the same ``torch.optim.Adam`` on both
sides: the optimizer is not under test).  Reported: the block output, the loss, the gradient of every
parameter and the parameters after the step (named by rlkit's parameter names).  float64 on both sides.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.fidelity.core import Adapter

LR = 1e-3


def import_file(path: Path, name: str) -> types.ModuleType:
    """Import the single file ``path`` as module ``name`` (for reference files whose names are not importable,
    e.g. ``deit-model-siamesenorm.py``); registered in ``sys.modules`` while it runs, as timm's model registry
    requires."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class BlockAdapter(Adapter):
    """Subclasses build ``self.ours`` / ``self.theirs`` (modules) in :meth:`build`, copy parameters in
    :meth:`copy_into_reference`, view the reference's in rlkit's names and layout in :meth:`reference_tensors`,
    and run each side in :meth:`forward_ours` / :meth:`forward_theirs`."""

    ours: nn.Module
    theirs: nn.Module
    #: rlkit parameters whose gradient is zero in exact arithmetic (a softmax attention's key bias: adding
    #: q . b_k to every score of a query leaves its softmax unchanged); their computed gradients are rounding
    #: noise on both sides, checked to be below 1e-12 and not reported (the parameters themselves are)
    zero_grads: tuple[str, ...] = ()

    @abstractmethod
    def copy_into_reference(self) -> None:
        """Copy rlkit's parameters into the reference modules (in the reference's layout)."""

    @abstractmethod
    def reference_tensors(self, grad: bool) -> dict[str, Tensor]:
        """rlkit parameter name -> the reference's parameter (or its gradient) in rlkit's layout."""

    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input batch (rlkit's layout)."""

    @abstractmethod
    def forward_ours(self, x: Tensor) -> Tensor: ...

    @abstractmethod
    def forward_theirs(self, x: Tensor) -> Tensor:
        """The reference's output for rlkit-layout input ``x``, returned in rlkit's layout."""

    def transplant(self) -> None:
        with torch.no_grad():
            self.copy_into_reference()
        theirs = [p for p in self.theirs.parameters() if p.requires_grad]
        self.opt_ours = torch.optim.Adam([p for p in self.ours.parameters() if p.requires_grad], lr=LR)
        self.opt_theirs = torch.optim.Adam(theirs, lr=LR)

    def draws(self, step: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(step)
        shape = self.input_shape()
        return {"x": torch.randn(shape, generator=g, dtype=torch.float64),
                "target": torch.randn(shape, generator=g, dtype=torch.float64)}

    def compare(self, draws: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        x, target = draws["x"], draws["target"]
        outs, losses = [], []
        for forward, opt in ((self.forward_ours, self.opt_ours), (self.forward_theirs, self.opt_theirs)):
            out = forward(x)
            loss = (out - target).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            outs.append(out.detach())
            losses.append(loss.detach())
        q: dict[str, tuple[Any, Any]] = {"output": (outs[0], outs[1]), "loss": (losses[0], losses[1])}
        ours = dict(self.ours.named_parameters())
        for k, v in self.reference_tensors(True).items():
            if k in self.zero_grads:
                noise = max(float(ours[k].grad.abs().max()), float(v.abs().max()))
                if noise > 1e-12:
                    raise ValueError(f"gradient of {k} should vanish, but it reaches {noise:.1e}")
                continue
            q[f"grad.{k}"] = (ours[k].grad.clone(), v.clone())
        self.opt_ours.step()
        self.opt_theirs.step()
        q.update({f"param.{k}": (ours[k].detach().clone(), v.detach().clone())
                  for k, v in self.reference_tensors(False).items()})
        missing = set(ours) - set(self.reference_tensors(False))
        if missing:
            raise ValueError(f"rlkit parameters without a reference counterpart: {sorted(missing)}")
        return q
