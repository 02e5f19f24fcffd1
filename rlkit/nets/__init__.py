"""Shared networks: MLPs (optionally LayerNorm'd), stacked ensembles, distribution heads, pixel encoders and
K-step latent transition models, augmentations, distributional (C51, noisy) Q heads, and the causal
transformer used by the world models."""

from rlkit.nets.augment import Augment, intensity, random_shift
from rlkit.nets.distributional import C51Head, NoisyLinear, categorical_projection
from rlkit.nets.distributions import TanhGaussian, TanhGaussianHead
from rlkit.nets.heads import TwoHotSymlog, categorical_kl, straight_through_sample, symexp, symlog, unimix_logits
from rlkit.nets.latent import (
    ConvTransition,
    DrQEncoder,
    MLPTransition,
    NatureEncoder,
    TransformerTransition,
    TransitionModel,
    make_transition,
    renormalize,
)
from rlkit.nets.mlp import MLP, EnsembleLinear, EnsembleMLP, QEnsemble, polyak_update
from rlkit.nets.normalizer import Normalizer
from rlkit.nets.transformer import CausalTransformer, TransformerConfig, TransformerState

__all__ = [
    "Augment",
    "C51Head",
    "ConvTransition",
    "DrQEncoder",
    "MLPTransition",
    "NatureEncoder",
    "NoisyLinear",
    "TransformerTransition",
    "TransitionModel",
    "make_transition",
    "categorical_projection",
    "intensity",
    "random_shift",
    "renormalize",
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
