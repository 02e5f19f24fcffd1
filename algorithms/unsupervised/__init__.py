"""Unsupervised RL on URLB (Laskin et al. 2021): the DDPG backbone, URLB's agents (RND, APT, ICM, Disagreement, DIAYN,
SMM, APS, ProtoRL), CIC and MOSS.

Agents pretrain reward-free (``regime=pretrain``, intrinsic reward) and finetune from a snapshot on a task
reward (``regime=finetune``); the regimes live in :mod:`rlkit.regimes.urlb`.
"""

from rlkit.algorithms.unsupervised.aps import APS
from rlkit.algorithms.unsupervised.apt import APT
from rlkit.algorithms.unsupervised.cic import CIC, CICNetworks, cic_contrastive_loss
from rlkit.algorithms.unsupervised.ddpg import DDPG
from rlkit.algorithms.unsupervised.diayn import DIAYN
from rlkit.algorithms.unsupervised.disagreement import Disagreement
from rlkit.algorithms.unsupervised.icm import ICM
from rlkit.algorithms.unsupervised.knn_reward import (
    CandidateQueue,
    RunningMeanVar,
    knn_distances,
    particle_entropy_reward,
)
from rlkit.algorithms.unsupervised.moss import MOSS, SkillSearch, mixture_reward, moss_mode, moss_skill
from rlkit.algorithms.unsupervised.proto import ProtoRL, sinkhorn_knopp
from rlkit.algorithms.unsupervised.rnd import RND
from rlkit.algorithms.unsupervised.smm import SMM

__all__ = [
    "APS",
    "APT",
    "CandidateQueue",
    "CIC",
    "CICNetworks",
    "DDPG",
    "DIAYN",
    "Disagreement",
    "ICM",
    "MOSS",
    "RND",
    "SMM",
    "ProtoRL",
    "RunningMeanVar",
    "SkillSearch",
    "cic_contrastive_loss",
    "knn_distances",
    "mixture_reward",
    "moss_mode",
    "moss_skill",
    "particle_entropy_reward",
    "sinkhorn_knopp",
]
