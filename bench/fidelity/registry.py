"""Reference name (``--ref NAME=PATH``) -> the adapter class that checks rlkit against it.

One adapter module per reference repository (the design card's "one adapter shape"); adding a check is one
module plus one line here.  Modules are imported only when their reference is given, so a missing optional
dependency of one reference (JAX, flax) never stops another's check.
"""

from __future__ import annotations

import importlib

from bench.fidelity.core import Adapter

#: --ref name -> "module:Class" (modules under bench.fidelity)
ADAPTERS: dict[str, str] = {
    "awac": "awac:AWACAdapter",
    "cic": "cic:CICAdapter",
    "cql": "cql:CQLAdapter",
    "famo2o": "famo2o:FamO2OAdapter",
    "iql": "iql:IQLAdapter",
    "moss": "moss:MOSSAdapter",
    "oper": "oper:OPERAdapter",
    "siamese": "siamese:SiameseAdapter",
    "slide": "slide:SlideAdapter",
    "spr": "spr:SPRAdapter",
    "storm": "storm:StormAdapter",
    "td3bc": "td3bc:TD3BCAdapter",
    "urlb": "urlb:URLBAdapter",
}


def adapter_class(name: str) -> type[Adapter]:
    """The adapter class registered for ``name`` (imported on demand)."""
    module, cls = ADAPTERS[name].split(":")
    return getattr(importlib.import_module(f"bench.fidelity.{module}"), cls)
