"""Building the data side of a run from the config: the dataset and the replay buffer with the sampler
named by ``sampler=<name>`` (``configs/sampler/*.yaml``).

A sampler config names its class in ``_target_`` (``rlkit.replay.samplers.UniformSampler``,
``PrioritizedSampler``, ``WeightedSampler``), its parameters under ``params``, and for static priorities a
``priorities`` block whose ``_target_`` is a function ``(dataset, **params) -> np.ndarray`` (OPER-A,
OPER-R, ReD live in ``rlkit.algorithms.resampling``).  With ``decoupled: true`` the prioritised sampler
serves the policy terms (``batch.policy_batch``) and the main batch is uniform (OPER's decoupled variant).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlkit.errors import ConfigError
from rlkit.replay import ColumnarStorage, ReplayBuffer, Sampler, UniformSampler
from rlkit.utils import derive_seed


def load_dataset(cfg: DictConfig):
    """The env's dataset (``env.dataset``) through ``rlkit.data.load``, with local collection as fallback."""
    from rlkit.data import load

    spec = cfg.env.get("dataset")
    if not spec or not spec.get("id"):
        raise ConfigError(f"env '{cfg.env.name}' names no dataset; offline training needs an env with "
                          "env.dataset.id (e.g. env=hopper-medium)")
    collect = None
    try:
        from rlkit.data.collect import collect_for_fallback as collect
    except ImportError:  # pragma: no cover - collection module missing
        collect = None
    return load(str(spec.id), source=str(spec.get("source", "auto")), path=spec.get("path"), collect=collect)


def sampler_params(sampler_cfg: DictConfig) -> dict[str, Any]:
    params = sampler_cfg.get("params")
    return OmegaConf.to_container(params, resolve=True) if params is not None else {}


def compute_priorities(sampler_cfg: DictConfig, dataset, cfg: DictConfig) -> np.ndarray:
    from hydra.utils import get_method

    if sampler_cfg.get("priorities") is None:
        raise ConfigError(f"sampler '{sampler_cfg.name}' is weighted but has no 'priorities' block")
    params = OmegaConf.to_container(sampler_cfg.priorities, resolve=True)
    function = get_method(params.pop("_target_"))
    print(f"rlkit: computing {sampler_cfg.name} priorities for {dataset.size} transitions", file=sys.stderr)
    # called directly (not hydra.utils.call, which would turn the Dataset dataclass into a DictConfig)
    return np.asarray(function(dataset=dataset, env_cfg=cfg.env, seed=int(cfg.seed), **params))


def build_samplers(cfg: DictConfig, dataset=None) -> tuple[Sampler, dict[str, Sampler]]:
    """The main sampler and the extra named ones of ``cfg.sampler``, built from its ``_target_`` class.

    A ``priorities`` block (OPER/ReD) computes static priorities from the dataset and passes them to the
    sampler; ``decoupled: true`` hands that sampler to the policy terms (``extra["policy"]``, read into
    :attr:`~rlkit.replay.Batch.policy_batch`) and draws the main batch uniformly (OPER's ODPR variant).
    """
    from hydra.utils import get_class

    sampler_cfg = cfg.sampler
    name = str(sampler_cfg.get("name"))
    seed = int(cfg.seed)
    target = sampler_cfg.get("_target_")
    if not target:
        raise ConfigError(f"sampler config '{name}' has no _target_ sampler class")
    params = sampler_params(sampler_cfg)
    if sampler_cfg.get("priorities") is not None:
        if dataset is None:
            raise ConfigError(f"sampler={name} computes its priorities from a dataset, so it serves offline "
                              "training only; use sampler=uniform or sampler=per online")
        params["priorities"] = compute_priorities(sampler_cfg, dataset, cfg)
    try:
        sampler = get_class(str(target))(seed=seed, **params)
    except TypeError as err:
        raise ConfigError(f"bad parameters for sampler={name}: {err}; check sampler.params") from None
    if sampler_cfg.get("decoupled", False):
        return UniformSampler(seed=derive_seed(seed, "uniform critic batches")), {"policy": sampler}
    return sampler, {}


def build_buffer_from_dataset(cfg: DictConfig, dataset, device: torch.device) -> ReplayBuffer:
    """The offline replay buffer: the dataset's columns and the configured samplers."""
    storage = ColumnarStorage.from_arrays(dataset.columns(), device=device if device.type == "cuda" else None)
    sampler, extra = build_samplers(cfg, dataset)
    return ReplayBuffer(storage, sampler, device=device, extra_samplers=extra)


def enable_priority_feedback(cfg: DictConfig, algo, buffer: ReplayBuffer) -> bool:
    """Turn on the algorithm's TD-error priorities when the main sampler learns priorities (PER), or refuse
    an algorithm that cannot compute them; returns whether priorities flow back to the sampler."""
    if not buffer.sampler.learns_priorities:
        return False
    if not algo.provides_priorities:
        raise ConfigError(f"sampler={cfg.sampler.get('name')} learns priorities from TD errors, which "
                          f"algo={cfg.algo.get('name')} does not compute; use sampler=uniform, oper_r, oper_a "
                          "or red with it")
    algo.priority_feedback = True
    return True


def priority_metrics(buffer: ReplayBuffer) -> dict[str, float]:
    """``replay/priority_mean`` and ``replay/priority_max`` of a prioritized main sampler."""
    mean, highest = buffer.sampler.priority_stats(len(buffer))
    return {"replay/priority_mean": mean, "replay/priority_max": highest}
