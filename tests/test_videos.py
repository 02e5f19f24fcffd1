"""Evaluation videos: recording leaves evaluations unchanged, `rlkit eval --video` on run directories of each
env family, `eval.video_interval` during training (MP4 + TensorBoard), and the renderers' cameras."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rlkit import envs
from rlkit.checkpoint import checkpoint_path, save_checkpoint
from rlkit.cli import main
from rlkit.evaluation.evaluate import evaluate
from rlkit.evaluation.video import EpisodeRecorder, read_mp4
from rlkit.regimes.base import build_algorithm, eval_env_kwargs
from rlkit.trainer import prepare_run_dir

STORM_SMALL = [
    "algo=storm", "algo.encoder_channels=[16,32]", "algo.latent_vars=8", "algo.latent_classes=8",
    "algo.transformer.d_model=64", "algo.transformer.n_heads=4", "algo.transformer.d_ff=128",
    "algo.transformer.max_len=32", "algo.head_hidden=64", "algo.agent_hidden=64", "algo.act_context=4",
    "algo.wm_seq_len=8", "algo.imagine_context=2", "algo.imagine_horizon=2",
    "device=cpu",
]


def _can_render_mujoco() -> bool:
    try:
        from rlkit.envs.render import FrameRenderer

        env = envs.make("hopper")
        env.reset(seed=0)
        renderer = FrameRenderer(env, 16)
        renderer()
        renderer.close()
        env.close()
        return True
    except Exception:
        return False


needs_gl = pytest.mark.skipif(not _can_render_mujoco(), reason="no OpenGL backend (MUJOCO_GL=egl or osmesa) "
                              "for MuJoCo offscreen rendering")


def untrained_run_dir(compose_cfg, tmp_path, *overrides: str):
    """A run directory (config.yaml + a checkpoint of the freshly built algorithm) as `rlkit train` leaves it."""
    cfg = compose_cfg(*overrides, f"run_dir={tmp_path}", "eval.num_envs=1", "eval.episodes=1")
    run_dir = prepare_run_dir(cfg)
    env = envs.make(cfg.env.id, **eval_env_kwargs(cfg))
    algo = build_algorithm(cfg, env.observation_space, env.action_space, torch.device("cpu"))
    env.close()
    save_checkpoint(checkpoint_path(run_dir / "checkpoints", 7), {"step": 7, "algo": algo.state_dict()}, keep=1)
    return run_dir


def _eval(algo, name: str, recorder=None, **kwargs):
    env = envs.make_vector(name, 2, autoreset=False, **kwargs)
    try:
        return evaluate(algo, env, 3, seed=123, deterministic=False, recorder=recorder)
    finally:
        env.close()


@pytest.mark.parametrize("name", ["tiny-catch", "hopper"])
def test_recording_changes_no_score_and_no_random_stream(compose_cfg, name):
    """A sampled policy scores the same episodes with and without recording; the global torch and numpy
    streams are where they were; each recorded episode has one frame per step plus the first one."""
    if name == "hopper" and not _can_render_mujoco():
        pytest.skip("no OpenGL backend for MuJoCo offscreen rendering")
    algo_name = "storm" if name == "tiny-catch" else "sac"
    cfg = compose_cfg(f"algo={algo_name}", f"env={name}", "device=cpu",
                      *(STORM_SMALL if algo_name == "storm" else ["+env.kwargs.max_episode_steps=25"]))
    probe = envs.make(cfg.env.id)
    algo = build_algorithm(cfg, probe.observation_space, probe.action_space, torch.device("cpu"))
    probe.close()
    torch.manual_seed(5)
    np.random.seed(5)
    plain = _eval(algo, cfg.env.id, **cfg.env.kwargs)
    streams = torch.get_rng_state(), np.random.get_state()[1].copy()
    recorder = EpisodeRecorder(range(3), size=32)
    recorded = _eval(algo, cfg.env.id, recorder, **cfg.env.kwargs)
    recorder.close()
    np.testing.assert_array_equal(plain.returns, recorded.returns)
    np.testing.assert_array_equal(plain.lengths, recorded.lengths)
    assert torch.equal(torch.get_rng_state(), streams[0])
    np.testing.assert_array_equal(np.random.get_state()[1], streams[1])
    assert [len(recorder.frames[j]) for j in range(3)] == [int(n) + 1 for n in recorded.lengths]
    assert all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in recorder.frames[0])


def test_frames_of_tiny_catch_are_its_observations_scaled_up():
    from rlkit.envs.render import FrameRenderer

    env = envs.make("rlkit.envs.tiny_pixels:rlkit/TinyCatch-v0")
    obs, _ = env.reset(seed=3)
    frame = FrameRenderer(env, 64)()
    np.testing.assert_array_equal(frame[::4, ::4], obs)


@needs_gl
@pytest.mark.parametrize("name", ["urlb-walker_walk", "dmc-cheetah_run"])
def test_dm_control_videos_use_the_task_camera(name):
    """The video frame at the observation size is the pixel observation itself: the camera the task uses
    (cheetah pixels), and the same camera for the URLB states env."""
    from rlkit.envs.render import FrameRenderer

    pixels = envs.make(name, obs_type="pixels", image_size=48)
    obs, _ = pixels.reset(seed=0)
    np.testing.assert_array_equal(FrameRenderer(pixels, 48)(), obs[-3:].transpose(1, 2, 0))
    states = envs.make(name, image_size=48)
    states.reset(seed=0)
    np.testing.assert_array_equal(FrameRenderer(states, 48)(), obs[-3:].transpose(1, 2, 0))
    assert FrameRenderer(states, 48).fps == pytest.approx(1 / (states.dm_env.control_timestep()
                                                               * states.action_repeat))


def test_atari_videos_show_the_emulator_screen():
    from rlkit.envs.render import FrameRenderer

    env = envs.make("atari100k-pong")
    obs, _ = env.reset(seed=0)
    frame = FrameRenderer(env)()
    assert obs.shape == (64, 64, 3) and frame.shape == (210, 160, 3)
    np.testing.assert_array_equal(frame, env.unwrapped.ale.getScreenRGB())
    assert FrameRenderer(env).fps == 15.0  # 60 Hz emulator, 4 frames per agent step


def _check_eval_video(run_dir, capsys, episodes: int = 1):
    assert main(["eval", str(run_dir), "--video", "--episodes", str(episodes), "--video-size", "48"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["videos"]) == episodes
    for j, (path, ret) in enumerate(zip(out["videos"], out["returns"])):
        assert path.endswith(f"videos/step_7/episode_{j}_return_{ret:.2f}.mp4")
        frames = read_mp4(path)
        assert frames.ndim == 4 and frames.shape[-1] == 3 and len(frames) >= 2
    return out


@needs_gl
def test_eval_video_hopper(compose_cfg, tmp_path, capsys):
    run_dir = untrained_run_dir(compose_cfg, tmp_path, "algo=sac", "env=hopper", "+env.kwargs.max_episode_steps=25")
    out = _check_eval_video(run_dir, capsys, episodes=2)
    assert read_mp4(out["videos"][0]).shape[1:3] == (48, 48)


def test_eval_video_pong(compose_cfg, tmp_path, capsys):
    run_dir = untrained_run_dir(compose_cfg, tmp_path, *STORM_SMALL, "env=atari100k-pong",
                                "+env.kwargs.max_num_frames_per_episode=120")
    out = _check_eval_video(run_dir, capsys)
    frames = read_mp4(out["videos"][0])
    assert frames.shape[1:3] == (210, 160) and len(frames) == 31  # 120 frames / skip 4, plus the first


@pytest.mark.slow
@needs_gl
@pytest.mark.parametrize("overrides", [["algo=ddpg", "env=urlb-walker_walk", "regime=finetune"],
                                       ["algo=vcr", "env=dmc-cheetah_run"]])
def test_eval_video_dm_control(compose_cfg, tmp_path, capsys, overrides):
    """Full 1000-step dm_control episodes: a minute each on a CPU renderer."""
    _check_eval_video(untrained_run_dir(compose_cfg, tmp_path, *overrides), capsys)


def test_video_interval_records_first_eval_episode(compose_cfg, tmp_path):
    """Training with eval.video_interval writes the first episode of the evaluations at its multiples to
    videos/step_<k>/ (with the logged return in the name) and a GIF image summary to TensorBoard."""
    from rlkit import trainer

    cfg = compose_cfg(*STORM_SMALL, "env=tiny-catch", "algo.wm_batch_size=4",
                      "algo.imagine_batch_size=4",
                      "train.buffer_capacity=500", "train.steps=40", "train.warmup_steps=30",
                      "train.log_interval=10", "eval.interval=10", "eval.episodes=2", "eval.num_envs=1",
                      "eval.video_interval=20", "eval.video_size=32", "logging.tensorboard=true",
                      "checkpoint.interval=0", f"run_dir={tmp_path}")
    trainer.run(cfg)
    steps = sorted(int(p.name.removeprefix("step_")) for p in (tmp_path / "videos").iterdir())
    assert steps == [20, 40]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for step in steps:
        (video,) = (tmp_path / "videos" / f"step_{step}").iterdir()
        assert video.name.startswith("episode_0_return_")
        assert len(read_mp4(video)) == 8  # TinyCatch: 7 steps + the first frame
        assert any(r["step"] == step and "eval/return_mean" in r for r in records)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0}).Reload()
    gifs = events.Images("eval/video")
    assert [g.step for g in gifs] == [20, 40] and all(g.encoded_image_string[:6] == b"GIF89a" for g in gifs)


@needs_gl
def test_antmaze_videos_look_down_on_the_maze():
    from rlkit.envs.render import FrameRenderer

    env = envs.make("antmaze-umaze")
    env.reset(seed=0)
    renderer = FrameRenderer(env, 48)
    first = renderer()
    for _ in range(5):
        env.step(np.ones(8, np.float32))
    moved = renderer()
    renderer.close()
    assert first.shape == (48, 48, 3) and first.std() > 10  # walls on the floor, not a blank frame
    assert not np.array_equal(first, moved)  # the ant moves under the fixed camera
    assert FrameRenderer(env, 48).fps == pytest.approx(1 / env.unwrapped.dt)
