"""The dataset ids rlkit can collect locally (:mod:`rlkit.data.collect`), for the collector and for
:func:`rlkit.data.sources.load`, which asks before falling back to collection."""

from __future__ import annotations

import re

from rlkit.errors import ConfigError

LEVELS = ("random", "medium", "expert", "medium-replay", "medium-expert")
_ID = re.compile(r"^(hopper|halfcheetah|walker2d|ant)-(.+?)(?:-v\d+)?$")


def parse_dataset_id(dataset_id: str) -> tuple[str, str]:
    """``hopper-medium-replay-v2`` -> ``("hopper", "medium-replay")``; a ConfigError names what rlkit can collect."""
    if dataset_id.lower().startswith("antmaze"):
        raise ConfigError(f"cannot collect '{dataset_id}' locally: rlkit ships no AntMaze behaviour policy; "
                          f"get the D4RL file (`rlkit data download {dataset_id}`) or pass "
                          "env.dataset.path=FILE with env.dataset.source=file")
    m = _ID.match(dataset_id.lower())
    if not m or m.group(2) not in LEVELS:
        raise ConfigError(f"cannot collect '{dataset_id}' locally: expected <task>-<level> with task in "
                          f"hopper/halfcheetah/walker2d/ant and level in {', '.join(LEVELS)}")
    return m.group(1), m.group(2)
