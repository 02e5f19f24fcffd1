"""Score normalisation tables, all in one module.

* **D4RL** (Fu et al. 2020, ``d4rl/infos.py``): ``100 * (R - R_random) / (R_expert - R_random)``; the
  ``-v2`` locomotion datasets reuse the ``-v0`` random/expert references.
* **Atari** human-normalised score (Mnih et al. 2015; the Atari 100k table used by SPR, IRIS and
  STORM): ``(R - R_random) / (R_human - R_random)`` as a fraction (1.0 = human).
* **URLB** expert-normalised score (Laskin et al. 2021; expert = DDPG trained 2M frames with the task
  reward; values published in url_benchmark issue #1): ``R / R_expert`` as a fraction, no random term.

The units follow each community's convention: D4RL scores are in 0..100, Atari and URLB in fractions.
"""

from __future__ import annotations

import numpy as np

from rlkit.errors import ConfigError

D4RL_REF = {  # task: (random, expert)
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
    "antmaze": (0.0, 1.0),
    "kitchen": (0.0, 4.0),
    "pen": (96.262799, 3076.8331),
}

ATARI_RANDOM = {
    "Alien": 227.8, "Amidar": 5.8, "Assault": 222.4, "Asterix": 210.0, "BankHeist": 14.2,
    "BattleZone": 2360.0, "Boxing": 0.1, "Breakout": 1.7, "ChopperCommand": 811.0,
    "CrazyClimber": 10780.5, "DemonAttack": 152.1, "Freeway": 0.0, "Frostbite": 65.2, "Gopher": 257.6,
    "Hero": 1027.0, "Jamesbond": 29.0, "Kangaroo": 52.0, "Krull": 1598.0, "KungFuMaster": 258.5,
    "MsPacman": 307.3, "Pong": -20.7, "PrivateEye": 24.9, "Qbert": 163.9, "RoadRunner": 11.5,
    "Seaquest": 68.4, "UpNDown": 533.4,
}
ATARI_HUMAN = {
    "Alien": 7127.7, "Amidar": 1719.5, "Assault": 742.0, "Asterix": 8503.3, "BankHeist": 753.1,
    "BattleZone": 37187.5, "Boxing": 12.1, "Breakout": 30.5, "ChopperCommand": 7387.8,
    "CrazyClimber": 35829.4, "DemonAttack": 1971.0, "Freeway": 29.6, "Frostbite": 4334.7, "Gopher": 2412.5,
    "Hero": 30826.4, "Jamesbond": 302.8, "Kangaroo": 3035.0, "Krull": 2665.5, "KungFuMaster": 22736.3,
    "MsPacman": 6951.6, "Pong": 14.6, "PrivateEye": 69571.3, "Qbert": 13455.0, "RoadRunner": 7845.0,
    "Seaquest": 42054.7, "UpNDown": 11693.2,
}

URLB_EXPERT = {
    "walker_stand": 984.0, "walker_walk": 971.0, "walker_run": 796.0, "walker_flip": 799.0,
    "quadruped_stand": 920.0, "quadruped_walk": 866.0, "quadruped_run": 888.0, "quadruped_jump": 888.0,
    "jaco_reach_top_left": 191.0, "jaco_reach_top_right": 223.0,
    "jaco_reach_bottom_left": 193.0, "jaco_reach_bottom_right": 203.0,
}

TABLES = ("d4rl", "atari", "urlb")


def atari_key(game: str) -> str:
    """``ms_pacman`` / ``mspacman`` / ``MsPacman`` -> ``MsPacman``."""
    wanted = game.replace("_", "").replace("-", "").lower()
    for name in ATARI_RANDOM:
        if name.lower() == wanted:
            return name
    raise ConfigError(f"no Atari reference scores for game '{game}'; known: {', '.join(ATARI_RANDOM)}")


def reference(table: str, task: str) -> tuple[float, float]:
    """``(low, high)`` such that ``normalized = scale * (R - low) / (high - low)``."""
    if table == "d4rl":
        key = task.split("-")[0].lower()
        if key not in D4RL_REF:
            raise ConfigError(f"no D4RL reference scores for '{task}'; known: {', '.join(D4RL_REF)}")
        return D4RL_REF[key]
    if table == "atari":
        key = atari_key(task)
        return ATARI_RANDOM[key], ATARI_HUMAN[key]
    if table == "urlb":
        if task not in URLB_EXPERT:
            raise ConfigError(f"no URLB expert score for '{task}'; known: {', '.join(URLB_EXPERT)}")
        return 0.0, URLB_EXPERT[task]
    raise ConfigError(f"unknown score table '{table}'; choose one of: {', '.join(TABLES)}")


def normalize(table: str | None, task: str | None, returns):
    """Normalised score(s) of raw return(s); ``None`` when the env has no reference table."""
    if not table:
        return None
    low, high = reference(table, task)
    scale = 100.0 if table == "d4rl" else 1.0
    return scale * (np.asarray(returns, dtype=np.float64) - low) / (high - low)
