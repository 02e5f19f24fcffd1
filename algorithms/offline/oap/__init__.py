"""OAP (Yang et al. ICML 2023): offline RL with action-preference queries, wrapped around TD3+BC or IQL."""

from rlkit.algorithms.offline.oap.oap import OAP

__all__ = ["OAP"]
