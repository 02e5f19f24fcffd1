"""``algo=oper``: the OPER paper's pairing as one preset -- a base offline algorithm trained on
OPER-prioritized data.

The preset builds its base exactly as ``algo=<base>`` would (same YAML, same per-family defaults), applies
the OPER paper's per-base changes (``per_base``, e.g. IQL's inverse temperature 1.0 in the OPER-A runs),
then any ``base_params`` the user gives, and delegates every call to it.  The priorities come from the
sampler (``sampler=oper_a | oper_r | red``), which the preset's YAML selects; both are switchable on the
command line: ``rlkit train algo=oper algo.base=iql sampler=oper_r env=hopper-medium``.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from rlkit.algorithm import Algorithm
from rlkit.config import algo_block

BASES = ("td3bc", "iql", "bc", "onestep", "cql", "awac")


class OPER(Algorithm):
    """A base offline algorithm run on OPER priorities; every contract call goes to the base."""

    regimes = ("offline",)

    def __init__(self, observation_space, action_space, device="cpu", *, base: str = "td3bc",
                 base_params: dict[str, Any] | None = None, per_base: dict[str, dict[str, Any]] | None = None,
                 env_family: str | None = None, train_steps: int = 1_000_000) -> None:
        super().__init__(observation_space, action_space, device)
        from hydra.utils import get_class

        overrides = {**((per_base or {}).get(base) or {}), **(base_params or {})}
        params = algo_block(base, {"env": {"family": env_family}, "train": {"steps": train_steps}}, overrides)
        target = params.pop("_target_")
        for key in ("name", "description", "per_family", "per_regime", "paper"):
            params.pop(key, None)
        self.base_name = base
        self.base = get_class(target)(observation_space=observation_space, action_space=action_space,
                                      device=device, **params)
        self.base_config = OmegaConf.create({"_target_": target, **params})

    @property
    def provides_priorities(self) -> bool:  # the base's declaration
        return self.base.provides_priorities

    @property
    def priority_feedback(self) -> bool:
        return self.base.priority_feedback if "base" in self.__dict__ else False

    @priority_feedback.setter
    def priority_feedback(self, on: bool) -> None:
        if "base" in self.__dict__:
            self.base.priority_feedback = on

    # every call goes to the base algorithm
    def act(self, obs, state=None, deterministic=True):
        return self.base.act(obs, state, deterministic=deterministic)

    def update(self, batch):
        return self.base.update(batch)

    def on_dataset(self, dataset) -> None:
        self.base.on_dataset(dataset)

    def critic_for_diagnostics(self):
        return self.base.critic_for_diagnostics()

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state)


