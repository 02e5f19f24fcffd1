"""Score normalisation tables, all in one module.

* **D4RL** (Fu et al. 2020, ``d4rl/infos.py``): ``100 * (R - R_random) / (R_expert - R_random)``; the
  ``-v2`` locomotion datasets reuse the ``-v0`` random/expert references.
* **Atari** human-normalised score (Mnih et al. 2015; the Atari 100k table used by SPR, IRIS and
  STORM): ``(R - R_random) / (R_human - R_random)`` as a fraction (1.0 = human).
* **URLB** expert-normalised score (Laskin et al. 2021; expert = DDPG trained 2M frames with the task
  reward; values published in url_benchmark issue #1): ``R / R_expert`` as a fraction, no random term.

The units follow each community's convention: D4RL scores are in 0..100, Atari and URLB in fractions.
The reference numbers are the rows of :mod:`rlkit.envs.catalog`, next to the environments they score.
"""

from __future__ import annotations

import numpy as np

from rlkit.envs import catalog
from rlkit.errors import ConfigError

# The references live beside the environments they normalise, one row each, in rlkit.envs.catalog; they
# are read from the rows at each look-up, so a row added to the catalog is scored without a second edit.


def d4rl_references() -> dict[str, tuple[float, float]]:
    """``{task: (random, expert)}``: the locomotion rows and the other D4RL tasks (AntMaze, kitchen, pen)."""
    return {**{row.domain: (row.random, row.expert) for row in catalog.LOCOMOTION}, **catalog.D4RL_OTHER_REF}


def atari_references() -> dict[str, tuple[float, float]]:
    """``{ALE game title: (random, human)}``."""
    return {row.title: (row.random, row.human) for row in catalog.ATARI100K}


def urlb_references() -> dict[str, float]:
    """``{URLB task: expert return}``."""
    return {row.task: row.expert for row in catalog.URLB_TASKS}


D4RL_REF: dict[str, tuple[float, float]] = d4rl_references()
ATARI_RANDOM: dict[str, float] = {title: ref[0] for title, ref in atari_references().items()}
ATARI_HUMAN: dict[str, float] = {title: ref[1] for title, ref in atari_references().items()}
URLB_EXPERT: dict[str, float] = urlb_references()

TABLES = ("d4rl", "atari", "urlb")


def atari_key(game: str) -> str:
    """``ms_pacman`` / ``mspacman`` / ``MsPacman`` -> ``MsPacman``."""
    wanted = game.replace("_", "").replace("-", "").lower()
    titles = list(atari_references())
    for name in titles:
        if name.lower() == wanted:
            return name
    raise ConfigError(f"no Atari reference scores for game '{game}'; known: {', '.join(titles)}")


def reference(table: str, task: str) -> tuple[float, float]:
    """``(low, high)`` such that ``normalized = scale * (R - low) / (high - low)``."""
    if table == "d4rl":
        key = task.split("-")[0].lower()
        refs = d4rl_references()
        if key not in refs:
            raise ConfigError(f"no D4RL reference scores for '{task}'; known: {', '.join(refs)}")
        return refs[key]
    if table == "atari":
        return atari_references()[atari_key(task)]
    if table == "urlb":
        experts = urlb_references()
        if task not in experts:
            raise ConfigError(f"no URLB expert score for '{task}'; known: {', '.join(experts)}")
        return 0.0, experts[task]
    raise ConfigError(f"unknown score table '{table}'; choose one of: {', '.join(TABLES)}")


def normalize(table: str | None, task: str | None, returns):
    """Normalised score(s) of raw return(s); ``None`` when the env has no reference table."""
    if not table:
        return None
    low, high = reference(table, task)
    scale = 100.0 if table == "d4rl" else 1.0
    return scale * (np.asarray(returns, dtype=np.float64) - low) / (high - low)
