"""Atomic checkpoints with everything needed for exact resume.

A checkpoint is one ``torch.save`` file written to a temp file and renamed into place, so a crash never
leaves a half-written checkpoint under the final name.  It holds the algorithm state (networks,
optimizers, counters), RNG states (python, numpy, torch[, cuda]), the regime's state (step counter,
replay buffer and sampler RNG for online regimes, environment state), the logger's state and the
config fingerprint: resuming under a config that changes anything but the budget, the device or logging
is refused with the names of the keys that differ.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import torch

from rlkit.errors import CheckpointError
from rlkit.utils import atomic_torch_save

FORMAT_VERSION = 1
_NAME = re.compile(r"step_(\d+)\.pt$")


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step_{step:010d}.pt"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoints in ``directory`` sorted by step (oldest first)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _NAME.search(p.name)]
    return sorted(found, key=lambda p: int(_NAME.search(p.name).group(1)))


def save_checkpoint(path: str | Path, payload: dict[str, Any], keep: int | None = None) -> Path:
    """Serialise ``payload`` atomically; with ``keep``, delete all but the newest ``keep`` siblings."""
    path = Path(path)
    atomic_torch_save(path, {"format_version": FORMAT_VERSION, **payload})
    if keep:
        for old in list_checkpoints(path.parent)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint or raise :class:`CheckpointError` naming the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint '{path}' is corrupt or truncated ({type(exc).__name__}); delete it to resume "
            "from the previous checkpoint, or start a new run"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint '{path}' is not an rlkit checkpoint of format {FORMAT_VERSION}")
    return payload


def latest_checkpoint(directory: str | Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def load_latest_intact(directory: str | Path, map_location: str | torch.device = "cpu"
                       ) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in ``directory`` that loads, with its payload (None when there is none).

    A newer one that is corrupt or truncated (a crash outside the atomic rename, a full disk, a copy cut
    short) is renamed aside to ``<name>.corrupt`` (never deleted), with a one-line warning naming it, and
    the previous checkpoint is tried.
    """
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load_checkpoint(path, map_location=map_location)
        except CheckpointError as exc:
            aside = path.with_name(path.name + ".corrupt")
            path.rename(aside)
            print(f"rlkit: warning: {str(exc).split(';')[0]}; moved it to '{aside.name}' and resuming from the "
                  "previous checkpoint", file=sys.stderr)
    return None
