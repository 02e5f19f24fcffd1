"""``algo=oper``: the OPER paper's pairing as one preset -- a base offline algorithm trained on
OPER-prioritized data.

The preset builds its base exactly as ``algo=<base>`` would (same YAML, same per-family defaults), then
applies ``base_params``, and delegates every call to it.  The authors' settings for each (base, sampler,
env family) -- IQL's inverse temperature, OPER-A's weight round and normalisation sigma, resampling or
reweighting, decoupling, BC's network -- come from ONE table in ``configs/algo/oper.yaml``
(``algo.authors``, read from sail-sg/OPER's ``td3``/``iql``/``onestep`` branches), which config
composition turns into run keys (``algo.base_params.*``, ``sampler.*``, ``train.*``) for every key the
user did not set, so ``rlkit train algo=oper algo.base=iql --cfg`` shows them.  The priorities come from the
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
    #: a population stacks the base (:meth:`population_member`); bases that cannot are refused by name
    population = True

    def __init__(self, observation_space, action_space, device="cpu", *, base: str = "td3bc",
                 base_params: dict[str, Any] | None = None, env_family: str | None = None,
                 train_steps: int = 1_000_000, authors: dict[str, Any] | None = None) -> None:
        super().__init__(observation_space, action_space, device)
        from hydra.utils import get_class

        del authors  # the table of configs/algo/oper.yaml, already applied to base_params and sampler by compose
        overrides = dict(base_params or {})
        params = algo_block(base, {"env": {"family": env_family}, "train": {"steps": train_steps}}, overrides)
        target = params.pop("_target_")
        for key in ("name", "description", "per_family", "per_regime", "paper", "choices"):
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

    def population_member(self) -> Algorithm:
        return self.base

    def population_refusal(self) -> str | None:
        if not type(self.base).population:
            return f"algo=oper with algo.base={self.base_name} ({type(self.base).__name__} does not write its update " \
                   "as update_with(ops, batch)); use td3bc, iql, cql or awac"
        return self.base.population_refusal()

    def on_dataset(self, dataset) -> None:
        self.base.on_dataset(dataset)

    def critic_for_diagnostics(self):
        return self.base.critic_for_diagnostics()

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state)


