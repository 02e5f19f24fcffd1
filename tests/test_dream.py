"""`rlkit dream` on a tiny STORM run: MP4 + PNG strip of real frames, reconstructions and open-loop imagination;
the reconstructions of the context are closer to it than to a shuffled context; latent world models refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlkit import trainer
from rlkit.cli import main
from rlkit.evaluation.dream import load_run, logged_steps
from rlkit.evaluation.video import read_mp4

TINY_STORM = ["algo=storm", "env=tiny-catch", "device=cpu", "algo.encoder_channels=[16,32]", "algo.latent_vars=8",
              "algo.latent_classes=8", "algo.transformer.d_model=32", "algo.transformer.n_heads=2",
              "algo.transformer.d_ff=64", "algo.transformer.max_len=32", "algo.head_hidden=32", "algo.agent_hidden=32",
              "algo.wm_batch_size=8", "algo.wm_seq_len=8", "algo.imagine_context=2", "algo.act_context=4",
              "algo.imagine_batch_size=4", "algo.imagine_horizon=2", "algo.wm_lr=3e-3", "train.buffer_capacity=500",
              "train.steps=150", "train.warmup_steps=50", "train.log_interval=50", "eval.interval=0",
              "eval.episodes=1", "eval.num_envs=1"]


@pytest.fixture(scope="module")
def storm_run(tmp_path_factory):
    from rlkit.config import compose

    run_dir = tmp_path_factory.mktemp("storm") / "run"
    trainer.run(compose([*TINY_STORM, "logging.progress=false", "logging.tensorboard=false", f"run_dir={run_dir}"]))
    return run_dir


def test_dream_writes_reel_and_strip(storm_run, capsys):
    assert main(["dream", str(storm_run), "--context", "4", "--horizon", "6"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["step"] == 150 and out["start"] == 150 - 10  # the most recent window of the replay buffer
    assert out["png"].endswith("dreams/step_150/dream_start140_c4_h6.png")
    import imageio.v3 as iio

    strip = iio.imread(out["png"])
    assert strip.ndim == 3 and strip.shape[1] > strip.shape[0]  # 10 columns, 2 rows
    assert len(read_mp4(out["mp4"])) == 10  # one video frame per step
    assert 0 <= out["reconstruction_error"] < 1 and 0 <= out["imagination_error"] < 1


def test_reconstructions_are_closer_to_their_context_than_to_a_shuffled_one(storm_run):
    _, algo, payload = load_run(storm_run, None, "cpu")
    rows = logged_steps(payload)
    context, own, shuffled = 8, [], []
    for start in range(0, len(rows["action"]) - 12, 12):
        obs = rows["obs"][start:start + 12]
        dream = algo.dream(obs, rows["action"][start:start + 12], context, seed=0)
        rec, real = dream.frames[:context].astype(np.float64), obs[:context].astype(np.float64)
        own.append(((rec - real) ** 2).mean())
        shuffled.append(((rec - np.roll(real, 1, axis=0)) ** 2).mean())  # each frame against another one
    assert np.mean(own) < np.mean(shuffled)
    assert np.mean(np.array(own) < np.array(shuffled)) > 0.5


def test_dream_is_seeded_and_leaves_the_global_stream(storm_run):
    import torch

    _, algo, payload = load_run(storm_run, None, "cpu")
    rows = logged_steps(payload)
    before = torch.get_rng_state()
    a = algo.dream(rows["obs"][:12], rows["action"][:12], 4, seed=1)
    b = algo.dream(rows["obs"][:12], rows["action"][:12], 4, seed=1)
    assert torch.equal(torch.get_rng_state(), before)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.frames.shape == (12, 16, 16, 3) and a.reward.shape == a.termination.shape == (12,)


@pytest.mark.parametrize("algo", ["spr", "vcr"])
def test_latent_world_models_are_refused_in_one_line(compose_cfg, tmp_path, capsys, algo):
    from rlkit.trainer import prepare_run_dir

    run_dir = prepare_run_dir(compose_cfg(f"algo={algo}", "env=atari100k-pong", f"run_dir={tmp_path}"))
    assert main(["dream", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"algo={algo} has no frame decoder" in err


def test_window_outside_the_buffer_is_refused(storm_run, capsys):
    assert main(["dream", str(storm_run), "--start", "149"]) == 2
    assert "the replay buffer holds 150 steps" in capsys.readouterr().err
