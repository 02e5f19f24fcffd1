"""What every training regime shares: run-directory handling, the step loop with periodic logging,
evaluation and checkpointing, exact resume, and the run summary.

A regime subclass builds its pieces in ``setup()`` and advances training by one unit in
``train_step()`` (one gradient step offline, one vector-env step online).  It never knows an
algorithm's losses; the algorithm never owns a loop.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlkit import envs
from rlkit.algorithm import Algorithm, URLBAddon, URLBAgent
from rlkit.checkpoint import checkpoint_path, load_latest_intact, save_checkpoint
from rlkit.config import config_fingerprint, resume_differences
from rlkit.errors import CheckpointError, ConfigError
from rlkit.evaluation.evaluate import EvalResult, describe_protocol, episode_seed_base, evaluate
from rlkit.evaluation.video import EpisodeRecorder, write_episode_videos
from rlkit.logger import MetricAverager, Progress, RunLogger, wandb_settings
from rlkit.regimes.interrupts import Preempted, stop_signals
from rlkit.runtime import configure_runtime, restored_process_runtime
from rlkit.utils import atomic_write_text, derive_seed, resolve_device, rng_state, seed_everything, set_rng_state

META_KEYS = ("name", "description", "per_family", "per_regime", "paper", "protocol_per_family", "choices")


def build_algorithm(cfg: DictConfig, observation_space, action_space, device: torch.device, **extra):
    """Instantiate ``cfg.algo`` (its ``_target_`` class) with the env's spaces and the device."""

    params = OmegaConf.to_container(cfg.algo, resolve=True)
    target = params.pop("_target_", None)
    for key in META_KEYS:
        params.pop(key, None)
    if not target:
        raise ConfigError(f"algo config '{cfg.algo.get('name')}' has no _target_ class")
    cls = algorithm_class(cfg)
    addon = build_addon(cfg, cls, observation_space, device)
    if addon is not None:
        extra["addon"] = addon
    try:
        return cls(observation_space=observation_space, action_space=action_space, device=device,
                   **params, **extra)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            bad = str(exc).split("'")[1] if "'" in str(exc) else str(exc)
            raise ConfigError(f"algorithm {target.rsplit('.', 1)[-1]} has no parameter '{bad}'; "
                              f"check algo.{bad}") from exc
        raise


def addon_name(cfg: DictConfig) -> str | None:
    """The add-on of the run (``addon=NAME``), None without one."""
    node = cfg.get("addon")
    return str(node.get("name")) if node is not None and node.get("_target_") else None


def check_addon(cfg: DictConfig, algo_cls: type[Algorithm]) -> None:
    """Refuse an add-on the algorithm cannot take (the config alone decides: checked before any data is loaded
    or collected, by :func:`rlkit.fit.check_run_fit`, and again when the add-on is built)."""
    name = addon_name(cfg)
    if name is not None and not issubclass(algo_cls, URLBAgent):
        raise ConfigError(f"addon={name} augments URLB agents only (algo=rnd, apt, icm, disagreement, cic, moss, "
                          f"ddpg); algo={cfg.algo.get('name')} is not one: drop addon={name}")


def build_addon(cfg: DictConfig, algo_cls: type[Algorithm], observation_space, device: torch.device):
    """Instantiate ``cfg.addon`` (``_target_``, a :class:`~rlkit.algorithm.URLBAddon`) for a URLB agent; refuse
    it for any other algorithm.  None without an add-on."""
    name = addon_name(cfg)
    if name is None:
        return None
    check_addon(cfg, algo_cls)
    from hydra.utils import get_class

    params = OmegaConf.to_container(cfg.addon, resolve=True)
    cls = get_class(str(params.pop("_target_")))
    for key in META_KEYS:
        params.pop(key, None)
    if not (isinstance(cls, type) and issubclass(cls, URLBAddon)):
        raise ConfigError(f"addon '{name}' ({cfg.addon._target_}) is not an rlkit URLBAddon subclass")
    try:
        return cls(observation_space=observation_space, device=device, **params)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            bad = str(exc).split("'")[1] if "'" in str(exc) else str(exc)
            raise ConfigError(f"addon {name} has no parameter '{bad}'; check addon.{bad}") from exc
        raise


def env_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The env's constructor keywords (``env.kwargs``) as a plain dict."""
    kwargs = cfg.env.get("kwargs")
    return OmegaConf.to_container(kwargs, resolve=True) if kwargs is not None else {}


def eval_env_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The evaluation env's constructor keywords: ``env.kwargs`` updated by ``env.eval_kwargs`` (e.g. the SPR
    protocol's ``training: false``: raw scores and game-over episodes when evaluating)."""
    extra = cfg.env.get("eval_kwargs")
    return {**env_kwargs(cfg), **(OmegaConf.to_container(extra, resolve=True) if extra is not None else {})}


def algorithm_class(cfg: DictConfig) -> type[Algorithm]:
    """The class named by ``cfg.algo._target_``, checked to implement the contract."""
    from hydra.utils import get_class

    cls = get_class(str(cfg.algo._target_))
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise ConfigError(f"algo '{cfg.algo.get('name')}' ({cfg.algo._target_}) is not an rlkit Algorithm "
                          "subclass; see the contract in rlkit/algorithm.py")
    return cls


def algorithm_regime(cfg: DictConfig) -> str:
    """``cfg.regime`` when set (it must be one the algorithm declares), else the algorithm's default."""
    regimes = algorithm_class(cfg).regimes
    if not cfg.get("regime"):
        return regimes[0]
    if str(cfg.regime) not in regimes:
        raise ConfigError(f"algo={cfg.algo.get('name')} does not train in regime={cfg.regime}; it declares "
                          f"{', '.join(regimes)}")
    return str(cfg.regime)


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("rlkit", "torch", "numpy", "gymnasium", "mujoco", "dm_control", "ale-py", "hydra-core"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


class Regime:
    """Base of the training regimes; subclasses implement ``setup``, ``train_step`` and state hooks."""

    name = "base"
    #: whether a population can train in this regime: it then implements ``next_batch()`` and
    #: ``apply_update(batch, result) -> metrics`` (``train_step`` = both around ``algo.update``)
    population = False
    #: how many training-step units one call to ``train_step`` advances
    step_increment = 1

    def __init__(self, cfg: DictConfig, run_dir: str | Path) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = resolve_device(cfg.device)
        self.step = 0
        self.best_score: float | None = None
        self.last_eval: EvalResult | None = None
        self.provenance: dict[str, Any] | None = None
        #: thread count and subnormal flushing chosen at start (rlkit.runtime.configure_runtime)
        self.runtime: dict[str, Any] | None = None
        self.averager = MetricAverager()
        self.eval_env = None
        self.algo = None
        #: ``step // eval.video_interval`` at the last recorded evaluation
        self._video_mark = 0
        #: set by a population driver: copies the member's current tensors into ``self.algo`` (sync_algo)
        self.algo_sync: Callable[[], None] | None = None

    # ---------------------------------------------------------------- subclass hooks
    def setup(self) -> None:
        raise NotImplementedError

    def train_step(self) -> dict[str, Any]:
        raise NotImplementedError

    def regime_state(self) -> dict[str, Any]:
        return {}

    def load_regime_state(self, state: dict[str, Any]) -> None:
        pass

    def total_steps(self) -> int:
        """The training-step units of the whole run (``train.steps``; a multi-phase regime sums its phases)."""
        return int(self.cfg.train.steps)

    def phase(self) -> str | None:
        """The name of the phase the current step belongs to (logged with every record), or None."""
        return None

    def phase_ends(self, prev: int) -> bool:
        """Whether the step from ``prev`` to ``self.step`` completed a phase other than the last one: the
        loop then logs the phase's metrics, scores it with ``eval.final_episodes`` and checkpoints."""
        return False

    def end_phase(self, result: EvalResult) -> None:
        """Called with the evaluation that scores the phase that just ended (see :meth:`phase_ends`)."""

    def summary_extra(self) -> dict[str, Any]:
        """Entries the regime adds to ``summary.json``."""
        return {}

    def close(self) -> None:
        for env in (self.eval_env,):
            if env is not None:
                env.close()

    # ---------------------------------------------------------------- shared pieces
    def make_eval_env(self):
        return envs.make_vector(self.cfg.env.id, self.cfg.eval.num_envs, autoreset=False, **eval_env_kwargs(self.cfg))

    def evaluate(self, episodes: int) -> EvalResult:
        """One evaluation; its first episode is recorded when it is the first evaluation at or after the next
        multiple of ``eval.video_interval`` (:meth:`publish_video`)."""
        self.sync_algo()
        score = self.cfg.env.get("score") or {}
        seed = episode_seed_base(self.cfg.seed)
        interval = int(self.cfg.eval.get("video_interval") or 0)
        recorder = None
        if interval > 0 and self.step // interval > self._video_mark:
            recorder = EpisodeRecorder([0], size=self.cfg.eval.get("video_size"))
        try:
            result = evaluate(self.algo, self.eval_env, episodes, seed=seed,
                              deterministic=self.cfg.eval.deterministic, score_table=score.get("table"),
                              score_task=score.get("task"), protocol=str(self.cfg.eval.get("protocol", "assigned")),
                              recorder=recorder)
        finally:
            if recorder is not None:
                recorder.close()
        if recorder is not None:
            self._video_mark = self.step // interval
            self.publish_video(recorder, result)
        return result

    def publish_video(self, recorder: EpisodeRecorder, result: EvalResult) -> None:
        """The recorded episode as ``videos/step_<k>/episode_0_return_<R>.mp4``, in TensorBoard's image tab
        (``eval/video``) and in W&B."""
        for path in write_episode_videos(recorder, result, self.run_dir, self.step):
            self.logger.log_video(self.step, "eval/video", recorder.frames[0], recorder.fps, path)

    def eval_protocol(self, episodes: int) -> str:
        """The label of this run's evaluation protocol (env protocol, episode selection, policy mode)."""
        ev = self.cfg.eval
        return describe_protocol(episodes, int(ev.num_envs), bool(ev.deterministic),
                                 str(ev.get("protocol", "assigned")),
                                 envs.protocol_label(str(self.cfg.env.id), env_kwargs(self.cfg)))

    def _record_eval(self, result: EvalResult) -> dict[str, float]:
        self.last_eval = result
        score = result.normalized_mean if result.normalized is not None else result.return_mean
        if self.best_score is None or score > self.best_score:
            self.best_score = score
        return result.metrics()

    def checkpoint_payload(self) -> dict[str, Any]:
        fingerprint, flat = config_fingerprint(self.cfg)
        return {
            "step": self.step,
            "regime": self.name,
            "config_fingerprint": fingerprint,
            "config_flat": flat,
            "algo": self.algo.state_dict(),
            "rng": rng_state(),
            "regime_state": self.regime_state(),
            "averager": self.averager.__dict__,
            "best_score": self.best_score,
            "last_eval": self.last_eval,
            "elapsed": self.logger.elapsed,
            "runtime": self.runtime,
        }

    def save(self) -> Path:
        self.sync_algo()
        ckpt_dir = self.run_dir / "checkpoints"
        return save_checkpoint(checkpoint_path(ckpt_dir, self.step), self.checkpoint_payload(),
                               keep=self.cfg.checkpoint.keep)

    def restore(self, payload: dict[str, Any]) -> None:
        _, flat = config_fingerprint(self.cfg)
        saved = {k: v for k, v in payload.get("config_flat", {}).items() if v is not None}
        differing = resume_differences(saved, flat)
        if differing:
            raise CheckpointError(
                f"checkpoint in {self.run_dir} was written by a different configuration (differs in: "
                f"{', '.join(differing[:8])}); resume with the original settings or use a new run_dir"
            )
        if payload.get("regime") != self.name:
            raise CheckpointError(f"checkpoint is from regime '{payload.get('regime')}', not '{self.name}'")
        try:
            self.algo.load_state_dict(payload["algo"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint does not match the algorithm's networks: "
                                  f"{str(exc).splitlines()[0]}") from exc
        self.load_regime_state(payload["regime_state"])
        set_rng_state(payload["rng"])
        self.averager.__dict__.update(payload["averager"])
        self.step = int(payload["step"])
        self.best_score = payload["best_score"]
        self.last_eval = payload["last_eval"]

    def probe_batch(self, n: int):
        """``n`` transitions drawn uniformly with a fixed seed from the replay storage, independent of (and
        not advancing) the training samplers' RNG: the fixed probe set of diagnostics such as SEEM."""
        from rlkit.replay import ReplayBuffer, UniformSampler

        probe_sampler = UniformSampler(seed=derive_seed(int(self.cfg.seed), "diagnostics probe"))
        view = ReplayBuffer(self.buffer.storage, probe_sampler, device=self.device)
        return view.sample(min(n, len(self.buffer)))

    def build_monitor(self):
        """The diagnostics monitor (SEEM and Q statistics) when ``diagnostics.seem.interval > 0``."""
        seem = self.cfg.get("diagnostics", {}).get("seem", {})
        if not seem or int(seem.get("interval", 0)) <= 0:
            return None
        from rlkit.diagnostics.monitor import DiagnosticsMonitor

        return DiagnosticsMonitor(self.algo, probe_fn=self.probe_batch, interval=int(seem.interval),
                                  batch=int(seem.batch))

    # ---------------------------------------------------------------- the loop
    def run(self) -> dict[str, Any]:
        """Train to ``train.steps`` (or to an interrupt); the process's thread count and subnormal-float mode
        are the run's while it lasts and are restored afterwards (runs started in-process, e.g. tests)."""
        with restored_process_runtime():
            return self._run()

    def _run(self) -> dict[str, Any]:
        self.start(configure_runtime(self.cfg.get("num_threads"), bool(self.cfg.get("flush_denormal", True))))
        total = self.total_steps()
        interrupted = preempted = False
        with stop_signals() as preemption:
            try:
                while self.step < total:
                    prev = self.step
                    self.averager.add(self.train_step())
                    self.step += self.step_increment
                    self.after_step(prev)
                    if preemption.caught:
                        raise Preempted
                self.finish()
            except KeyboardInterrupt:
                interrupted = True
                self.stop()
            except Preempted:
                interrupted = preempted = True
                self.stop(preemption.name)
            finally:
                self.close_run()
        summary = self.write_summary(finished=not interrupted)
        self.logger.finish(summary)
        if preempted:
            preemption.forward()  # submitit's handler requeues the job and exits
        if interrupted:
            raise KeyboardInterrupt
        return summary

    # ---------------------------------------------------------------- the loop's pieces (a population drives
    # several regimes through them: rlkit.regimes.population)
    def start(self, runtime: dict[str, Any]) -> None:
        """Seed, build (``setup``), restore the newest checkpoint when resuming, open the logger and the progress
        bar; ``runtime`` is the thread count and subnormal mode chosen for the process."""
        cfg = self.cfg
        self.runtime = runtime
        seed_everything(int(cfg.seed), deterministic=cfg.get("deterministic", True))
        self.setup()
        self.monitor = self.build_monitor()
        resume_payload = None
        if cfg.resume:
            found = load_latest_intact(self.run_dir / "checkpoints", map_location=self.device)
            if found is None:
                raise CheckpointError(f"resume=true but {self.run_dir / 'checkpoints'} holds no intact checkpoint; "
                                      "drop resume=true to start a new run")
            resume_payload = found[1]
            self.restore(resume_payload)
            saved_runtime = resume_payload.get("runtime")
            if cfg.get("num_threads") is None and saved_runtime and saved_runtime != self.runtime:
                # the load-based thread count is the run's, not the resumption's: intra-op reductions depend
                # on it, so a resumed run keeps the original count to stay bit-exact on CPU
                self.runtime = configure_runtime(saved_runtime["num_threads"], saved_runtime["flush_denormal"])
        interval = int(cfg.eval.get("video_interval") or 0)
        self._video_mark = self.step // interval if interval > 0 else 0
        self.logger = RunLogger(self.run_dir, tensorboard=cfg.logging.tensorboard,
                                resume_step=self.step if resume_payload else None,
                                elapsed=resume_payload["elapsed"] if resume_payload else 0.0,
                                wandb=wandb_settings(cfg))
        self.progress = Progress(self.total_steps(), initial=self.step, enabled=cfg.logging.progress,
                                 desc=f"{self.name}")
        self.started, self.start_step = time.time(), self.step
        if self.step == 0 and cfg.eval.at_start and int(cfg.eval.interval) > 0:
            self._log(0, self._record_eval(self.evaluate(cfg.eval.episodes)))

    def after_step(self, prev: int) -> None:
        """Everything due after the training step that went from ``prev`` to ``self.step``: diagnostics, logging,
        evaluation, checkpoint, progress."""
        cfg, total = self.cfg, self.total_steps()
        log_every, eval_every = int(cfg.train.log_interval), int(cfg.eval.interval)
        ckpt_every = int(cfg.checkpoint.interval)
        phase_end = self.step < total and self.phase_ends(prev)
        if self.monitor is not None and self.monitor.due(prev, self.step):
            self.sync_algo()
            diag = self.monitor.maybe_run(prev, self.step)
            if diag:
                self._log(self.step, diag)
        if _crossed(prev, self.step, log_every) or phase_end:
            speed = (self.step - self.start_step) / max(time.time() - self.started, 1e-9)
            values = self._log(self.step, {**self.averager.pop(), **self.interval_metrics(),
                                           "time/steps_per_s": speed})
            self.on_log(values)
        if phase_end:  # the phase's score, with as many episodes as a final evaluation
            result = self.evaluate(int(cfg.eval.final_episodes or cfg.eval.episodes))
            self._log(self.step, self._record_eval(result))
            self.end_phase(result)
        elif eval_every > 0 and _crossed(prev, self.step, eval_every) and self.step < total:
            metrics = self._record_eval(self.evaluate(cfg.eval.episodes))
            self._log(self.step, metrics)
        if (phase_end or ckpt_every > 0 and _crossed(prev, self.step, ckpt_every)) and self.step < total:
            self.save()
        postfix = {}
        if self.last_eval is not None:
            postfix["eval"] = (self.last_eval.normalized_mean if self.last_eval.normalized is not None
                               else self.last_eval.return_mean)
        self.progress.update(self.step, **postfix)

    def finish(self) -> None:
        """The final evaluation (``eval.final_episodes``) and checkpoint."""
        final_episodes = int(self.cfg.eval.final_episodes or self.cfg.eval.episodes)
        self._log(self.step, self._record_eval(self.evaluate(final_episodes)))
        self.save()

    def stop(self, preempted_by: str | None = None) -> None:
        """Checkpoint a run stopped by the user (Ctrl-C) or preempted (by signal ``preempted_by``)."""
        self.save()
        if preempted_by is None:
            print(f"\nrlkit: interrupted at step {self.step}; checkpoint saved. Continue with "
                  f"`rlkit train ... run_dir={self.run_dir} resume=true`", file=sys.stderr)
        else:
            print(f"\nrlkit: preempted ({preempted_by}) at step {self.step}; checkpoint saved. A requeued "
                  "job with resume=auto (or resume=true) continues it", file=sys.stderr)

    def close_run(self) -> None:
        """Close the progress bar, the logger and the envs (the summary is written after)."""
        self.progress.close()
        self.logger.close()
        self.close()

    def sync_algo(self) -> None:
        """Bring ``self.algo``'s own tensors up to date before they are read outside ``update`` (evaluation,
        checkpoints, diagnostics).  A single run's always are; a population member's are copied from the
        population's stacked tensors (:class:`rlkit.population.Population`), which sets :attr:`algo_sync`."""
        if self.algo_sync is not None:
            self.algo_sync()

    def _log(self, step: int, metrics: dict[str, Any]) -> dict[str, float]:
        phase = self.phase()
        return self.logger.log(step, metrics, tags={"phase": phase} if phase else None)

    def interval_metrics(self) -> dict[str, float]:
        """Values sampled once per log interval (not averaged over steps), e.g. replay priorities."""
        return {}

    def on_log(self, values: dict[str, float]) -> None:
        """Hook for regimes that react to logged values (diagnostics)."""

    def write_summary(self, finished: bool) -> dict[str, Any]:
        last = self.last_eval
        summary = {
            "algo": self.cfg.algo.get("name"),
            "env": self.cfg.env.get("name"),
            "seed": int(self.cfg.seed),
            "regime": self.name,
            "finished": finished,
            "steps": self.step,
            "wall_time_s": round(self.logger.elapsed, 2),
            "final_return": last.return_mean if last else None,
            "final_return_std": float(np.std(last.returns)) if last else None,
            "final_normalized_score": last.normalized_mean if last else None,
            "best_score": self.best_score,
            "score_table": (self.cfg.env.get("score") or {}).get("table"),
            "final_returns": [float(x) for x in last.returns] if last else [],
            "eval_protocol": self.eval_protocol(len(last.returns)) if last else None,
            "dataset_provenance": self.provenance,
            "git_commit": git_commit(),
            "versions": package_versions(),
            "device": str(self.device),
            "runtime": self.runtime,
            "config_fingerprint": config_fingerprint(self.cfg)[0],
            **self.summary_extra(),
        }
        atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2, default=str))
        return summary


def _crossed(prev: int, now: int, interval: int) -> bool:
    return interval > 0 and now // interval > prev // interval
