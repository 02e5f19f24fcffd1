"""``rlkit eval RUN_DIR``: rebuild a run's algorithm from its ``config.yaml``, load a checkpoint and
evaluate it again with the run's evaluation protocol (same episode seeds unless ``--seed`` is given);
``--video`` also records every episode to ``RUN_DIR/videos/step_<k>/`` (:mod:`rlkit.evaluation.video`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rlkit.checkpoint import latest_checkpoint, load_checkpoint
from rlkit.errors import CheckpointError, ConfigError
from rlkit.evaluation.evaluate import episode_seed_base, evaluate
from rlkit.evaluation.video import EpisodeRecorder, write_episode_videos
from rlkit.regimes.base import build_algorithm, eval_env_kwargs
from rlkit.utils import resolve_device


def reevaluate(run_dir: str | Path, episodes: int | None = None, checkpoint: str | None = None,
               device: str | None = None, seed: int | None = None, video: bool = False,
               video_size: int | None = None) -> dict[str, Any]:
    from rlkit import envs

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.exists():
        raise ConfigError(f"'{run_dir}' is not an rlkit run directory (no config.yaml)")
    try:
        cfg = OmegaConf.load(cfg_path)
    except Exception as exc:
        raise ConfigError(f"'{cfg_path}' is not valid YAML ({type(exc).__name__}); restore it from the run") from exc
    ckpt = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        raise CheckpointError(f"no checkpoint in '{run_dir / 'checkpoints'}'; pass --checkpoint PATH")
    dev = resolve_device(device or cfg.device)
    payload = load_checkpoint(ckpt, map_location=dev)
    env = envs.make_vector(cfg.env.id, int(cfg.eval.num_envs), autoreset=False, **eval_env_kwargs(cfg))
    try:
        algo = build_algorithm(cfg, env.single_observation_space, env.single_action_space, dev)
        try:
            algo.load_state_dict(payload["algo"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint '{ckpt}' does not match the run's algorithm: "
                                  f"{str(exc).splitlines()[0]}") from exc
        score = cfg.env.get("score") or {}
        base_seed = episode_seed_base(cfg.seed) if seed is None else seed
        n = int(episodes or cfg.eval.final_episodes or cfg.eval.episodes)
        recorder = EpisodeRecorder(range(n), size=video_size or cfg.eval.get("video_size")) if video else None
        try:
            result = evaluate(algo, env, n, seed=base_seed, deterministic=bool(cfg.eval.deterministic),
                              score_table=score.get("table"), score_task=score.get("task"),
                              protocol=str(cfg.eval.get("protocol", "assigned")), recorder=recorder)
            videos = write_episode_videos(recorder, result, run_dir, int(payload["step"])) if video else []
        finally:
            if recorder is not None:
                recorder.close()
    finally:
        env.close()
    out = {"run_dir": str(run_dir), "checkpoint": str(ckpt), "step": int(payload["step"]),
           **result.metrics(prefix=""), "returns": [float(x) for x in result.returns]}
    if video:
        out["videos"] = [str(p) for p in videos]
    return out
