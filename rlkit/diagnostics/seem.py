"""SEEM: the Self-Excite Eigenvalue Measure of a critic (Yue, Lu, Kang, Song, Huang, NeurIPS 2023,
arXiv 2310.04411; definition and computation as in the authors' released code, yueyang130/SEEM).

For a fixed probe set of dataset pairs ``x_i = (s_i, a_i)`` and bootstrap pairs ``x'_i = (s'_i, π(s'_i))``
(next states with the **current** policy's action), with ``φ(x) = ∇_θ Q_θ(x) / sqrt(P)`` the per-sample
gradient of one critic head (``P`` its parameter count; the scale is numerical only), one SGD step of TD
regression with step size η moves the TD errors ``δ_i = Q(x_i) - r_i - γ m_i Q(x'_i)`` as

    δ_{t+1} ≈ (I + η A_t) δ_t,   A_t = γ diag(m) Φ' Φᵀ - Φ Φᵀ,   A_t[i, j] = γ m_i ⟨φ(x'_i), φ(x_j)⟩ - ⟨φ(x_i), φ(x_j)⟩

(``Φ Φᵀ`` the empirical NTK Gram on the data, ``Φ' Φᵀ`` the cross kernel from bootstrap points to data,
``m_i = 1 - terminated_i`` the bootstrap mask).  **SEEM = max Re λ(A_t)**; positive means the critic's own
generalisation excites the TD error along that eigendirection and Q diverges.  The normalised value
``SEEM / ||A_t||_F`` is scale-free (the authors' code logs both; the paper's plots, 0 to ≈0.8, match the
normalised one [unconfirmed]).

Choices (documented deviations and decisions):

* ``m_i`` (the termination mask) is applied by default because the algorithms' TD targets apply it, so A
  describes the update that actually runs; the released code omits it (``mask_terminals=False`` restores
  that).  Without the mask, A on a transition that terminates is still ``-Φ Φᵀ`` plus an extra cross term.
* The eigenvalues are computed in float64 on the CPU (``numpy.linalg.eigvals``, LAPACK ``geev``, all of
  them: Arnoldi iteration for the rightmost eigenvalue does not converge when, as in a stable critic, it
  sits in the cluster near 0).  A is n×n (n = probe size, 2560 by default), so the transfer is small and
  the result is device-independent; the ``O(n³)`` eigensolve dominates the cost on CPU (``bench/seem.py``).
* Two ways to build the kernels, giving the same matrix up to float32 round-off:

  - ``method="jacobian"`` (any ``nn.Module`` critic): per-sample gradients with
    ``torch.func.vmap(torch.func.grad(q))`` in chunks of ``chunk`` samples, Φ held in memory
    (``n · P · 4`` bytes: 0.7 GB for n = 2560 and a 2×256 hopper critic, P ≈ 70k), ``Φ' Φᵀ`` formed chunk
    by chunk (``chunk · P`` more).  Cost ``O(n² P)``.
  - ``method="factored"`` (MLP critics: the ``QEnsemble.member(i)`` views every rlkit algorithm returns):
    for a Linear layer ``z = a W + b`` the per-sample gradient of W is the outer product ``a_i ⊗ g_i``
    (``g_i = ∂Q(x_i)/∂z``), so ``⟨φ_W(x_i), φ_W(x_j)⟩ = ⟨a_i, a_j⟩ ⟨g_i, g_j⟩`` and the layer's Gram is
    ``(A Aᵀ + 1) ⊙ (G Gᵀ)`` (the ``+1`` is the bias); a LayerNorm ``y = x̂ w + b`` contributes
    ``(X̂ ⊙ G)(X̂ ⊙ G)ᵀ + G Gᵀ``.  Memory ``O(n · width)``, cost ``O(n² · Σ widths)``: 33× faster than the
    Jacobian for a 2×256 hopper critic at n = 512 (``bench/seem.py``).  ``method="auto"`` picks it
    whenever the head is recognised as an MLP.

Contract of ``Algorithm.critic_for_diagnostics()`` (:class:`rlkit.algorithm.DiagnosticsCritic`):

    ``q(obs, act) -> (B,)`` is one critic head (an ``nn.Module``; SEEM differentiates w.r.t. its own
    parameters, or, for a ``QEnsemble.member(i)`` view, w.r.t. member i's slices of the stacked tensors),
    and ``policy(obs) -> act`` the current policy's deterministic action, both taking **the critic's input
    space**: whatever the algorithm feeds its critic in training (normalised observations, actions in
    [-1, 1]).  ``inputs(obs, action) -> (obs', action')`` maps raw observations and env-scale actions into
    that space, ``reward`` is the algorithm's reward transform and ``gamma`` its discount.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.nets.mlp import EnsembleLayerNorm, EnsembleLinear, _EnsembleMember

METHODS = ("auto", "factored", "jacobian")


# ----------------------------------------------------------------------------------------- functional critic
@dataclass(frozen=True)
class _Op:
    """One layer of an MLP head: ``linear`` (x W + b), ``layernorm`` (x̂ w + b) or a parameter-free ``fn``."""

    kind: str
    weight: str | None = None
    bias: str | None = None
    transposed: bool = False  # weight stored (out, in) as in nn.Linear
    eps: float = 1e-5
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None


class FunctionalCritic:
    """One critic head as a pure function ``q(params, obs, act) -> (B,)`` of a dict of parameter tensors.

    ``params`` are detached views of the live parameters (no copy).  ``ops`` is the layer list when the head
    is an MLP (Linear, LayerNorm and parameter-free layers on ``cat(obs, act)``), which enables the
    factored kernel; ``None`` for an arbitrary module.
    """

    def __init__(self, params: dict[str, torch.Tensor],
                 forward: Callable[[dict[str, torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor],
                 ops: list[_Op] | None = None) -> None:
        self.params = params
        self._forward = forward
        self.ops = ops

    def __call__(self, params: dict[str, torch.Tensor], obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self._forward(params, obs, act)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.params.values())

    def param_norm(self) -> torch.Tensor:
        """``||θ||₂`` of this head's parameters (a 0-dim tensor on the parameters' device)."""
        return torch.sqrt(sum(p.double().pow(2).sum() for p in self.params.values())).float()


def _mlp_forward(ops: list[_Op], params: dict[str, torch.Tensor], x: torch.Tensor,
                 taps: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run the MLP ops on ``x``; returns ``(Q (B,), inputs)`` where ``inputs[k]`` is what the k-th
    parametrised layer multiplies its weight with (``a`` for Linear, ``x̂`` for LayerNorm).  ``taps[k]``
    (zeros) is added to the k-th parametrised layer's output, so ``∂Q/∂taps[k]`` is the per-sample output
    gradient ``g`` of that layer."""
    inputs: list[torch.Tensor] = []
    for op in ops:
        if op.kind == "fn":
            x = op.fn(x)
            continue
        weight, bias = params[op.weight], params[op.bias]
        if op.kind == "linear":
            inputs.append(x)
            x = x @ (weight.T if op.transposed else weight) + bias
        else:  # layernorm
            x_hat = F.layer_norm(x, x.shape[-1:], eps=op.eps)
            inputs.append(x_hat)
            x = x_hat * weight + bias
        if taps is not None:
            x = x + taps[len(inputs) - 1]
    return x.squeeze(-1), inputs


def _ops_forward(ops: list[_Op]):
    def forward(params, obs, act):
        return _mlp_forward(ops, params, torch.cat([obs, act], dim=-1))[0]

    return forward


def _ensemble_member_ops(member: _EnsembleMember) -> tuple[dict[str, torch.Tensor], list[_Op]]:
    params: dict[str, torch.Tensor] = {}
    ops: list[_Op] = []
    i = member.index
    for k, layer in enumerate(member.ensemble.net):
        if isinstance(layer, EnsembleLinear | EnsembleLayerNorm):
            params[f"{k}.weight"] = layer.weight.detach()[i]
            params[f"{k}.bias"] = layer.bias.detach()[i]
            if isinstance(layer, EnsembleLinear):
                ops.append(_Op("linear", f"{k}.weight", f"{k}.bias"))
            else:
                ops.append(_Op("layernorm", f"{k}.weight", f"{k}.bias", eps=layer.eps))
        elif any(True for _ in layer.parameters()):
            raise TypeError(f"SEEM cannot differentiate ensemble layer {type(layer).__name__}")
        else:
            ops.append(_Op("fn", fn=layer))
    return params, ops


def functional_critic(q1: nn.Module) -> FunctionalCritic:
    """The pure form of a critic head returned by ``critic_for_diagnostics()``.

    ``QEnsemble.member(i)`` views become MLP ops over member i's slices ``weight[i]``, ``bias[i]`` of the
    stacked tensors (so gradients are w.r.t. that head only); any other ``nn.Module`` goes through
    ``torch.func.functional_call`` with its own named parameters (buffers kept as they are).
    """
    if isinstance(q1, _EnsembleMember):
        params, ops = _ensemble_member_ops(q1)
        return FunctionalCritic(params, _ops_forward(ops), ops)
    if not isinstance(q1, nn.Module):
        raise TypeError("critic_for_diagnostics() must return an nn.Module as its critic head "
                        f"(got {type(q1).__name__})")
    params = {name: p.detach() for name, p in q1.named_parameters()}

    def forward(p, obs, act):
        return torch.func.functional_call(q1, p, (obs, act)).reshape(obs.shape[0])

    return FunctionalCritic(params, forward)


# ----------------------------------------------------------------------------------------- kernels
def per_sample_gradients(critic: FunctionalCritic, obs: torch.Tensor, act: torch.Tensor,
                         chunk: int = 256) -> torch.Tensor:
    """``Φ`` (n × P): row i is ``∇_θ Q(obs_i, act_i)`` flattened in ``critic.params`` order, computed with
    ``torch.func.vmap(torch.func.grad(...))`` over chunks of ``chunk`` samples (unscaled)."""
    def q_single(params, o, a):
        return critic(params, o.unsqueeze(0), a.unsqueeze(0)).squeeze(0)

    grad_fn = torch.func.vmap(torch.func.grad(q_single), in_dims=(None, 0, 0))
    rows = []
    for start in range(0, obs.shape[0], chunk):
        grads = grad_fn(critic.params, obs[start:start + chunk], act[start:start + chunk])
        rows.append(torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1))
    return torch.cat(rows)


def _jacobian_kernels(critic: FunctionalCritic, obs, act, next_obs, next_act,
                      chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Φ Φᵀ, Φ' Φᵀ)`` from explicit per-sample gradients (Φ kept, Φ' streamed in chunks)."""
    phi = per_sample_gradients(critic, obs, act, chunk)
    gram = phi @ phi.T
    cross = torch.cat([per_sample_gradients(critic, next_obs[s:s + chunk], next_act[s:s + chunk], chunk) @ phi.T
                       for s in range(0, next_obs.shape[0], chunk)])
    return gram, cross


def _layer_factors(critic: FunctionalCritic, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per parametrised layer: its inputs (``a`` or ``x̂``, n × in) and per-sample output gradients
    ``g_i = ∂Q(x_i)/∂z_i`` (n × out), the latter from one batched backward (samples do not interact)."""
    widths = []
    for op in critic.ops:
        if op.kind == "linear":
            w = critic.params[op.weight]
            widths.append(w.shape[0] if op.transposed else w.shape[-1])
        elif op.kind == "layernorm":
            widths.append(critic.params[op.weight].shape[-1])
    with torch.enable_grad():
        taps = [torch.zeros(x.shape[0], w, device=x.device, dtype=x.dtype, requires_grad=True) for w in widths]
        q, inputs = _mlp_forward(critic.ops, critic.params, x, taps)
        grads = torch.autograd.grad(q.sum(), taps)
    return [a.detach() for a in inputs], list(grads)


def _factored_kernels(critic: FunctionalCritic, obs, act, next_obs, next_act) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Φ Φᵀ, Φ' Φᵀ)`` of an MLP head from layer factors: Linear ``(a aᵀ + 1) ⊙ (g gᵀ)``, LayerNorm
    ``(x̂ ⊙ g)(x̂ ⊙ g)ᵀ + g gᵀ`` (module docstring)."""
    a, g = _layer_factors(critic, torch.cat([obs, act], dim=-1))
    a2, g2 = _layer_factors(critic, torch.cat([next_obs, next_act], dim=-1))
    n = obs.shape[0]
    gram = obs.new_zeros(n, n)
    cross = obs.new_zeros(n, n)
    linear_ops = [op for op in critic.ops if op.kind != "fn"]
    for op, ai, gi, a2i, g2i in zip(linear_ops, a, g, a2, g2, strict=True):
        if op.kind == "linear":
            gram += (ai @ ai.T + 1.0) * (gi @ gi.T)
            cross += (a2i @ ai.T + 1.0) * (g2i @ gi.T)
        else:
            h, h2 = ai * gi, a2i * g2i
            gram += h @ h.T + gi @ gi.T
            cross += h2 @ h.T + g2i @ gi.T
    return gram, cross


def seem_matrix(critic: FunctionalCritic, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor,
                next_act: torch.Tensor, gamma: float, not_done: torch.Tensor | None = None,
                method: str = "auto", chunk: int = 256) -> torch.Tensor:
    """``A = (γ diag(m) Φ' Φᵀ - Φ Φᵀ) / P`` in float64 (n × n, not symmetric); ``m = not_done`` (ones when
    None).  All inputs are in the critic's input space."""
    if method not in METHODS:
        raise ValueError(f"unknown SEEM method '{method}'; choose one of {METHODS}")
    if method == "factored" and critic.ops is None:
        raise ValueError("method='factored' needs an MLP critic head (a QEnsemble member); use 'jacobian'")
    with torch.no_grad():
        if method == "jacobian" or critic.ops is None:
            gram, cross = _jacobian_kernels(critic, obs, act, next_obs, next_act, chunk)
        else:
            gram, cross = _factored_kernels(critic, obs, act, next_obs, next_act)
        scale = float(gamma) if not_done is None else float(gamma) * not_done.double().unsqueeze(1)
        return (scale * cross.double() - gram.double()) / critic.num_params


@dataclass(frozen=True)
class SeemResult:
    """``seem = max Re λ(A)``, ``seem_normalized = seem / ||A||_F``, and the spectrum's summary."""

    seem: float
    seem_normalized: float
    frobenius: float
    n: int
    num_params: int

    def metrics(self, prefix: str = "diag/") -> dict[str, float]:
        return {f"{prefix}seem": self.seem, f"{prefix}seem_normalized": self.seem_normalized}


def seem_from_matrix(a: torch.Tensor, num_params: int = 0) -> SeemResult:
    """Largest real part of the eigenvalues of ``a`` (float64, CPU LAPACK) and its Frobenius-normalised value;
    NaNs when ``a`` holds non-finite entries (a critic that has already overflowed)."""
    a = a.detach().to("cpu", torch.float64)
    n = a.shape[0]
    if not bool(torch.isfinite(a).all()):
        return SeemResult(math.nan, math.nan, math.nan, n, num_params)
    frob = float(torch.linalg.matrix_norm(a))
    lam = float(np.linalg.eigvals(a.numpy()).real.max()) if n else 0.0
    return SeemResult(lam, lam / frob if frob > 0 else 0.0, frob, n, num_params)


def compute_seem(q1: nn.Module | FunctionalCritic, policy: Callable[[torch.Tensor], torch.Tensor],
                 obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor, gamma: float,
                 not_done: torch.Tensor | None = None, method: str = "auto", chunk: int = 256) -> SeemResult:
    """SEEM of critic head ``q1`` on the probe ``(obs, act)`` with bootstrap pairs ``(next_obs,
    policy(next_obs))``; every tensor already in the critic's input space (see the module contract)."""
    critic = q1 if isinstance(q1, FunctionalCritic) else functional_critic(q1)
    with torch.no_grad():
        next_act = policy(next_obs)
    a = seem_matrix(critic, obs, act, next_obs, next_act, gamma, not_done, method, chunk)
    return seem_from_matrix(a, critic.num_params)
