"""Run logging: ``metrics.jsonl`` (one JSON object per log event), TensorBoard events under ``tb/`` (scalars,
evaluation videos in the image tab, the resolved config in the text tab), optionally Weights & Biases
(:mod:`rlkit.wandb_sink`), and a progress bar with steps/s and the last evaluation score.

Metric values may be tensors: they are converted in one batched device->host transfer at log time, so
training steps never synchronise with the host just to log.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch


def to_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Tensors and numpy scalars -> Python floats, with a single host sync for all tensors."""
    tensors = {k: v for k, v in metrics.items() if isinstance(v, torch.Tensor)}
    out: dict[str, float] = {}
    if tensors:
        stacked = torch.stack([v.detach().float().reshape(()) for v in tensors.values()]).cpu().tolist()
        out.update(zip(tensors, stacked))
    for key, value in metrics.items():
        if key in tensors:
            continue
        if isinstance(value, np.generic | np.ndarray):
            value = value.item()
        if isinstance(value, bool | int | float):
            out[key] = float(value)
    return out


class MetricAverager:
    """Accumulates tensor metrics between log events and returns their means (kept on device)."""

    def __init__(self) -> None:
        self._sums: dict[str, Any] = {}
        self._counts: dict[str, int] = {}

    def add(self, metrics: Mapping[str, Any]) -> None:
        for key, value in metrics.items():
            if isinstance(value, torch.Tensor):
                value = value.detach()
            self._sums[key] = self._sums[key] + value if key in self._sums else value
            self._counts[key] = self._counts.get(key, 0) + 1

    def pop(self) -> dict[str, Any]:
        means = {k: v / self._counts[k] for k, v in self._sums.items()}
        self._sums.clear()
        self._counts.clear()
        return means


class RunLogger:
    """Writes log events to JSONL and TensorBoard; keeps the best and last evaluation score."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, resume_step: int | None = None,
                 elapsed: float = 0.0, wandb: Mapping[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        if resume_step is not None:
            _truncate_after(self.metrics_path, resume_step)
        self._file = open(self.metrics_path, "a", buffering=1)  # noqa: SIM115 - closed in close()
        self._start = time.time() - elapsed
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=resume_step)
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                print("rlkit: tensorboard not installed; writing metrics.jsonl only", file=sys.stderr)
        config_path = self.run_dir / "config.yaml"
        if self._tb is not None and resume_step is None and config_path.exists():
            self._tb.add_text("config", "```yaml\n" + config_path.read_text() + "\n```", 0)
        self._wandb = None
        if wandb is not None:
            from rlkit.wandb_sink import WandbSink

            self._wandb = WandbSink(self.run_dir, **wandb)

    @property
    def elapsed(self) -> float:
        return time.time() - self._start

    def log(self, step: int, metrics: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> dict[str, float]:
        """Write one record: ``step``, ``time``, the string ``tags`` (e.g. the training phase; JSONL only)
        and the metrics as floats; returns the floats."""
        values = to_floats(metrics)
        record = {"step": int(step), "time": round(self.elapsed, 3), **(tags or {}), **values}
        self._file.write(json.dumps(record, allow_nan=True) + "\n")
        if self._tb is not None:
            for key, value in values.items():
                if math.isfinite(value):
                    self._tb.add_scalar(key, value, int(step))
        if self._wandb is not None:
            self._wandb.log(step, values)
        return values

    def log_video(self, step: int, tag: str, frames: list[np.ndarray], fps: float, path: str | Path) -> None:
        """An evaluation video: an animated GIF image summary in TensorBoard (what ``SummaryWriter.add_video``
        writes, encoded with imageio as :func:`rlkit.evaluation.video.gif_bytes`) and the MP4 at ``path``
        in W&B."""
        if self._tb is not None:
            from tensorboard.compat.proto.summary_pb2 import Summary

            from rlkit.evaluation.video import gif_bytes

            gif, h, w = gif_bytes(frames, fps)
            image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=gif)
            self._tb._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), int(step))
        if self._wandb is not None:
            self._wandb.log_video(step, tag, path, fps)

    def flush(self) -> None:
        self._file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self.flush()
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def finish(self, summary: Mapping[str, Any] | None = None) -> None:
        """After :meth:`close` and ``summary.json``: hand the summary to W&B and end its run."""
        if self._wandb is not None:
            self._wandb.finish(summary)
            self._wandb = None


def wandb_settings(cfg) -> dict[str, Any] | None:
    """The :class:`~rlkit.wandb_sink.WandbSink` keywords of a run config (``logging.wandb*``), None with W&B
    off."""
    node = cfg.get("logging")
    if node is None or not node.get("wandb"):
        return None
    from omegaconf import OmegaConf

    name = f"{cfg.env.get('name')}-{cfg.algo.get('name')}-seed{cfg.seed}"
    return {"project": str(node.get("wandb_project") or "rlkit"), "entity": node.get("wandb_entity"),
            "group": node.get("wandb_group"), "tags": [str(t) for t in node.get("wandb_tags") or []],
            "config": OmegaConf.to_container(cfg, resolve=True), "name": name}


def _truncate_after(path: Path, step: int) -> None:
    """Drop log lines written after ``step`` (by a run that was interrupted after its last checkpoint)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut by the interruption
    path.write_text("".join(line + "\n" for line in kept))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` (skipping a truncated last line)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class Progress:
    """A tqdm bar over training steps showing steps/s and the last evaluation score."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, desc: str = "train") -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True,
                            file=sys.stderr, mininterval=1.0, smoothing=0.05)
        self._last = initial
        self._postfix: dict[str, str] = {}

    def update(self, step: int, **postfix: Any) -> None:
        if self.bar is None:
            return
        for key, value in postfix.items():
            self._postfix[key] = f"{value:.4g}" if isinstance(value, float) else str(value)
        if postfix:
            self.bar.set_postfix(self._postfix, refresh=False)
        self.bar.update(step - self._last)
        self._last = step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
