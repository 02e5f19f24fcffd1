"""The ``rlkit`` command line.

    rlkit train algo=NAME env=NAME [key=value ...]     train one run (Hydra overrides)
    rlkit train -m seed=0,1,2 algo=iql env=...          a multirun sweep (joblib, or hydra/launcher=slurm)
    rlkit eval RUN_DIR [--episodes N] [--checkpoint P]  re-evaluate a saved policy (--video: MP4 per episode)
    rlkit dream RUN_DIR [--context 8 --horizon 32]      a world model's dreams next to reality (STORM)
    rlkit list [algos|envs|samplers|addons]             registered options with descriptions
    rlkit report RUN_DIR [RUN_DIR ...]                  aggregate runs into tables and curves

Bad input (unknown option or key, bad value, missing or malformed file, corrupt checkpoint) prints one
line to stderr and exits with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback
from collections.abc import Callable, Sequence

from rlkit.errors import RlkitError

TRAIN_HELP = """\
usage: rlkit train [-m] [--debug] [--cfg] [KEY=VALUE ...]

Train one run, composed from configs/: algo=NAME env=NAME sampler=NAME plus any overrides.

common overrides:
  seed=INT                 random seed (default 0)
  train.population=S       train seeds seed..seed+S-1 as one stacked population in one process (offline
                           td3bc/iql/cql/awac/oper); each member in run_dir/seed_<k>/
  device=auto|cpu|cuda     where to train (default auto)
  train.steps=INT          gradient steps (offline) or agent steps (online)
  train.batch_size=INT     minibatch size
  eval.interval=INT        steps between evaluations (0: final only)
  eval.episodes=INT        episodes per evaluation
  eval.video_interval=INT  record the first evaluation episode every INT steps (RUN_DIR/videos, TensorBoard)
  logging.wandb=true       also log to Weights & Biases (pip install -e ".[wandb]"; offline without network)
  run_dir=PATH             where the run is written (default runs/<env>/<algo>/seed<seed>-<time>)
  resume=true              continue the newest checkpoint in run_dir, bit for bit on CPU
  resume=auto              continue it if run_dir holds one, else start (requeued cluster jobs)
  eval.protocol=NAME       assigned (unbiased, default) | first_finished (STORM's evaluation)
  algo.<param>=VALUE       any algorithm hyperparameter (see configs/algo/<name>.yaml)

options:
  -m, --multirun           sweep comma-separated values (seed=0,1,2); local joblib processes by
                           default, or hydra/launcher=slurm (a Slurm array job, needs .[cluster])
  --cfg                    print the composed config and exit
  --debug                  show Python tracebacks

examples:
  rlkit train algo=sac env=pendulum
  rlkit train algo=td3bc env=hopper-medium train.steps=100000 seed=1
  rlkit train -m algo=iql env=hopper-medium seed=0,1,2
  rlkit train -m hydra/launcher=slurm resume=auto hydra.launcher.partition=gpu algo=storm \
      env=atari100k-pong,atari100k-breakout seed=0,1,2,3,4
  rlkit list
"""


def _debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in argv


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    try:
        return _dispatch(argv)
    except RlkitError as exc:
        if debug:
            traceback.print_exc()
        print(f"rlkit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        print("\nrun `rlkit COMMAND --help` for the options of a command")
        return 0
    command, rest = argv[0], argv[1:]
    commands: dict[str, Callable[[list[str]], int]] = {
        "train": cmd_train,
        "eval": cmd_eval,
        "list": cmd_list,
        "report": cmd_report,
        "dream": cmd_dream,
    }
    for name, target in (("data", "rlkit.data.cli:cmd_data"), ("diagnose", "rlkit.diagnostics.cli:cmd_diagnose")):
        module, func = target.split(":")
        try:
            commands[name] = getattr(importlib.import_module(module), func)
        except ImportError:
            continue
    if command not in commands:
        raise RlkitError(f"unknown command '{command}'; choose one of: {', '.join(commands)}")
    return commands[command](rest)


# ---------------------------------------------------------------------------- train
def cmd_train(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(TRAIN_HELP)
        return 0
    multirun = any(a in ("-m", "--multirun") for a in args)
    show_cfg = "--cfg" in args
    overrides = [a for a in args if a not in ("-m", "--multirun", "--cfg")]
    bad = [a for a in overrides if a.startswith("-")]
    if bad:
        raise RlkitError(f"unknown option '{bad[0]}' for `rlkit train`; see `rlkit train --help`")
    if multirun:
        return _multirun(overrides)
    from rlkit.config import compose, to_yaml

    cfg = compose(overrides)
    if show_cfg:
        print(to_yaml(cfg))
        return 0
    from rlkit import trainer

    summary = trainer.run(cfg)
    _print_summary(summary)
    return 0


def _print_summary(summary: dict) -> None:
    for member in summary.get("members", ()):  # a population (train.population=S)
        _print_summary(member)
    if "members" in summary:
        return
    score, final = summary.get("final_normalized_score"), summary.get("final_return")
    text = (f"rlkit: {summary['algo']} on {summary['env']} seed {summary['seed']}: "
            f"{summary['steps']} steps in {summary['wall_time_s']:.0f}s, final return "
            + ("- (stopped before its first evaluation)" if final is None else f"{final:.2f}"))
    if score is not None:
        text += f", normalized score {score:.2f}"
    phases = summary.get("phases")
    if phases and None not in phases.values():
        text += f" (offline phase {phases['offline']:.2f} -> online {phases['online']:.2f})"
    print(text + f" -> {summary.get('run_dir')}", file=sys.stderr)


def _sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """Expand comma/range sweeps into the list of per-job override lists (Hydra's grammar)."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise RlkitError(f"cannot parse the overrides: {str(exc).splitlines()[0]}") from exc
    axes = []
    for ov in parsed:
        key = ov.get_key_element()
        if ov.is_sweep_override():
            axes.append([f"{key}={v}" for v in ov.sweep_string_iterator()])
        else:
            axes.append([f"{key}={ov.get_value_element_as_str()}"])
    return [list(job) for job in itertools.product(*axes)]


#: launchers a sweep may name with ``hydra/launcher=NAME``, and what each needs
LAUNCHERS = {
    "joblib": "local processes (the default)",
    "slurm": "rlkit's Slurm preset (configs/hydra/launcher/slurm.yaml) through submitit",
    "submitit_slurm": "hydra-submitit-launcher's bare Slurm launcher",
    "submitit_local": "submitit's local executor (try a Slurm sweep on one machine)",
}


def check_launcher(overrides: list[str]) -> None:
    """Refuse, in one line, a launcher that is unknown or cannot start here (plugin or Slurm missing)."""
    import importlib.util
    import shutil

    from rlkit.config import override_value

    name = override_value(overrides, "hydra/launcher")
    if name is None:
        return
    if name not in LAUNCHERS:
        raise RlkitError(f"unknown hydra/launcher '{name}'; choose one of: {', '.join(LAUNCHERS)}")
    if name != "joblib" and importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
        raise RlkitError(f"hydra/launcher={name} needs the submitit plugin: pip install -e '.[cluster]'")
    if name in ("slurm", "submitit_slurm") and shutil.which("srun") is None:
        raise RlkitError(f"hydra/launcher={name} needs Slurm, and 'srun' is not on PATH: launch from a "
                         "Slurm login node, or try the sweep here with hydra/launcher=submitit_local")


def _multirun(overrides: list[str]) -> int:
    from rlkit.config import compose
    from rlkit.fit import check_run_fit

    check_launcher(overrides)
    jobs = _sweep_jobs(overrides)
    for job in jobs:  # validate every combination (config and algorithm/env fit) before launching anything
        try:
            check_run_fit(compose(job))
        except RlkitError as exc:
            raise type(exc)(f"{exc} [sweep job {' '.join(job)}]") from exc
    print(f"rlkit: launching {len(jobs)} runs", file=sys.stderr)
    import time
    from pathlib import Path

    import hydra

    from rlkit.config import config_dir, override_value, register_catalogs, searchpath_overrides

    register_catalogs()
    sweep_dir = override_value(overrides, "hydra.sweep.dir")
    if sweep_dir is None:  # fixed here, so the outcome of every job can be read back below
        sweep_dir = f"multirun/{time.strftime('%Y-%m-%d_%H-%M-%S')}"
        overrides = [*overrides, f"hydra.sweep.dir={sweep_dir}"]
    saved = sys.argv
    sys.argv = ["rlkit", "--multirun", *overrides, *searchpath_overrides()]
    try:
        hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")(_hydra_job)()
    finally:
        sys.argv = saved
    if any(override_value(overrides, key) is not None for key in ("hydra.sweep.subdir", "run_dir")):
        return 0  # runs written elsewhere: not checked
    sweep = Path(sweep_dir)
    failed = [k for k in range(len(jobs)) if not _job_finished(sweep / str(k))]
    if failed:
        print(f"rlkit: {len(failed)} of {len(jobs)} runs failed (jobs {', '.join(map(str, failed))} in "
              f"{sweep}); each one's error is above and in its {JOB_ERROR_FILE}", file=sys.stderr)
        return 1
    return 0


JOB_ERROR_FILE = "error.txt"


def _job_finished(job_dir) -> bool:
    try:
        return bool(json.loads((job_dir / "summary.json").read_text()).get("finished"))
    except (OSError, ValueError):
        return False


def _hydra_job(cfg) -> dict | None:
    """One job of a Hydra multirun (runs in a joblib worker)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from rlkit import trainer
    from rlkit.config import finalize

    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    with open_dict(cfg):
        cfg.pop("hydra", None)
        if not cfg.run_dir:
            cfg.run_dir = hc.runtime.output_dir
    try:
        cfg = finalize(cfg, overrides)
        summary = trainer.run(cfg)
        _print_summary(summary)
        return summary
    except RlkitError as exc:
        from pathlib import Path

        from rlkit.utils import atomic_write_text

        message = f"rlkit: error in job {hc.job.num} ({' '.join(overrides)}): {exc}"
        print(message, file=sys.stderr)
        atomic_write_text(Path(hc.runtime.output_dir) / JOB_ERROR_FILE, message + "\n")
        return None


# ---------------------------------------------------------------------------- eval
def cmd_eval(args: list[str]) -> int:
    parser = ArgumentParser(prog="rlkit eval", description="Re-evaluate a saved policy.")
    parser.add_argument("run_dir")
    parser.add_argument("--episodes", type=int, default=None, help="episodes (default: the run's eval.episodes)")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint file (default: the newest in RUN_DIR)")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda (default: the run's)")
    parser.add_argument("--seed", type=int, default=None, help="episode seed base (default: the run's)")
    parser.add_argument("--video", action="store_true",
                        help="record every episode to RUN_DIR/videos/step_<k>/episode_<j>_return_<R>.mp4")
    parser.add_argument("--video-size", type=int, default=None,
                        help="frame side of MuJoCo/dm_control videos (default: the run's eval.video_size)")
    ns = _parse(parser, args)
    from rlkit.reeval import reevaluate

    result = reevaluate(ns.run_dir, episodes=ns.episodes, checkpoint=ns.checkpoint, device=ns.device,
                        seed=ns.seed, video=ns.video, video_size=ns.video_size)
    print(json.dumps(result, indent=2))
    return 0


# ---------------------------------------------------------------------------- dream
def cmd_dream(args: list[str]) -> int:
    parser = ArgumentParser(prog="rlkit dream",
                            description="A world model's reconstructions and open-loop dreams next to the logged "
                                        "frames (MP4 + PNG strip in RUN_DIR/dreams/step_<k>/).")
    parser.add_argument("run_dir")
    parser.add_argument("--context", type=int, default=8, help="logged frames the model reconstructs (default 8)")
    parser.add_argument("--horizon", type=int, default=32, help="steps it imagines after them (default 32)")
    parser.add_argument("--start", type=int, default=None,
                        help="first replay step of the window (default: the most recent window)")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint file (default: the newest in RUN_DIR)")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda (default: the run's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent samples (default 0)")
    ns = _parse(parser, args)
    from rlkit.evaluation.dream import dream_run

    result = dream_run(ns.run_dir, context=ns.context, horizon=ns.horizon, start=ns.start,
                       checkpoint=ns.checkpoint, device=ns.device, seed=ns.seed)
    print(json.dumps(result, indent=2))
    return 0


# ---------------------------------------------------------------------------- list
def cmd_list(args: list[str]) -> int:
    parser = ArgumentParser(prog="rlkit list", description="List algorithms, envs, samplers and add-ons.")
    parser.add_argument("what", nargs="?", choices=("algos", "envs", "samplers", "addons"), default=None)
    ns = _parse(parser, args)
    from rlkit.config import group_descriptions, group_nodes

    sections = {"algos": "algo", "envs": "env", "samplers": "sampler", "addons": "addon"}
    for title, group in sections.items():
        if ns.what and ns.what != title:
            continue
        descriptions = group_descriptions(group)
        if group == "env":  # what decides which algorithms fit (rlkit.fit), before the description
            print(f"{title} ({group}=NAME; [observations/actions, +data: an offline dataset]):")
            nodes = group_nodes(group)
            descriptions = {name: f"[{_env_tag(nodes[name].env)}] {desc}" for name, desc in descriptions.items()}
        else:
            print(f"{title} ({group}=NAME):")
        width = max((len(n) for n in descriptions), default=0)
        for name, desc in descriptions.items():
            print(f"  {name:<{width}}  {desc}")
        print()
    return 0


def _env_tag(env) -> str:
    """``vector/continuous +data`` from an env block's fit metadata."""
    return f"{env.get('observation')}/{env.get('action')}" + (" +data" if env.get("dataset") else "")


# ---------------------------------------------------------------------------- report
def cmd_report(args: list[str]) -> int:
    parser = ArgumentParser(prog="rlkit report",
                                     description="Aggregate runs (summary.json) into tables and curves.")
    parser.add_argument("run_dirs", nargs="+", help="run directories, or directories that contain runs")
    parser.add_argument("--out", default=None, help="output directory (default: the first argument)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    ns = _parse(parser, args)
    from rlkit.evaluation.report import build_report

    text = build_report(ns.run_dirs, out_dir=ns.out, reps=ns.reps)
    print(text)
    return 0


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one RlkitError line instead of usage + exit."""

    def error(self, message: str):  # type: ignore[override]
        raise RlkitError(f"{self.prog}: {message}; see `{self.prog} --help`")


def _parse(parser: argparse.ArgumentParser, args: list[str]) -> argparse.Namespace:
    return parser.parse_args(args)


if __name__ == "__main__":
    sys.exit(main())
