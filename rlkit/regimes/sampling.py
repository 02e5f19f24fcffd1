"""Building the data side of a run from the config: the dataset and the replay buffer with the sampler
named by ``sampler=<name>`` (``configs/sampler/*.yaml``).

A sampler config has ``kind`` (``uniform | per | weighted | sequence``), the sampler's parameters under
``params``, and for ``weighted`` a ``priorities`` block whose ``_target_`` is a function
``(dataset, **params) -> np.ndarray`` (OPER-A, OPER-R, ReD live in ``algorithms/resampling``).  With
``decoupled: true`` the prioritised sampler serves the policy terms (``batch.policy_batch``) and the
main batch is uniform (OPER's decoupled variant).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlkit.errors import ConfigError
from rlkit.replay import ColumnarStorage, ReplayBuffer, make_sampler


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


def build_buffer_from_dataset(cfg: DictConfig, dataset, device: torch.device) -> ReplayBuffer:
    sampler_cfg = cfg.sampler
    kind = str(sampler_cfg.kind)
    seed = int(cfg.seed)
    params = sampler_params(sampler_cfg)
    storage = ColumnarStorage.from_arrays(dataset.columns(), device=device if device.type == "cuda" else None)
    extra = {}
    if kind == "weighted":
        priorities = compute_priorities(sampler_cfg, dataset, cfg)
        prioritized = make_sampler("weighted", priorities=priorities, seed=seed, **params)
        if sampler_cfg.get("decoupled", False):
            sampler = make_sampler("uniform", seed=seed + 7919)
            extra["policy"] = prioritized
        else:
            sampler = prioritized
    elif kind == "per":
        sampler = make_sampler("per", capacity=storage.capacity, seed=seed, **params)
    else:
        sampler = make_sampler(kind, seed=seed, **params)
    buffer = ReplayBuffer(storage, sampler, device=device, extra_samplers=extra)
    if kind == "per":  # every dataset row starts at the max priority
        buffer.sampler.on_add(np.arange(storage.size))
    return buffer
