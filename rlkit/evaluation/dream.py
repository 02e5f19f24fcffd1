"""``rlkit dream RUN_DIR``: a world model's dreams next to reality.

From the replay buffer a run's checkpoint holds (the frames the agent saw, its logged actions, rewards and
terminations), a window of ``context + horizon`` steps is taken (by default the most recent one). The
algorithm's :meth:`~rlkit.algorithm.Algorithm.dream` reconstructs the ``context`` frames and imagines the
``horizon`` frames after them open-loop under the logged actions; the reel shows, per step, the real frame
above the model's frame, with the predicted and the logged reward and termination under them. Written to
``RUN_DIR/dreams/step_<k>/dream_start<s>_c<context>_h<horizon>.{mp4,png}`` (the PNG is the whole strip).
World models without a frame decoder (SPR, VCR) are refused in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from rlkit.algorithm import Dream
from rlkit.checkpoint import latest_checkpoint, load_checkpoint
from rlkit.errors import CheckpointError, ConfigError
from rlkit.evaluation.video import write_mp4
from rlkit.utils import resolve_device

#: side of each frame in the reel (pixel repetition of the agent's frames)
MIN_SIDE = 96


def logged_steps(payload: dict[str, Any]) -> dict[str, np.ndarray]:
    """The replay rows of an online checkpoint in the order they were added (the ring unrolled)."""
    try:
        storage = payload["regime_state"]["buffer"]["storage"]
    except (KeyError, TypeError):
        raise CheckpointError("the checkpoint holds no replay buffer (online runs save theirs); `rlkit dream` "
                              "needs the frames the agent saw") from None
    size, cursor, capacity = int(storage["size"]), int(storage["cursor"]), int(storage["capacity"])
    rows = {k: np.asarray(v)[:size] for k, v in storage["data"].items()}
    if size == capacity and cursor:
        rows = {k: np.roll(v, -cursor, axis=0) for k, v in rows.items()}
    return rows


def load_run(run_dir: Path, checkpoint: str | None, device: str | None):
    """The run's config, its algorithm with the checkpoint's weights, and the checkpoint payload."""
    from rlkit import envs
    from rlkit.regimes.base import algorithm_class, build_algorithm, eval_env_kwargs

    if not (run_dir / "config.yaml").exists():
        raise ConfigError(f"'{run_dir}' is not an rlkit run directory (no config.yaml)")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    if not algorithm_class(cfg).decodes_frames:
        raise ConfigError(f"algo={cfg.algo.get('name')} has no frame decoder (its world model, if any, is latent), so "
                          "it has no dreams to draw; `rlkit dream` draws world models that decode frames (algo=storm)")
    ckpt = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        raise CheckpointError(f"no checkpoint in '{run_dir / 'checkpoints'}'; pass --checkpoint PATH")
    dev = resolve_device(device or cfg.device)
    payload = load_checkpoint(ckpt, map_location=dev)
    env = envs.make(cfg.env.id, **eval_env_kwargs(cfg))
    try:
        algo = build_algorithm(cfg, env.observation_space, env.action_space, dev)
    finally:
        env.close()
    try:
        algo.load_state_dict(payload["algo"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint '{ckpt}' does not match the run's algorithm: "
                              f"{str(exc).splitlines()[0]}") from exc
    return cfg, algo, payload


def _scaled(frame: np.ndarray) -> np.ndarray:
    k = max(1, -(-MIN_SIDE // frame.shape[0]))
    return np.repeat(np.repeat(frame, k, axis=0), k, axis=1)


def _panel(ax, frame: np.ndarray, title: str, label: str) -> None:
    ax.imshow(_scaled(frame), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)
    ax.set_xlabel(label, fontsize=6)


def _labels(t: int, context: int, real: dict[str, np.ndarray], dream: Dream) -> tuple[str, str, str]:
    kind = "context" if t < context else "imagined"
    real_text = f"r {real['reward'][t]:+.2f}  d {int(real['done'][t])}"
    model_text = f"r {dream.reward[t]:+.2f}  d {dream.termination[t]:.2f}"
    return f"t={t} ({kind})", real_text, model_text


def draw_strip(real: dict[str, np.ndarray], dream: Dream, context: int, path: Path, title: str) -> Path:
    """PNG: real frames (top) and the model's (bottom) per step, rewards and terminations under each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = len(dream.frames)
    fig, axes = plt.subplots(2, T, figsize=(0.95 * T, 2.6), squeeze=False)
    for t in range(T):
        head, real_text, model_text = _labels(t, context, real, dream)
        _panel(axes[0][t], real["obs"][t], head, real_text)
        _panel(axes[1][t], dream.frames[t], "", model_text)
    axes[0][0].set_ylabel("real", fontsize=8)
    axes[1][0].set_ylabel("model", fontsize=8)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def reel_frames(real: dict[str, np.ndarray], dream: Dream, context: int, title: str) -> np.ndarray:
    """One video frame per step: the real frame beside the model's, with the step's labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    fig, axes = plt.subplots(1, 2, figsize=(4.0, 2.6))
    for t in range(len(dream.frames)):
        head, real_text, model_text = _labels(t, context, real, dream)
        for ax in axes:
            ax.clear()
        _panel(axes[0], real["obs"][t], f"real, {head}", real_text)
        _panel(axes[1], dream.frames[t], "reconstruction" if t < context else "imagination", model_text)
        fig.suptitle(title, fontsize=7)
        fig.canvas.draw()
        out.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return np.stack(out)


def dream_run(run_dir: str | Path, context: int = 8, horizon: int = 32, start: int | None = None,
              checkpoint: str | None = None, device: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Write the dream reel (MP4) and strip (PNG) of a run; returns their paths and per-frame errors."""
    run_dir = Path(run_dir)
    cfg, algo, payload = load_run(run_dir, checkpoint, device)
    if context < 1 or horizon < 0:
        raise ConfigError(f"--context must be >= 1 and --horizon >= 0 (got {context} and {horizon})")
    rows = logged_steps(payload)
    length = context + horizon
    n = len(rows["action"])
    first = n - length if start is None else int(start)
    if not 0 <= first <= n - length:
        raise ConfigError(f"the replay buffer holds {n} steps: a window of {length} steps starts in [0, "
                          f"{n - length}]; change --start, --context or --horizon")
    window = {k: v[first:first + length] for k, v in rows.items()}
    dream = algo.dream(window["obs"], window["action"], context, seed=seed)
    done = window["terminated"].astype(bool)
    if "life_loss" in window:
        done |= window["life_loss"].astype(bool)
    real = {"obs": window["obs"], "reward": window["reward"], "done": done}
    step = int(payload["step"])
    out = run_dir / "dreams" / f"step_{step}"
    stem = f"dream_start{first}_c{context}_h{horizon}"
    title = f"{cfg.algo.get('name')} on {cfg.env.get('name')}, step {step}: context {context}, horizon {horizon}"
    png = draw_strip(real, dream, context, out / f"{stem}.png", title)
    mp4 = write_mp4(out / f"{stem}.mp4", reel_frames(real, dream, context, title), fps=4)
    error = np.abs(dream.frames.astype(np.float64) - window["obs"].astype(np.float64)).mean(axis=(1, 2, 3)) / 255
    return {"run_dir": str(run_dir), "step": step, "start": first, "context": context, "horizon": horizon,
            "png": str(png), "mp4": str(mp4),
            "reconstruction_error": float(error[:context].mean()),
            "imagination_error": float(error[context:].mean()) if horizon else None}
