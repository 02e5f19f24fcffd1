"""Evaluation: the evaluation loop, score normalisation tables and aggregate statistics."""

from rlkit.evaluation.evaluate import EvalResult, evaluate
from rlkit.evaluation.scores import normalize, reference
from rlkit.evaluation.statistics import iqm, optimality_gap, stratified_bootstrap_ci

__all__ = ["EvalResult", "evaluate", "iqm", "normalize", "optimality_gap", "reference",
           "stratified_bootstrap_ci"]
