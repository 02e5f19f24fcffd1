"""Training regimes: one trainer per regime; algorithms plug in, they do not copy loops."""

from __future__ import annotations

import importlib

REGIME_CLASSES = {
    "offline": "rlkit.regimes.offline:OfflineRegime",
    "online": "rlkit.regimes.online:OnlineRegime",
    "offline_to_online": "rlkit.regimes.offline_to_online:OfflineToOnlineRegime",
    "pretrain": "rlkit.regimes.urlb:PretrainRegime",
    "finetune": "rlkit.regimes.urlb:FinetuneRegime",
}


def regime_class(name: str):
    from rlkit.errors import ConfigError

    if name not in REGIME_CLASSES:
        raise ConfigError(f"unknown regime '{name}'; choose one of: {', '.join(REGIME_CLASSES)}")
    module, cls = REGIME_CLASSES[name].split(":")
    return vars(importlib.import_module(module))[cls]
