"""timm for the references that build on it (SiameseNorm's DeiT blocks, Slide-Transformer's Slide-Swin blocks).

Where ``import timm`` works (torchvision built for the installed torch), nothing is done.  timm's package
``__init__`` imports torchvision, whose compiled ops are tied to one torch build; on a CPU-only torch without a
matching torchvision (this project's small CI machine) :func:`ensure_timm` loads the layers the references
compute with from timm's own files instead, without running timm's package ``__init__``: ``Mlp``, ``DropPath``,
``to_2tuple``, ``trunc_normal_``, ``lecun_normal_``, ``PatchEmbed`` and the ImageNet constants.  The model-zoo
plumbing the reference files import but the checks never call (``register_model``, ``build_model_with_cfg``,
``named_apply``, ``adapt_input_conv``) is then inert: ``register_model`` returns the function it decorates,
the others raise if called.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path


def _unused(name: str):
    def fail(*args, **kwargs):
        raise RuntimeError(f"timm.{name} is not available without torchvision; the fidelity checks never call it")
    return fail


def _bare_package(name: str, path: Path) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    sys.modules[name] = module
    return module


def ensure_timm() -> None:
    """Make ``timm.models.layers``, ``timm.models.helpers``, ``timm.models.registry`` and ``timm.data``
    importable (the module docstring says how)."""
    try:
        importlib.import_module("timm.models.layers")
        return
    except (ImportError, RuntimeError):
        for name in [n for n in sys.modules if n == "timm" or n.startswith(("timm.", "torchvision"))]:
            del sys.modules[name]
    spec = importlib.util.find_spec("timm")
    if spec is None or spec.origin is None:
        raise ImportError("timm is not installed; pip install -e '.[fidelity]'")
    root = Path(spec.origin).parent
    _bare_package("timm", root)
    _bare_package("timm.layers", root / "layers")
    _bare_package("timm.models", root / "models")
    data = _bare_package("timm.data", root / "data")
    layers = {n: importlib.import_module(f"timm.layers.{n}")
              for n in ("mlp", "drop", "helpers", "weight_init", "patch_embed")}
    shim = types.ModuleType("timm.models.layers")
    shim.Mlp, shim.DropPath = layers["mlp"].Mlp, layers["drop"].DropPath
    shim.to_2tuple = layers["helpers"].to_2tuple
    shim.trunc_normal_, shim.lecun_normal_ = layers["weight_init"].trunc_normal_, layers["weight_init"].lecun_normal_
    shim.PatchEmbed = layers["patch_embed"].PatchEmbed
    sys.modules["timm.models.layers"] = shim
    helpers = types.ModuleType("timm.models.helpers")
    helpers.named_apply = _unused("named_apply")
    helpers.build_model_with_cfg = _unused("build_model_with_cfg")
    helpers.adapt_input_conv = _unused("adapt_input_conv")
    sys.modules["timm.models.helpers"] = helpers
    registry = types.ModuleType("timm.models.registry")
    registry.register_model = lambda fn: fn
    sys.modules["timm.models.registry"] = registry
    for key, value in vars(importlib.import_module("timm.data.constants")).items():
        if key.isupper():
            setattr(data, key, value)

