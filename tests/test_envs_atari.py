"""Atari 100k protocols against a frame-by-frame reference on the raw ALE, plus the resize and tables."""

from __future__ import annotations

import copy

import ale_py
import gymnasium as gym
import numpy as np
import pytest

from rlkit import envs
from rlkit.envs import atari
from rlkit.envs.atari import area_resize, bilinear_resize
from rlkit.errors import EnvError

gym.register_envs(ale_py)


def raw_ale(game: str, **kwargs) -> gym.Env:
    """The ALE v5 env one frame per step, no sticky actions: the reference the protocols are built from."""
    options = {"frameskip": 1, "repeat_action_probability": 0.0, "max_num_frames_per_episode": 108_000}
    return gym.make(atari.ale_id(game), **{**options, **kwargs})


# --- tables and names ----------------------------------------------------------------------------------


def test_games_and_score_tables():
    assert len(atari.ATARI100K_GAMES) == 26 == len(set(atari.ATARI100K_GAMES))
    assert set(atari.ATARI_RANDOM_SCORES) == set(atari.ATARI_HUMAN_SCORES) == set(atari.ATARI100K_GAMES)
    assert all(atari.ATARI_HUMAN_SCORES[g] > atari.ATARI_RANDOM_SCORES[g] for g in atari.ATARI100K_GAMES)
    for game in atari.ATARI100K_GAMES:  # every game maps to its v5 id and an installed ROM
        assert gym.registry[atari.ale_id(game)].kwargs["game"] == game
        assert ale_py.roms.get_rom_path(game) is not None, game
    assert atari.ale_id("up_n_down") == "ALE/UpNDown-v5" and atari.ale_id("ms_pacman") == "ALE/MsPacman-v5"
    assert atari.human_normalized_score("pong", 14.6) == pytest.approx(1.0)
    assert atari.human_normalized_score("pong", -20.7) == pytest.approx(0.0)
    assert atari.human_normalized_score("breakout", 15.9) == pytest.approx((15.9 - 1.7) / (30.5 - 1.7))
    assert atari.protocol_of("atari100k-pong") == "atari100k-storm"
    assert atari.protocol_of("atari-spr-pong") == "atari100k-spr"
    assert set(atari.PROTOCOLS) == {"atari100k-storm", "atari100k-spr"}
    with pytest.raises(EnvError):
        envs.make("atari100k-not_a_game")


# --- area resize ---------------------------------------------------------------------------------------


def area_reference(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Brute force: each output pixel = integral of the piecewise-constant image over its cell / cell area."""
    img = image.astype(np.float64).reshape(image.shape[0], image.shape[1], -1)
    sy, sx = image.shape[0] / height, image.shape[1] / width
    out = np.zeros((height, width, img.shape[2]))
    for i in range(height):
        for j in range(width):
            y0, y1, x0, x1 = i * sy, (i + 1) * sy, j * sx, (j + 1) * sx
            acc = np.zeros(img.shape[2])
            for r in range(int(np.floor(y0)), int(np.ceil(y1))):
                wy = min(y1, r + 1) - max(y0, r)
                for c in range(int(np.floor(x0)), int(np.ceil(x1))):
                    acc += wy * (min(x1, c + 1) - max(x0, c)) * img[r, c]
            out[i, j] = acc / (sy * sx)
    return out.reshape((height, width) + image.shape[2:])


@pytest.mark.parametrize("shape, size", [((210, 160, 3), (64, 64)), ((210, 160), (84, 84)),
                                         ((37, 23), (9, 5))])
def test_area_resize_matches_the_area_integral(shape, size):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    got = area_resize(image, *size)
    ref = area_reference(image, *size)
    assert got.shape == ref.shape and got.dtype == np.uint8
    assert np.abs(got - ref).max() <= 0.5 + 1e-3  # correctly rounded up to float32 summation


def test_area_resize_closed_forms():
    block = np.kron(np.arange(6, dtype=np.uint8).reshape(2, 3) * 40, np.ones((4, 4), np.uint8))  # 8x12
    np.testing.assert_array_equal(area_resize(block, 2, 3), np.arange(6).reshape(2, 3) * 40)
    flat = np.full((210, 160, 3), 77, np.uint8)
    np.testing.assert_array_equal(area_resize(flat, 64, 64), np.full((64, 64, 3), 77))
    w = atari.area_weights(210, 64)[1]
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)


# --- STORM protocol ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("game", ["breakout", "ms_pacman"])
def test_atari100k_matches_a_frame_by_frame_reference(game):
    """Each step = 4 ALE frames with per-frame sticky actions (p=0.25, the env's RNG), rewards summed,
    max of the last two frames, area resize to 64x64 RGB; life loss flagged, not terminal."""
    env = envs.make(f"atari100k-{game}")
    ref = raw_ale(game)
    obs, info = env.reset(seed=7)
    ref_obs, _ = ref.reset(seed=7)
    assert info["protocol"] == "atari100k-storm"
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs, area_resize(ref_obs, 64, 64))
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0  # no double stickiness
    rng = copy.deepcopy(env.unwrapped.np_random)
    actions = np.random.default_rng(1).integers(env.action_space.n, size=300)
    executed, lives, sticky, life_losses, n_frames = 0, ref.unwrapped.ale.lives(), 0, 0, 0
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(int(a))
        frames, total = [], 0.0
        for _ in range(4):
            if rng.random() >= 0.25:
                executed = int(a)
            else:
                sticky += 1
            frame, r, ref_term, ref_trunc, ref_info = ref.step(executed)
            frames.append(frame)
            total += r
            if ref_term or ref_trunc:
                break
        n_frames += len(frames)
        assert info["frames"] == len(frames) and env.unwrapped.ale.getEpisodeFrameNumber() == n_frames
        pooled = frames[-1] if len(frames) == 1 else np.maximum(frames[-1], frames[-2])
        np.testing.assert_array_equal(obs, area_resize(pooled, 64, 64))
        assert reward == total and terminated == ref_term and truncated == ref_trunc
        assert info["life_loss"] == (ref_info["lives"] < lives) and info["lives"] == ref_info["lives"]
        life_losses += info["life_loss"]
        lives = ref_info["lives"]
        if terminated or truncated:
            break
        assert len(frames) == 4
    assert 0.15 < sticky / n_frames < 0.35
    if game == "ms_pacman":
        assert life_losses >= 1 and not terminated  # a life was lost, the episode went on


def test_atari100k_seeding_reproduces_rollouts():
    def rollout(env, seed):
        out = [env.reset(seed=seed)[0]]
        for a in np.random.default_rng(0).integers(env.action_space.n, size=60):
            obs, r, *_ = env.step(int(a))
            out += [obs, r]
        return out

    a, b = envs.make("atari100k-breakout"), envs.make("atari100k-breakout")
    ra = rollout(a, 3)
    assert all(np.array_equal(x, y) for x, y in zip(ra, rollout(b, 3)))
    assert all(np.array_equal(x, y) for x, y in zip(ra, rollout(a, 3)))
    assert not all(np.array_equal(x, y) for x, y in zip(ra, rollout(b, 4)))


def test_reseed_every_reset_replays_the_seeded_episode():
    """STORM's released code: with the flag (the STORM protocol's default) a seedless reset re-uses the last seed, so
    the same actions give the same episode (emulator start and sticky-action stream); without it they differ.
    The remembered seed is part of the exact-resume state."""
    from rlkit.envs.state import get_env_state, set_env_state

    def rollout(env, seed=None):  # one whole episode (a seedless reset mid-game would continue it)
        out = [env.reset(seed=seed)[0]]
        actions, done = np.random.default_rng(0), False
        while not done:
            obs, r, terminated, truncated, _ = env.step(int(actions.integers(4)))
            out += [obs, r]
            done = terminated or truncated
        return out

    def same(x, y):
        return len(x) == len(y) and all(np.array_equal(p, q) for p, q in zip(x, y))

    fixed = envs.make("atari100k-breakout")
    assert fixed.reseed_every_reset and atari.PROTOCOLS["atari100k-storm"]["reseed_every_reset"]
    first = rollout(fixed, seed=3)
    assert same(first, rollout(fixed))           # seedless reset: the seed-3 episode again
    fresh = envs.make("atari100k-breakout", reseed_every_reset=False)
    assert same(first, rollout(fresh, seed=3))
    assert not same(first, rollout(fresh))       # a new sticky-action stream
    assert not same(rollout(fixed, seed=4), first)  # an explicit seed still wins, and is remembered
    resumed = envs.make("atari100k-breakout")
    set_env_state(resumed, get_env_state(fixed))
    assert same(rollout(resumed), rollout(fixed, seed=4))


def test_episode_frame_cap_is_truncation():
    assert envs.make("atari100k-pong").unwrapped.ale.getInt("max_num_frames_per_episode") == 108_000
    assert envs.make("atari-spr-pong").unwrapped.ale.getInt("max_num_frames_per_episode") == 108_000
    short = atari.AtariProtocolEnv(raw_ale("pong", max_num_frames_per_episode=40, disable_env_checker=True),
                                   protocol="test")
    short.reset(seed=0)
    for t in range(1, 11):
        _, _, terminated, truncated, _ = short.step(0)
        assert not terminated and truncated == (t == 10)


# --- SPR protocol ----------------------------------------------------------------------------------------


def test_spr_observation_stack_and_noop_starts():
    env = envs.make("atari-spr-breakout")
    obs, info = env.reset(seed=0)
    assert info["protocol"] == "atari100k-spr"
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    assert not obs[:3].any() and obs[-1].any()  # SPR's code: the stack starts from zero frames
    ale = env.unwrapped.ale
    gray = np.zeros((210, 160), np.uint8)
    ale.getScreenGrayscale(gray)
    np.testing.assert_array_equal(obs[-1], bilinear_resize(gray, 84, 84))  # SPR's cv2 INTER_LINEAR
    padded, _ = envs.make("atari-spr-breakout", frame_stack_padding="reset").reset(seed=0)
    assert all(np.array_equal(padded[k], obs[-1]) for k in range(4))
    area, _ = envs.make("atari-spr-breakout", resize="area").reset(seed=0)
    np.testing.assert_array_equal(area[-1], area_resize(gray, 84, 84))
    starts = set()
    for seed in range(8):
        env.reset(seed=seed)
        starts.add(ale.getEpisodeFrameNumber())
    assert len(starts) > 3 and min(starts) >= 1 and max(starts) <= 30
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    env.reset(seed=0)
    prev = obs
    for a in (1, 2, 3, 0, 2):
        obs, *_ = env.step(a)
        np.testing.assert_array_equal(obs[:3], prev[1:])
        prev = obs


def _play_until_life_loss(env, seed):
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    rewards = []
    for _ in range(2000):
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        rewards.append((reward, info["raw_reward"]))
        if info["life_loss"] or terminated or truncated:
            return obs, terminated, info, rewards
    raise AssertionError("no life lost in 2000 steps")


def test_spr_training_clips_rewards_and_ends_on_life_loss():
    train = envs.make("atari-spr-ms_pacman", training=True)
    obs, terminated, info, rewards = _play_until_life_loss(train, 0)
    assert info["life_loss"] and terminated and info["lives"] > 0
    assert all(r == np.sign(raw) for r, raw in rewards) and max(raw for _, raw in rewards) > 1
    frame = train.unwrapped.ale.getEpisodeFrameNumber()
    obs2, reset_info = train.reset()  # a life-loss end continues the same game
    assert reset_info["soft_reset"] and train.unwrapped.ale.getEpisodeFrameNumber() == frame
    # SPR's code zeroes the stack at a life loss and appends the current frame
    assert not obs2[:3].any() and np.array_equal(obs2[-1], obs[-1])

    evaluation = envs.make("atari-spr-ms_pacman")
    _, terminated, info, rewards = _play_until_life_loss(evaluation, 0)
    assert info["life_loss"] and not terminated
    assert all(r == raw for r, raw in rewards) and max(r for r, _ in rewards) > 1


# --- resize, life counter -----------------------------------------------------------------------------


def test_bilinear_resize_closed_forms():
    flat = np.full((210, 160), 77, np.uint8)
    np.testing.assert_array_equal(bilinear_resize(flat, 84, 84), np.full((84, 84), 77))
    # 2x downscale: source coordinate 2d + 0.5, the mean of two neighbours (rows, then columns)
    ramp = np.tile(np.arange(0, 200, 2, dtype=np.uint8), (100, 1))  # value 2x at column x
    out = bilinear_resize(ramp, 50, 50)
    np.testing.assert_array_equal(out, np.tile(4 * np.arange(50) + 1, (50, 1)))


@pytest.mark.parametrize("game", ["breakout", "ms_pacman"])
def test_bilinear_resize_equals_opencv(game):
    """SPR's resize is ``cv2.resize(frame, (84, 84), cv2.INTER_LINEAR)`` (OpenCV is not an rlkit dependency)."""
    cv2 = pytest.importorskip("cv2")
    env = envs.make(f"atari-spr-{game}")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    gray = np.zeros((210, 160), np.uint8)
    frames = [rng.integers(0, 256, (210, 160), dtype=np.uint8)]
    for _ in range(40):
        env.step(int(rng.integers(env.action_space.n)))
        env.unwrapped.ale.getScreenGrayscale(gray)
        frames.append(gray.copy())
    for frame in frames:
        np.testing.assert_array_equal(bilinear_resize(frame, 84, 84), cv2.resize(frame, (84, 84), cv2.INTER_LINEAR))


@pytest.mark.parametrize("counter, flagged", [("on_loss", False), ("every_step", True)])
def test_life_counter_after_a_bonus_life(counter, flagged):
    """STORM's LifeLossInfo moves its counter only on a loss: after a bonus life (lives above the counter) the
    next loss, back to the counter's value, is not flagged. ``every_step`` follows every change."""
    env = envs.make("atari100k-ms_pacman", life_counter=counter)
    env.reset(seed=0)
    inner = env
    while not hasattr(inner, "life_counter"):
        inner = inner.env
    lives = inner.ale.lives()
    inner._lives = lives - 1  # as after a bonus life: the ALE has one more life than the counter
    rng = np.random.default_rng(0)
    for _ in range(3000):
        _, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        if info["lives"] < lives:
            break
    assert info["lives"] == lives - 1 and info["life_loss"] is flagged
    _, _, _, _, info = env.step(0)
    assert inner._lives == lives - 1
