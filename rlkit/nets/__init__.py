"""Shared networks: MLPs (optionally LayerNorm'd), stacked ensembles, distribution heads, encoders,
and the causal transformer used by the world models."""

from rlkit.nets.distributions import TanhGaussian, TanhGaussianHead
from rlkit.nets.heads import TwoHotSymlog, categorical_kl, straight_through_sample, symexp, symlog, unimix_logits
from rlkit.nets.mlp import MLP, EnsembleLinear, EnsembleMLP, QEnsemble, polyak_update
from rlkit.nets.normalizer import Normalizer
from rlkit.nets.transformer import CausalTransformer, TransformerConfig, TransformerState

__all__ = [
    "CausalTransformer",
    "TransformerConfig",
    "TransformerState",
    "TwoHotSymlog",
    "categorical_kl",
    "straight_through_sample",
    "symexp",
    "symlog",
    "unimix_logits",
    "MLP",
    "EnsembleLinear",
    "EnsembleMLP",
    "Normalizer",
    "QEnsemble",
    "TanhGaussian",
    "TanhGaussianHead",
    "polyak_update",
]
