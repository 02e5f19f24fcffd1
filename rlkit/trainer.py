"""``run(cfg)``: prepare the run directory, pick the regime the algorithm declares, and train.

The core never imports ``algorithms/``: the algorithm class is found from ``cfg.algo._target_``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlkit.checkpoint import latest_checkpoint
from rlkit.config import to_yaml
from rlkit.errors import ConfigError
from rlkit.fit import check_run_fit
from rlkit.regimes import regime_class
from rlkit.regimes.base import algorithm_regime
from rlkit.utils import atomic_write_text


def default_run_dir(cfg: DictConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(cfg.runs_root) / str(cfg.env.name) / str(cfg.algo.name) / f"seed{cfg.seed}-{stamp}"


def resolve_auto_resume(cfg: DictConfig) -> None:
    """``resume=auto`` (for cluster jobs that may be requeued): becomes ``true`` when ``run_dir`` holds a
    checkpoint, else ``false``. The files of an earlier attempt that never reached a checkpoint (it cannot
    be continued) are moved to ``run_dir/abandoned-<time>/``, not deleted, and the run starts afresh."""
    if cfg.resume != "auto":
        return
    run_dir = Path(str(cfg.run_dir)) if cfg.run_dir else None
    if run_dir is not None and latest_checkpoint(run_dir / "checkpoints") is not None:
        cfg.resume = True
        return
    cfg.resume = False
    if run_dir is None:
        return
    leftovers = [run_dir / name for name in ("metrics.jsonl", "tb", "checkpoints", "summary.json", "videos", "wandb",
                                             "wandb_run_id")
                 if (run_dir / name).exists()]
    if leftovers:
        aside = run_dir / f"abandoned-{time.strftime('%Y%m%d-%H%M%S')}"
        aside.mkdir(parents=True, exist_ok=True)
        for path in leftovers:
            path.rename(aside / path.name)
        print(f"rlkit: resume=auto: '{run_dir}' held no checkpoint; its files moved to '{aside}', starting "
              "the run", file=sys.stderr)


def prepare_run_dir(cfg: DictConfig) -> Path:
    """Resolve and create the run directory; refuse to overwrite a run or to resume nothing."""
    resolve_auto_resume(cfg)
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
    """Train one run as configured; returns the summary also written to ``summary.json`` (a population,
    ``train.population=S``: ``{population, run_dir, members: [each member's summary]}``).

    An algorithm/env pair that does not fit (:func:`rlkit.fit.check_run_fit`) is refused before the run
    directory is made."""
    check_run_fit(cfg)
    if cfg.train.get("population") is not None:  # S seeds in one process: rlkit/regimes/population.py
        from rlkit.regimes.population import run_population

        return run_population(cfg)
    run_dir = prepare_run_dir(cfg)
    regime = regime_class(algorithm_regime(cfg))(cfg, run_dir)
    summary = regime.run()
    summary["run_dir"] = str(run_dir)
    return summary
