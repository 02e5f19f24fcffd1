"""FamO2O (Wang et al. 2023, "Train Once, Get a Family: State-Adaptive Balances for Offline-to-Online
Reinforcement Learning", NeurIPS): a universal model conditioned on a balance coefficient and a balance
model choosing it per state, on IQL, AWAC or CQL (``algo=famo2o algo.base=iql|awac|cql``)."""

from rlkit.algorithms.famo2o.family import BalanceModel, Family, map_coefficient, sinusoidal_encoding
from rlkit.algorithms.famo2o.preset import FamO2O

__all__ = ["BalanceModel", "Family", "FamO2O", "map_coefficient", "sinusoidal_encoding"]
