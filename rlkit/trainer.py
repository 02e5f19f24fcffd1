"""``run(cfg)``: prepare the run directory, pick the regime the algorithm declares, and train.

The core never imports ``algorithms/``: the algorithm class is found from ``cfg.algo._target_``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlkit.config import to_yaml
from rlkit.errors import ConfigError
from rlkit.regimes import regime_class
from rlkit.regimes.base import algorithm_regime
from rlkit.utils import atomic_write_text


def default_run_dir(cfg: DictConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(cfg.runs_root) / str(cfg.env.name) / str(cfg.algo.name) / f"seed{cfg.seed}-{stamp}"


def prepare_run_dir(cfg: DictConfig) -> Path:
    """Resolve and create the run directory; refuse to overwrite a run or to resume nothing."""
    if cfg.run_dir:
        run_dir = Path(str(cfg.run_dir))
    elif cfg.resume:
        raise ConfigError("resume=true needs the run to continue: add run_dir=PATH")
    else:
        run_dir = default_run_dir(cfg)
    if cfg.resume:
        if not (run_dir / "config.yaml").exists():
            raise ConfigError(f"resume=true but '{run_dir}' holds no run (no config.yaml); check run_dir")
    elif (run_dir / "metrics.jsonl").exists() or (run_dir / "checkpoints").exists():
        raise ConfigError(f"'{run_dir}' already holds a run; add resume=true to continue it or choose "
                          "another run_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    with_run_dir = OmegaConf.merge(cfg, {"run_dir": str(run_dir)})
    atomic_write_text(run_dir / "config.yaml", to_yaml(with_run_dir))
    return run_dir


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train one run as configured; returns the summary also written to ``summary.json``."""
    run_dir = prepare_run_dir(cfg)
    regime = regime_class(algorithm_regime(cfg))(cfg, run_dir)
    summary = regime.run()
    summary["run_dir"] = str(run_dir)
    return summary
