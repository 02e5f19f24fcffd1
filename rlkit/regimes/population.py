"""``train.population=S``: ``S`` members of one configuration, with seeds ``seed .. seed+S-1``, trained in one
process as one stacked computation (:class:`rlkit.population.Population`).

Each member is an ordinary regime (the one the algorithm declares; it must support populations) with its own
config (``seed=seed+k``), run directory ``run_dir/seed_<k>/`` (config, metrics, TensorBoard, checkpoints,
summary: ``rlkit report``, ``diagnose`` and ``train ... resume=true`` work on it alone), data order (its
samplers are seeded by its seed), random draws (its own generator state, swapped in around everything the
member does), evaluation and checkpoints.  The loop is the regimes' own, driven for all members at once: every
member draws its batch, the population updates all members in one stacked step, then each member runs its
usual bookkeeping (:meth:`~rlkit.regimes.base.Regime.after_step`: logging, evaluation, checkpoints).

A population of one computes exactly what the ordinary run computes (CPU); a member of a larger population
stays within floating-point tolerance of its single run (the stacked kernels sum in other orders).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from rlkit.config import to_yaml
from rlkit.errors import CheckpointError, ConfigError
from rlkit.population import Population
from rlkit.regimes import regime_class
from rlkit.regimes.base import Regime, algorithm_class, algorithm_regime
from rlkit.regimes.interrupts import Preempted, stop_signals
from rlkit.runtime import configure_runtime, restored_process_runtime
from rlkit.utils import atomic_write_text, rng_state, set_rng_state


def population_size(cfg: DictConfig) -> int | None:
    """``train.population`` (None: an ordinary single run)."""
    size = cfg.train.get("population")
    return None if size is None else int(size)


def check_population(cfg: DictConfig) -> type[Regime]:
    """The regime class a population of ``cfg`` trains in; refuses (one line) an algorithm or regime that
    cannot train as a population."""
    algo_cls = algorithm_class(cfg)
    name = algorithm_regime(cfg)
    cls = regime_class(name)
    if not cls.population:
        raise ConfigError(f"train.population trains in the offline regime only, not regime={name}; "
                          "drop train.population (run seeds as separate jobs)")
    if not algo_cls.population:
        raise ConfigError(f"algo={cfg.algo.get('name')} cannot train as a population ({algo_cls.__name__} does not "
                          "write its update as update_with(ops, batch)); drop train.population")
    return cls


def member_config(cfg: DictConfig, k: int, run_dir: Path) -> DictConfig:
    """Member ``k``'s config: the population's with ``seed + k``, ``run_dir/seed_<k>``, no ``train.population``
    (so that it is also the config of the member's single run) and a progress bar on member 0 only."""
    member = copy.deepcopy(cfg)
    with open_dict(member):
        member.seed = int(cfg.seed) + k
        member.run_dir = str(run_dir / f"seed_{k}")
        member.train.population = None
        if k > 0:
            member.logging.progress = False
    return member


def default_population_dir(cfg: DictConfig, size: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    seeds = f"seeds{cfg.seed}-{int(cfg.seed) + size - 1}"
    return Path(cfg.runs_root) / str(cfg.env.name) / str(cfg.algo.name) / f"{seeds}-{stamp}"


def prepare_population_dir(cfg: DictConfig, size: int) -> Path:
    """The population's directory with its ``config.yaml``; the members' directories are prepared (and resume,
    ``auto`` included, resolved) by each member as for a single run."""
    if cfg.run_dir:
        run_dir = Path(str(cfg.run_dir))
    elif cfg.resume:
        raise ConfigError("resume needs the population to continue: add run_dir=PATH")
    else:
        run_dir = default_population_dir(cfg, size)
    if cfg.resume is True and not (run_dir / "config.yaml").exists():
        raise ConfigError(f"resume=true but '{run_dir}' holds no population (no config.yaml); check run_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", to_yaml(OmegaConf.merge(cfg, {"run_dir": str(run_dir)})))
    return run_dir


class PopulationRun:
    """Builds the members (each an ordinary regime in its ``seed_<k>`` directory) and drives them through the
    regimes' loop with one stacked update per step (module docstring)."""

    def __init__(self, cfg: DictConfig) -> None:
        from rlkit.trainer import prepare_run_dir

        self.size = population_size(cfg)
        if self.size is None or self.size < 1:
            raise ConfigError(f"bad value for 'train.population': {self.size}; it must be a positive integer")
        regime_cls = check_population(cfg)
        self.cfg = cfg
        self.run_dir = prepare_population_dir(cfg, self.size)
        self.members: list[Regime] = []
        for k in range(self.size):
            mcfg = member_config(cfg, k, self.run_dir)
            self.members.append(regime_cls(mcfg, prepare_run_dir(mcfg)))
        resumed = {bool(m.cfg.resume) for m in self.members}
        if len(resumed) > 1:
            raise CheckpointError(f"some members of the population in '{self.run_dir}' have checkpoints and some "
                                  "none; resume the members singly (run_dir=.../seed_<k> resume=true)")
        self.rng: list[dict[str, Any]] = []
        self.population: Population | None = None

    @contextlib.contextmanager
    def member_rng(self, k: int) -> Iterator[None]:
        """Member ``k``'s random state (python, numpy, torch) as the global one inside the block."""
        self.rng[k]["torch"] = self.population.rng[k]
        set_rng_state(self.rng[k])
        try:
            yield
        finally:
            self.rng[k] = rng_state()
            self.population.rng[k] = self.rng[k]["torch"]

    def run(self) -> dict[str, Any]:
        """Train every member to ``train.steps`` (or to an interrupt); returns the members' summaries."""
        with restored_process_runtime():
            return self._run()

    def _start(self) -> None:
        cfg = self.cfg
        runtime = configure_runtime(cfg.get("num_threads"), bool(cfg.get("flush_denormal", True)))
        for k, member in enumerate(self.members):
            member.start(runtime)
            self.rng.append(rng_state())
            if k == 0:
                refusal = member.algo.population_refusal()
                if refusal is not None:
                    raise ConfigError(f"train.population: {refusal}")
        steps = {m.step for m in self.members}
        if len(steps) > 1:
            raise CheckpointError(f"the members of the population in '{self.run_dir}' resumed at different steps "
                                  f"{sorted(steps)}; resume the members singly (run_dir=.../seed_<k> resume=true)")
        self.population = Population([m.algo.population_member() for m in self.members],
                                     [r["torch"] for r in self.rng])
        for member in self.members:
            member.algo_sync = self.population.sync

    def _run(self) -> dict[str, Any]:
        self._start()
        members, total = self.members, self.members[0].total_steps()
        interrupted = preempted = False
        with stop_signals() as preemption:
            try:
                while members[0].step < total:
                    batches = [m.next_batch() for m in members]
                    results = self.population.update(batches)
                    for k, member in enumerate(members):
                        with self.member_rng(k):
                            member.averager.add(member.apply_update(batches[k], results[k]))
                            prev = member.step
                            member.step += member.step_increment
                            member.after_step(prev)
                    if preemption.caught:
                        raise Preempted
                for k, member in enumerate(members):
                    with self.member_rng(k):
                        member.finish()
            except KeyboardInterrupt:
                interrupted = True
                self._each(lambda m: m.stop())
            except Preempted:
                interrupted = preempted = True
                self._each(lambda m: m.stop(preemption.name))
            finally:
                for member in members:
                    member.close_run()
        summaries = []
        for member in members:
            summary = member.write_summary(finished=not interrupted)
            member.logger.finish(summary)
            summaries.append({**summary, "run_dir": str(member.run_dir)})
        if preempted:
            preemption.forward()
        if interrupted:
            raise KeyboardInterrupt
        return {"population": self.size, "run_dir": str(self.run_dir), "members": summaries}

    def _each(self, action) -> None:
        for k, member in enumerate(self.members):
            with self.member_rng(k):
                action(member)


def run_population(cfg: DictConfig) -> dict[str, Any]:
    """Train the population ``train.population`` of ``cfg``; returns ``{population, run_dir, members}``."""
    return PopulationRun(cfg).run()
