"""Evaluation videos: frames captured during :func:`rlkit.evaluation.evaluate.evaluate` and their encoders.

An :class:`EpisodeRecorder` passed to ``evaluate(..., recorder=...)`` renders the chosen episodes' frames
(:class:`rlkit.envs.render.FrameRenderer`: the emulator screen for Atari, the task camera for MuJoCo and
dm_control) after every reset and step; rendering draws no random numbers and changes no env or torch
state, so a recorded evaluation scores exactly as an unrecorded one. Videos are MP4 (H.264, yuv420p) through
imageio's ffmpeg plugin (imageio-ffmpeg ships the ffmpeg binary), written atomically to
``RUN_DIR/videos/step_<k>/episode_<j>_return_<R>.mp4``; :func:`gif_bytes` makes the small animated GIF
that TensorBoard's image tab plays (the summary ``SummaryWriter.add_video`` writes, encoded without moviepy).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from rlkit.errors import ConfigError


def _imageio():
    try:
        import imageio.v3 as iio
        import imageio_ffmpeg  # noqa: F401  (the MP4 encoder imageio uses)
    except ImportError as exc:
        raise ConfigError(f"videos need imageio and imageio-ffmpeg ({exc.name} is missing): "
                          "pip install -e . (they are rlkit dependencies)") from exc
    return iio


class EpisodeRecorder:
    """Collects RGB frames of the evaluation episodes ``episodes`` (indices as :func:`evaluate` numbers them)."""

    def __init__(self, episodes: Iterable[int], size: int | None = None) -> None:
        from rlkit.envs.render import DEFAULT_SIZE

        self.wanted = {int(j) for j in episodes}
        self.size = DEFAULT_SIZE if size is None else int(size)
        self.frames: dict[int, list[np.ndarray]] = {}
        self.fps: float = 30.0
        self._renderers: dict[int, object] = {}

    def capture(self, env, episode_of: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Render sub-env ``i`` of the vector env if it plays a wanted episode (and ``mask[i]``, when given)."""
        from rlkit.envs.render import FrameRenderer

        for i, episode in enumerate(episode_of.tolist()):
            if episode not in self.wanted or (mask is not None and not mask[i]):
                continue
            if i not in self._renderers:
                renderer = FrameRenderer(env.envs[i], self.size)
                self._renderers[i] = renderer
                self.fps = renderer.fps
            self.frames.setdefault(episode, []).append(self._renderers[i]())

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad height and width to even sizes (H.264 with yuv420p needs them)."""
    _, h, w, _ = frames.shape
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_mp4(path: str | Path, frames: list[np.ndarray] | np.ndarray, fps: float) -> Path:
    """Encode ``frames`` (T, H, W, 3) uint8 as an H.264 MP4 at ``path``, atomically (temp file + rename)."""
    iio = _imageio()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.mp4")
    stack = _even(np.asarray(frames, dtype=np.uint8))
    iio.imwrite(tmp, stack, plugin="FFMPEG", fps=float(fps), codec="libx264", macro_block_size=1,
                pixelformat="yuv420p")
    tmp.replace(path)
    return path


def read_mp4(path: str | Path) -> np.ndarray:
    """All frames of a video file (T, H, W, 3) uint8."""
    return np.asarray(_imageio().imread(path, plugin="FFMPEG", index=None))


def gif_bytes(frames: list[np.ndarray] | np.ndarray, fps: float, max_side: int = 128,
              max_frames: int = 200) -> tuple[bytes, int, int]:
    """A small looping animated GIF of ``frames`` for TensorBoard: every k-th frame (at most ``max_frames``),
    every s-th pixel (at most ``max_side`` per side), played at ``fps / k``; returns (GIF, height, width)."""
    iio = _imageio()
    stack = np.asarray(frames, dtype=np.uint8)
    k = max(1, -(-len(stack) // max_frames))
    s = max(1, -(-max(stack.shape[1:3]) // max_side))
    stack = stack[::k, ::s, ::s]
    buffer = io.BytesIO()
    iio.imwrite(buffer, stack, extension=".gif", duration=1000.0 * k / fps, loop=0)
    return buffer.getvalue(), int(stack.shape[1]), int(stack.shape[2])


def video_name(episode: int, episode_return: float) -> str:
    """``episode_<j>_return_<R>.mp4`` (R with 2 decimals)."""
    return f"episode_{int(episode)}_return_{float(episode_return):.2f}.mp4"


def video_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "videos" / f"step_{int(step)}"


def write_episode_videos(recorder: EpisodeRecorder, result, run_dir: str | Path, step: int) -> list[Path]:
    """Write each recorded episode of ``result`` (an :class:`~rlkit.evaluation.evaluate.EvalResult`) as
    ``RUN_DIR/videos/step_<step>/episode_<j>_return_<R>.mp4``; returns the paths in episode order."""
    returns = dict(zip(result.extra["episode_ids"], result.returns.tolist()))
    paths = []
    for episode in sorted(recorder.frames):
        if episode in returns:  # first_finished: an episode still running at the end is not scored
            paths.append(write_mp4(video_dir(run_dir, step) / video_name(episode, returns[episode]),
                                   recorder.frames[episode], recorder.fps))
    return paths
