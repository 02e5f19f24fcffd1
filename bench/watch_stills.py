"""The stills of README's "Watching runs": one frame from each kind of video rlkit writes.

    python bench/watch_stills.py [--out docs/watching] [--dream-run RUN_DIR]

Evaluation videos: for each env family a run directory with a freshly built (untrained) policy is evaluated
with ``rlkit eval RUN_DIR --video --episodes 1`` and the middle frame of its MP4 is kept. Dream reel: the PNG
strip of ``rlkit dream RUN_DIR --context 4 --horizon 6`` on a STORM run (``--dream-run``; README's is a tiny-catch
run of 250 steps, command in the README). Stills are PNGs under 100 KB.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

STORM_SMALL = ["algo=storm", "algo.encoder_channels=[16,32]", "algo.latent_vars=8", "algo.latent_classes=8",
               "algo.transformer.d_model=64", "algo.transformer.n_heads=4", "algo.transformer.d_ff=128",
               "algo.transformer.max_len=32", "algo.head_hidden=64", "algo.agent_hidden=64", "algo.act_context=4",
               "algo.wm_seq_len=8", "algo.imagine_context=2", "algo.imagine_horizon=2"]

VIDEOS = {  # still name -> overrides of the run directory
    "hopper": ["algo=sac", "env=hopper", "+env.kwargs.max_episode_steps=60"],
    "antmaze": ["algo=iql", "env=antmaze-umaze"],
    "pong": [*STORM_SMALL, "env=atari100k-pong", "+env.kwargs.max_num_frames_per_episode=800"],
    "urlb_walker": ["algo=ddpg", "env=urlb-walker_walk", "regime=finetune"],
    "dmc_cheetah_pixels": ["algo=vcr", "env=dmc-cheetah_run"],
    "tiny_catch": [*STORM_SMALL, "env=tiny-catch"],
}


def run_dir_of(overrides: list[str], path: Path) -> Path:
    from rlkit import envs
    from rlkit.checkpoint import checkpoint_path, save_checkpoint
    from rlkit.config import compose
    from rlkit.regimes.base import build_algorithm, eval_env_kwargs
    from rlkit.trainer import prepare_run_dir

    cfg = compose([*overrides, "device=cpu", f"run_dir={path}", "eval.num_envs=1", "eval.video_size=160"])
    run_dir = prepare_run_dir(cfg)
    env = envs.make(cfg.env.id, **eval_env_kwargs(cfg))
    algo = build_algorithm(cfg, env.observation_space, env.action_space, torch.device("cpu"))
    env.close()
    save_checkpoint(checkpoint_path(run_dir / "checkpoints", 0), {"step": 0, "algo": algo.state_dict()}, keep=1)
    return run_dir


def main() -> None:
    import imageio.v3 as iio

    from rlkit.cli import main as rlkit
    from rlkit.evaluation.video import read_mp4

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/watching")
    parser.add_argument("--dream-run", default=None)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, overrides in VIDEOS.items():
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = run_dir_of(overrides, Path(tmp) / name)
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                rlkit(["eval", str(run_dir), "--video", "--episodes", "1"])
            (video,) = json.loads(printed.getvalue())["videos"]
            frames = read_mp4(video)
            iio.imwrite(out / f"{name}.png", frames[len(frames) // 2], optimize=True)
            print(f"{name}: {Path(video).name}, {len(frames)} frames -> {out / (name + '.png')}")
    if args.dream_run:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            rlkit(["dream", args.dream_run, "--context", "4", "--horizon", "6"])
        strip = iio.imread(json.loads(printed.getvalue())["png"])
        iio.imwrite(out / "dream_tiny_catch.png", np.asarray(strip)[..., :3], optimize=True)
        print(f"dream: -> {out / 'dream_tiny_catch.png'}")
    for png in sorted(out.glob("*.png")):
        print(f"{png.name}: {png.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
