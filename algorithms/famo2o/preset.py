"""``algo=famo2o``: FamO2O (Wang et al. 2023, NeurIPS) on a base offline algorithm, trained in the
``offline_to_online`` regime.

The base is built exactly as ``algo=<base>`` would build it (same YAML, same per-family defaults), with
FamO2O's changes for that base (``settings.<base>.base_params``: e.g. CQL's min-Q weight 1.0 and 2x256
networks of the released CQL code, AWAC's 4x256 universal model and weight decay of the paper's Table 5,
IQL without learning-rate decay) and any ``base_params`` the user gives; its actor becomes the universal
model and a balance model is added (:mod:`rlkit.algorithms.famo2o.bases`).  Every contract call goes to
that algorithm.  ``rlkit train algo=famo2o algo.base=awac env=hopper-medium-replay``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rlkit.algorithm import Algorithm
from rlkit.config import algo_block
from rlkit.errors import ConfigError

VARIANTS = {"iql": "FamO2OIQL", "awac": "FamO2OAWAC", "cql": "FamO2OCQL"}
META = ("_target_", "name", "description", "per_family", "per_regime", "paper", "choices")
WEIGHTINGS = ("paper", "released")


class FamO2O(Algorithm):
    """FamO2O on ``base`` (iql | awac | cql); see the module docstring and ``configs/algo/famo2o.yaml``."""

    regimes = ("offline_to_online",)
    provides_priorities = True

    def __init__(self, observation_space, action_space, device="cpu", *, base: str = "iql",
                 advantage_weighting: str = "paper", balance: str = "model",
                 beta_range: list[float] | None = None, beta_mapping: str | None = None,
                 balance_every: int | None = None, balance_entropy: bool | None = None,
                 balance_hidden: list[int] = (256, 256), balance_lr: float = 3e-4,
                 balance_target_entropy: float = -0.5, balance_init_temperature: float = 1.0,
                 balance_temperature_lr: float = 3e-4, encoding_dim: int = 6, encoding_base: float = 10000.0,
                 anneal_from: float | None = None, anneal_to: float | None = None, anneal_steps: int = 1_000_000,
                 settings: Mapping[str, Mapping[str, Any]] | None = None,
                 base_params: Mapping[str, Any] | None = None, env_family: str | None = None,
                 train_steps: int = 1_000_000) -> None:
        super().__init__(observation_space, action_space, device)
        from rlkit.algorithms.famo2o import bases

        if base not in VARIANTS:
            raise ConfigError(f"algo.base={base!r}: FamO2O runs on {', '.join(VARIANTS)}")
        if advantage_weighting not in WEIGHTINGS:
            raise ConfigError(f"algo.advantage_weighting={advantage_weighting!r}; choose one of: "
                              f"{', '.join(WEIGHTINGS)}")
        if advantage_weighting == "released" and base != "iql":
            raise ConfigError("algo.advantage_weighting=released reproduces FamO2O's released IQL code "
                              "(jax_iql/family_actor.py); use it with algo.base=iql")
        chosen = dict((settings or {}).get(base) or {})
        overrides = {**dict(chosen.get("base_params") or {}), **dict(base_params or {})}
        params = algo_block(base, {"env": {"family": env_family}, "train": {"steps": train_steps}}, overrides)
        for key in META:
            params.pop(key, None)
        family = {
            "beta_range": list(beta_range if beta_range is not None else chosen["beta_range"]),
            "mapping": beta_mapping if beta_mapping is not None else chosen.get("beta_mapping", "paper"),
            "balance": balance,
            "balance_every": int(balance_every if balance_every is not None else chosen.get("balance_every", 1)),
            "entropy": bool(balance_entropy if balance_entropy is not None else chosen.get("balance_entropy", True)),
            "lr": balance_lr, "target_entropy": balance_target_entropy,
            "init_temperature": balance_init_temperature, "temperature_lr": balance_temperature_lr,
            "encoding_dim": int(encoding_dim), "encoding_base": float(encoding_base),
            "anneal_from": anneal_from, "anneal_to": anneal_to, "anneal_steps": int(anneal_steps),
        }
        self.base_name = base
        variant = getattr(bases, VARIANTS[base])
        if base == "iql":
            params["advantage_weighting"] = advantage_weighting
        try:
            self.impl = variant(observation_space, action_space, device, family=family,
                                balance_hidden=tuple(balance_hidden), **params)
        except TypeError as exc:
            if "unexpected keyword argument" in str(exc):
                raise ConfigError(f"FamO2O's base {base} has no parameter {str(exc).split(' ')[-1]}; check "
                                  "algo.base_params") from exc
            raise

    @property
    def family(self):
        return self.impl.family

    @property
    def priority_feedback(self) -> bool:
        return self.impl.priority_feedback if "impl" in self.__dict__ else False

    @priority_feedback.setter
    def priority_feedback(self, on: bool) -> None:
        if "impl" in self.__dict__:
            self.impl.priority_feedback = on

    # every contract call goes to the variant
    def act(self, obs, state=None, deterministic=True):
        return self.impl.act(obs, state, deterministic=deterministic)

    def update(self, batch):
        return self.impl.update(batch)

    def on_dataset(self, dataset) -> None:
        self.impl.on_dataset(dataset)

    def begin_phase(self, phase: str) -> None:
        self.impl.begin_phase(phase)

    def critic_for_diagnostics(self):
        return self.impl.critic_for_diagnostics()

    def state_dict(self) -> dict[str, Any]:
        return self.impl.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.impl.load_state_dict(state)
