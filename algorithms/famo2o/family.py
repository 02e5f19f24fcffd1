"""The pieces of FamO2O (Wang et al. 2023, "Train Once, Get a Family: State-Adaptive Balances for
Offline-to-Online Reinforcement Learning", NeurIPS) shared by every base algorithm.

* **Coefficient encoding** (Sec. 4.1, released code ``sin_cos_skill_func``): the universal model
  ``π_u(a | s, β)`` sees ``[s, enc(β)]`` with ``enc(β)_{2i} = sin(β / n^{2i/d})``,
  ``enc(β)_{2i+1} = cos(β / n^{2i/d})``, ``i = 0 .. d/2 - 1`` (``d = 6``, ``n = 10000``).
* **Balance model** ``π_b(β | s)`` (Sec. 4.2): a tanh-squashed Gaussian over ``u ∈ (-1, 1)`` mapped to the
  coefficient range.  ``paper`` mapping: ``β = β_lo + (u + 1)/2 · (β_hi - β_lo) ∈ (β_lo, β_hi)`` (the IQL
  code, and the range the paper states for every base); ``released_cql`` mapping:
  ``β = β_lo + u · (β_hi - β_lo) ∈ (2β_lo - β_hi, β_hi)`` (what the released CQL code computes).
* **Balance objective** (eq. 10): ``max_{π_b} E_s[Q(s, a)]`` with ``a ~ π_u(·|s, β)``, ``β ~ π_b(·|s)``, both
  reparameterised, ``π_u`` frozen; the IQL code adds an entropy term with automatic temperature,
  ``L_b = E[α_b log π_b(u|s) - Q(s, a)]``, ``L_α = α_b (H - H̄)``, ``H = -E log π_b``, ``H̄ = -1/2``.
* **Coefficients** (Algorithm 1): offline, i.i.d. ``β_i ~ U[β_lo, β_hi]`` per sample (the whole family is
  trained); online, ``β_i ~ π_b(·|s_i)`` with a stop-gradient.  Acting uses the balance model's mean
  coefficient (``tanh`` of the mean) and samples the action (the released code's ``sample_actions``).
* **Ablations** (Tables 2-3): ``balance=random`` replaces ``π_b`` by a uniform random selector online and
  when acting; ``balance=anneal`` uses one coefficient for every state, annealed linearly from
  ``anneal_from`` to ``anneal_to`` (default ``β_lo -> β_hi``) over ``anneal_steps`` online updates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from rlkit.algorithms.offline.common import orthogonal_init_
from rlkit.errors import ConfigError
from rlkit.nets import MLP, TanhGaussian
from rlkit.optim import adam, step

MAPPINGS = ("paper", "released_cql")
BALANCES = ("model", "random", "anneal")


def sinusoidal_encoding(beta: torch.Tensor, dim: int = 6, base: float = 10000.0) -> torch.Tensor:
    """``enc(β)`` of shape ``(*β.shape, dim)``: ``[sin(β/n^{0/d}), cos(β/n^{0/d}), sin(β/n^{2/d}), ...]``."""
    i = torch.arange(dim // 2, device=beta.device, dtype=beta.dtype)
    angle = beta.unsqueeze(-1) / base ** (2.0 * i / dim)
    return torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).flatten(-2)


def coefficient_bounds(beta_range: Sequence[float], mapping: str) -> tuple[float, float]:
    """The interval the balance model's coefficient can take under ``mapping``."""
    lo, hi = float(beta_range[0]), float(beta_range[1])
    return (lo, hi) if mapping == "paper" else (2.0 * lo - hi, hi)


def map_coefficient(u: torch.Tensor, beta_range: Sequence[float], mapping: str) -> torch.Tensor:
    """``u ∈ (-1, 1)`` -> ``β`` (module docstring: ``paper`` or ``released_cql`` mapping)."""
    lo, hi = float(beta_range[0]), float(beta_range[1])
    if mapping == "paper":
        return lo + (u + 1.0) * 0.5 * (hi - lo)
    return lo + u * (hi - lo)


class BalanceModel(nn.Module):
    """``π_b(u | s)``: tanh-squashed 1-D Gaussian, MLP mean and a state-independent log-std (clipped to
    [-10, 2]), as the IQL code's balance model (``NormalTanhPolicy`` with one output)."""

    def __init__(self, obs_dim: int, hidden: Sequence[int], log_std_min: float = -10.0,
                 log_std_max: float = 2.0) -> None:
        super().__init__()
        self.trunk = MLP(obs_dim, hidden, 1)
        self.log_std = nn.Parameter(torch.zeros(1))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> TanhGaussian:
        mean = self.trunk(obs)
        return TanhGaussian(mean, self.log_std.clamp(self.log_std_min, self.log_std_max).expand_as(mean))


class Family:
    """The balance model, its optimizer and temperature, and the coefficient rules (module docstring).

    Owned by a FamO2O algorithm, which adds :meth:`state_dict` to its own for checkpoints.  ``model`` is
    any module ``obs -> TanhGaussian`` over ``u``: :class:`BalanceModel` (IQL/AWAC) or JaxCQL's
    tanh-Gaussian policy with one output (CQL).
    """

    def __init__(self, model: nn.Module, *, beta_range: Sequence[float], mapping: str = "paper",
                 balance: str = "model", balance_every: int = 1, lr: float = 3e-4, entropy: bool = True,
                 target_entropy: float = -0.5, init_temperature: float = 1.0, temperature_lr: float = 3e-4,
                 encoding_dim: int = 6, encoding_base: float = 10000.0, anneal_from: float | None = None,
                 anneal_to: float | None = None, anneal_steps: int = 1_000_000,
                 device: torch.device | str = "cpu") -> None:
        if mapping not in MAPPINGS:
            raise ConfigError(f"algo.beta_mapping={mapping!r}; choose one of: {', '.join(MAPPINGS)}")
        if balance not in BALANCES:
            raise ConfigError(f"algo.balance={balance!r}; choose one of: {', '.join(BALANCES)}")
        if len(beta_range) != 2 or not float(beta_range[0]) < float(beta_range[1]):
            raise ConfigError(f"algo.beta_range={list(beta_range)} must be [low, high] with low < high")
        if encoding_dim <= 0 or encoding_dim % 2:
            raise ConfigError(f"algo.encoding_dim={encoding_dim} must be a positive even number")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.opt = adam(self.model.parameters(), lr)
        self.params = list(self.model.parameters())
        self.log_temperature = torch.tensor(math.log(init_temperature), device=self.device, requires_grad=True)
        self.temperature_opt = adam([self.log_temperature], temperature_lr)
        self.beta_range = (float(beta_range[0]), float(beta_range[1]))
        self.mapping, self.balance, self.balance_every = mapping, balance, max(int(balance_every), 1)
        self.entropy, self.target_entropy = bool(entropy), float(target_entropy)
        self.encoding_dim, self.encoding_base = int(encoding_dim), float(encoding_base)
        self.anneal = (self.beta_range[0] if anneal_from is None else float(anneal_from),
                       self.beta_range[1] if anneal_to is None else float(anneal_to))
        self.anneal_steps = max(int(anneal_steps), 1)
        #: set by ``begin_phase``: online coefficients come from the balance model
        self.online = False
        #: updates taken in the online phase (the annealing clock)
        self.online_updates = 0

    # ------------------------------------------------------------------ coefficients
    def encode(self, beta: torch.Tensor) -> torch.Tensor:
        return sinusoidal_encoding(beta, self.encoding_dim, self.encoding_base)

    def condition(self, obs: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """The universal model's input ``[s, enc(β)]`` (``β`` of shape ``obs.shape[:-1]``)."""
        return torch.cat([obs, self.encode(beta)], dim=-1)

    def to_beta(self, u: torch.Tensor) -> torch.Tensor:
        return map_coefficient(u, self.beta_range, self.mapping)

    def uniform(self, obs: torch.Tensor) -> torch.Tensor:
        """i.i.d. ``β_i ~ U[β_lo, β_hi]``, one per row of ``obs``."""
        lo, hi = self.beta_range
        return torch.empty(obs.shape[:-1], device=obs.device).uniform_(lo, hi)

    def annealed(self, obs: torch.Tensor) -> torch.Tensor:
        start, end = self.anneal
        progress = min(self.online_updates / self.anneal_steps, 1.0) if self.online else 0.0
        return torch.full(obs.shape[:-1], start + (end - start) * progress, device=obs.device)

    @torch.no_grad()
    def training_coefficients(self, obs: torch.Tensor) -> torch.Tensor:
        """The universal model's per-sample coefficients in an update: uniform offline; online ``π_b``'s
        samples (stop-gradient), or the ablation's selector."""
        if not self.online or self.balance == "random":
            return self.uniform(obs)
        if self.balance == "anneal":
            return self.annealed(obs)
        return self.to_beta(self.model(obs).rsample_with_log_prob()[0].squeeze(-1))

    @torch.no_grad()
    def acting_coefficients(self, obs: torch.Tensor) -> torch.Tensor:
        """Coefficients when acting (and evaluating): ``π_b``'s mean (``tanh`` of the Gaussian mean)."""
        if self.balance == "random":
            return self.uniform(obs)
        if self.balance == "anneal":
            return self.annealed(obs)
        return self.to_beta(self.model(obs).mode.squeeze(-1))

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised ``β ~ π_b(·|s)`` and ``log π_b(u|s)`` (for the balance loss)."""
        u, log_prob = self.model(obs).rsample_with_log_prob()
        return self.to_beta(u.squeeze(-1)), log_prob

    # ------------------------------------------------------------------ training
    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.detach().exp()

    def trains(self, num_updates: int) -> bool:
        """Whether update number ``num_updates`` (1-based) updates the balance model."""
        return self.balance == "model" and num_updates % self.balance_every == 0

    def tick(self) -> None:
        """Count one update (the annealing clock runs in the online phase)."""
        if self.online:
            self.online_updates += 1

    def update(self, obs: torch.Tensor, q_of_beta) -> dict[str, torch.Tensor]:
        """One balance step: ``L_b = mean[α_b log π_b(u|s) - Q(s, β)]`` (entropy term only with ``entropy``),
        gradients into ``π_b`` only; then the temperature step ``α_b (H - H̄)`` when ``entropy`` is on.

        ``q_of_beta(beta) -> Q`` maps reparameterised coefficients to the critic's value of the universal
        model's reparameterised action at them (the caller freezes nothing: only ``π_b`` steps here).
        """
        beta, log_prob = self.sample(obs)
        q = q_of_beta(beta)
        loss = (self.temperature * log_prob - q).mean() if self.entropy else -q.mean()
        step(self.opt, loss, self.params)
        metrics = {"train/balance_loss": loss.detach(), "train/balance_beta_mean": beta.detach().mean(),
                   "train/balance_entropy": -log_prob.detach().mean()}
        if self.entropy:
            entropy = -log_prob.detach().mean()
            temperature_loss = self.log_temperature.exp() * (entropy - self.target_entropy)
            step(self.temperature_opt, temperature_loss)
            metrics["train/balance_temperature"] = self.temperature
        return metrics

    def init_orthogonal(self) -> None:
        orthogonal_init_(self.model)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "log_temperature": self.log_temperature.detach().clone(),
                "temperature_opt": self.temperature_opt.state_dict(), "online": self.online,
                "online_updates": self.online_updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.log_temperature.data.copy_(state["log_temperature"].to(self.device))
        self.temperature_opt.load_state_dict(state["temperature_opt"])
        self.online, self.online_updates = bool(state["online"]), int(state["online_updates"])
