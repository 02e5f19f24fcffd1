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
    "urlb": "urlb:URLBAdapter",
    "cic": "cic:CICAdapter",
    "moss": "moss:MOSSAdapter",
}


def adapter_class(name: str) -> type[Adapter]:
    """The adapter class registered for ``name`` (imported on demand)."""
    module, cls = ADAPTERS[name].split(":")
    return getattr(importlib.import_module(f"bench.fidelity.{module}"), cls)
