"""Weights & Biases logging of a run (``logging.wandb=true``; ``pip install -e ".[wandb]"``).

What goes to W&B: every record of ``metrics.jsonl`` (same step, same keys), the resolved config, the
evaluation videos, and ``summary.json`` (as the run summary and as a file) when the run ends. The W&B files
live in ``RUN_DIR/wandb/``; the run id is kept in ``RUN_DIR/wandb_run_id`` so that ``resume=true`` continues
the same W&B run (``wandb.init(id=..., resume="allow")``). Without network or without a W&B API key the run is
logged in W&B's offline mode (``WANDB_MODE`` set by the user always wins), and rlkit says how to upload it.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rlkit.errors import ConfigError
from rlkit.utils import atomic_write_text

ID_FILE = "wandb_run_id"


def _import_wandb():
    try:
        import wandb
    except ImportError as exc:
        raise ConfigError('logging.wandb=true needs the wandb package: pip install -e ".[wandb]"') from exc
    return wandb


def _online(wandb, host: str = "api.wandb.ai", timeout: float = 3.0) -> bool:
    """Whether W&B's server answers and an API key is configured."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            pass
    except OSError:
        return False
    try:
        return bool(wandb.Api(timeout=timeout).api_key)
    except Exception:  # no key configured (wandb raises UsageError) or no settings file
        return False


class WandbSink:
    """One W&B run mirroring a run directory's logs."""

    def __init__(self, run_dir: str | Path, project: str, entity: str | None = None, group: str | None = None,
                 tags: list[str] | tuple[str, ...] = (), config: Mapping[str, Any] | None = None,
                 name: str | None = None) -> None:
        wandb = _import_wandb()
        self.wandb = wandb
        self.run_dir = Path(run_dir)
        id_path = self.run_dir / ID_FILE
        run_id = id_path.read_text().strip() if id_path.exists() else None
        mode = os.environ.get("WANDB_MODE") or ("online" if _online(wandb) else "offline")
        self.run = wandb.init(project=project, entity=entity, group=group, tags=list(tags) or None,
                              config=dict(config or {}), name=name, id=run_id,
                              resume="allow" if run_id else None, dir=str(self.run_dir), mode=mode,
                              settings=wandb.Settings(silent=True))
        run_id = self.run.id
        if not id_path.exists():
            atomic_write_text(id_path, run_id + "\n")
        self.offline = mode == "offline"
        if self.offline:
            print(f"rlkit: W&B run {run_id} is logged offline (no network or no API key); upload it with "
                  f"`wandb sync {Path(self.run.dir).parent}`", file=sys.stderr)
        else:
            print(f"rlkit: W&B run {self.run.url}", file=sys.stderr)

    def log(self, step: int, values: Mapping[str, float]) -> None:
        self.run.log(dict(values), step=int(step))

    def log_video(self, step: int, tag: str, path: str | Path, fps: float) -> None:
        self.run.log({tag: self.wandb.Video(str(path), fps=int(round(fps)), format="mp4")}, step=int(step))

    def finish(self, summary: Mapping[str, Any] | None) -> None:
        if summary is not None:
            for key, value in summary.items():
                if isinstance(value, bool | int | float | str) or value is None:
                    self.run.summary[key] = value
            path = self.run_dir / "summary.json"
            if path.exists():
                self.run.save(str(path), base_path=str(self.run_dir), policy="now")
        self.run.finish()
