"""Atari 100k on ale-py, in the two protocols the literature uses, plus the human-normalization tables.

Both protocols drive ``ALE/<Game>-v5`` (minimal action set) with the ALE's own frame skip set to 1 and its
own sticky actions off; frame skipping, sticky actions, pooling and resizing happen in
:class:`AtariProtocolEnv`, one pass per agent step straight on the ALE interface.

``atari100k-<game>`` -- STORM's protocol (Zhang et al. 2023, the authors' released code), label ``atari100k-storm``:

* sticky actions with p = 0.25 (the v5 default), per emulator frame, with the ALE's semantics: before each
  frame a uniform draw ``u`` from the env's ``np_random``; if ``u >= p`` the requested action becomes the
  executed one, else the previously executed action repeats; the executed action is NOOP after a reset.
  (Implemented here rather than in the ALE because ``cloneState`` does not save the ALE's previous
  action, which would break exact resume; the distribution is the ALE's.);
* each agent step repeats the action for 4 frames, sums the raw rewards, and returns the pixel-wise max of
  the last 2 frames (the single frame if the episode ended after one frame);
* 210x160x3 RGB -> 64x64x3 RGB with area interpolation (OpenCV ``INTER_AREA`` semantics, the resize
  gymnasium 0.29's ``ResizeObservation`` used; :func:`area_resize`). Observations are uint8 HWC
  ``(64, 64, 3)``;
* no no-op starts, no reward clipping, no frame stacking;
* episodes are capped at 108,000 frames (27,000 agent steps), reported as ``truncated``;
* a life loss does not end the episode; ``info["life_loss"]`` flags it (STORM ORs it into the stored
  termination bit; that is the regime's business). ``info["lives"]`` has the lives left. The life counter it
  compares with (``life_counter``) only moves when the lives decrease: STORM's ``LifeLossInfo`` wrapper
  (``env_wrapper.py``) sets ``self.lives_info`` at reset and on a loss only, so after a bonus life the next
  loss back to the old count is not flagged. ``env.kwargs.life_counter=every_step`` follows every change;
* ``reseed_every_reset=True`` (the protocol's default, STORM's released code): a reset without a seed re-uses the last
  seed given, as STORM's training loop re-seeds its env identically at every reset. Every episode then
  starts from the same emulator state with the same sticky-action random stream; only the agent's actions
  make episodes differ. Resets with an explicit seed (rlkit's evaluation) are unaffected.
  ``env.kwargs.reseed_every_reset=false`` gives a fresh random stream per episode.

``atari100k-<game>`` with ``protocol="spr"`` (``env.kwargs.protocol=spr``; ``algo=spr`` and ``algo=vcr``
select it), or the alias ``atari-spr-<game>`` -- the SPR / DER protocol (SPR defaults, Schwarzer et al.
2021), label ``atari100k-spr``:

* no sticky actions; 1..30 no-op frames after every full reset (uniform, the env's ``np_random``; the
  gymnasium ``AtariPreprocessing`` / baselines convention);
* frame skip 4 with max-pool of the last 2 frames; grayscale (the ALE's luminance) resized to 84x84 with
  bilinear interpolation (``resize="bilinear"``: SPR's ``src/rlpyt_atari_env.py`` calls ``cv2.resize(frame,
  (84, 84), cv2.INTER_LINEAR)``, OpenCV's fixed-point bilinear, reproduced bit for bit by
  :func:`bilinear_resize`; ``env.kwargs.resize=area`` gives area interpolation); the last 4 frames stacked ->
  uint8 ``(4, 84, 84)`` (gymnasium's ``FrameStackObservation``);
* the stack starts from zero frames (``frame_stack_padding="zero"``): SPR's env zeroes its stack
  (``_reset_obs``) at every reset and, in training, at every life loss, then appends the new frame, giving
  ``[0, 0, 0, f]``. Here a reset, and the seedless reset that continues the game after a life-loss end, pad
  with zeros the same way. ``env.kwargs.frame_stack_padding=reset`` repeats the first frame instead (gymnasium's
  default). Not reproduced: SPR's env also acts one extra NOOP frame at a reset and after a life loss
  (``_life_reset``) and shows that frame unpooled;
* ``training=True`` (for collecting replay) clips rewards to their sign and ends an episode on a life
  loss. After such a life-loss end, ``reset()`` (without a seed) continues the same game from its current
  frame -- the dopamine / DQN convention -- and only a game over (or a ``seed``) resets the emulator.
  ``training=False`` (the default, for evaluation) returns raw scores and game-over episodes.
  ``info["raw_reward"]`` always has the unclipped reward;
* the same 108,000-frame cap; the same life counter as STORM's (SPR's ``_check_life`` also updates it on a loss
  only).

gymnasium's ``AtariPreprocessing`` would do the SPR preprocessing but needs OpenCV, which rlkit does not
depend on; :class:`AtariProtocolEnv` does the same steps in numpy.

Every reset's info carries ``info["protocol"]``; :func:`protocol_of` maps names to labels and
:data:`PROTOCOLS` lists each protocol's settings.

Scores: ``ATARI_RANDOM_SCORES`` / ``ATARI_HUMAN_SCORES`` are the standard Atari 100k reference table
(rows of :data:`rlkit.envs.catalog.ATARI100K`; the one used by SimPLe, DER, SPR, IRIS and STORM, checked
against a third-party copy). Human-normalized score = (score - random) / (human - random).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import ale_py
import gymnasium as gym
import numpy as np

from rlkit.envs import catalog
from rlkit.errors import EnvError, choices_hint

gym.register_envs(ale_py)

# The games and their reference scores are rows of rlkit.envs.catalog (one row per game).
ATARI100K_GAMES: tuple[str, ...] = tuple(row.game for row in catalog.ATARI100K)
ATARI_RANDOM_SCORES: dict[str, float] = {row.game: row.random for row in catalog.ATARI100K}
ATARI_HUMAN_SCORES: dict[str, float] = {row.game: row.human for row in catalog.ATARI100K}

MAX_EPISODE_FRAMES = 108_000

PROTOCOLS: dict[str, dict[str, Any]] = {
    "atari100k-storm": {
        "ale_id": "ALE/<Game>-v5", "full_action_space": False, "sticky_actions": 0.25, "frame_skip": 4,
        "max_pool_last": 2, "noop_max": 0, "observation": "rgb uint8 (64, 64, 3) HWC, area resize",
        "frame_stack": 1, "clip_rewards": False, "terminal_on_life_loss": False, "life_counter": "on_loss",
        "reseed_every_reset": True, "max_episode_frames": MAX_EPISODE_FRAMES,
        "source": "STORM (Zhang et al. 2023), the authors' released code",
    },
    "atari100k-spr": {
        "ale_id": "ALE/<Game>-v5", "full_action_space": False, "sticky_actions": 0.0, "frame_skip": 4,
        "max_pool_last": 2, "noop_max": 30, "observation": "grayscale uint8 (4, 84, 84), bilinear resize",
        "frame_stack": 4, "frame_stack_padding": "zero", "clip_rewards": "training only",
        "terminal_on_life_loss": "training only", "life_counter": "on_loss",
        "reseed_every_reset": False,
        "max_episode_frames": MAX_EPISODE_FRAMES, "source": "SPR (Schwarzer et al. 2021) defaults",
    },
}

_PREFIXES = {"atari100k-": "atari100k-storm", "atari-spr-": "atari100k-spr"}


#: ``protocol=`` values of ``atari100k-<game>`` -> labels
PROTOCOL_NAMES = {"storm": "atari100k-storm", "spr": "atari100k-spr"}


def protocol_of(name: str, protocol: str | None = None) -> str:
    """The protocol label of an env name (and its ``protocol`` keyword): ``atari100k-pong`` ->
    ``atari100k-storm``; ``atari100k-pong`` with ``protocol="spr"`` -> ``atari100k-spr``."""
    low = name.lower()
    if protocol is not None and low.startswith("atari100k-"):
        return _protocol_label(protocol)
    for prefix, label in _PREFIXES.items():
        if low.startswith(prefix):
            return label
    raise EnvError(f"'{name}' is not an Atari env name; use 'atari100k-<game>' or 'atari-spr-<game>'")


def _protocol_label(protocol: str) -> str:
    if protocol not in PROTOCOL_NAMES:
        raise EnvError(f"unknown Atari 100k protocol '{protocol}'; choose one of {choices_hint(PROTOCOL_NAMES)}")
    return PROTOCOL_NAMES[protocol]


def game_of(name: str) -> str:
    """The rlkit game name of an env name: ``atari-spr-ms_pacman`` -> ``ms_pacman``."""
    low = name.lower()
    for prefix in _PREFIXES:
        if low.startswith(prefix):
            return low[len(prefix):]
    return low


def ale_id(game: str) -> str:
    """``ms_pacman`` -> ``ALE/MsPacman-v5``; ``up_n_down`` -> ``ALE/UpNDown-v5``."""
    return "ALE/" + "".join(part.capitalize() for part in game.split("_")) + "-v5"


def human_normalized_score(game: str, score: float) -> float:
    """``(score - random) / (human - random)`` with the Atari 100k reference table."""
    if game not in ATARI_HUMAN_SCORES:
        raise EnvError(f"no human/random reference score for '{game}'; choose one of "
                       f"{choices_hint(ATARI_HUMAN_SCORES)}")
    random = ATARI_RANDOM_SCORES[game]
    return (score - random) / (ATARI_HUMAN_SCORES[game] - random)


# --- area resize --------------------------------------------------------------------------------------

@lru_cache(maxsize=16)
def area_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse 1-D area-resampling weights: ``out[i] = sum_k w[i, k] * in[idx[i, k]]``.

    Output cell ``i`` covers the source interval ``[i s, (i + 1) s)`` with ``s = in_size / out_size``; a
    source pixel's weight is its overlap with that interval divided by the cell width (slivers under 1e-3
    pixel are dropped, as OpenCV's ``INTER_AREA`` does). Rows sum to 1.
    """
    scale = in_size / out_size
    rows: list[list[tuple[int, float]]] = []
    for i in range(out_size):
        lo, hi = i * scale, (i + 1) * scale
        width = min(scale, in_size - lo)
        first, last = int(np.ceil(lo)), int(np.floor(hi))
        last = min(last, in_size - 1)
        first = min(first, last)
        row = []
        if first - lo > 1e-3:
            row.append((first - 1, (first - lo) / width))
        row.extend((j, 1.0 / width) for j in range(first, last))
        if hi - last > 1e-3:
            row.append((last, min(min(hi - last, 1.0), width) / width))
        rows.append(row)
    k = max(len(r) for r in rows)
    idx = np.zeros((out_size, k), np.int64)
    w = np.zeros((out_size, k), np.float32)
    for i, row in enumerate(rows):
        for j, (src, weight) in enumerate(row):
            idx[i, j], w[i, j] = src, weight
    return idx, w


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-interpolated downscale of a uint8 ``(H, W)`` or ``(H, W, C)`` image.

    Separable: each output pixel is the mean of the source area it covers (fractional pixels weighted by
    coverage), i.e. OpenCV's ``resize(..., interpolation=INTER_AREA)`` for downscaling, including its
    rounding (half to even, or half up when both scale factors are integers, where OpenCV averages
    whole blocks in fixed point).
    """
    in_h, in_w = image.shape[:2]
    h_idx, h_w = area_weights(in_h, height)
    w_idx, w_w = area_weights(in_w, width)
    # Width first, then height, summed in float32: OpenCV's order, so ties round identically.
    if image.ndim == 3:
        cols = np.einsum("hwkc,wk->hwc", image[:, w_idx], w_w)  # (H, width, C) float32
        out = np.einsum("hkwc,hk->hwc", cols[h_idx], h_w)       # (height, width, C)
    else:
        cols = np.einsum("hwk,wk->hw", image[:, w_idx], w_w)
        out = np.einsum("hkw,hk->hw", cols[h_idx], h_w)
    if in_h % height == 0 and in_w % width == 0:
        out = np.floor(out + 0.5)
    else:
        out = np.rint(out)
    return np.clip(out, 0, 255).astype(np.uint8)


@lru_cache(maxsize=16)
def linear_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's ``INTER_LINEAR`` taps for one axis: source indices ``(i0, i1)`` and 11-bit fixed-point weights
    ``(out, 2)`` summing to 2048. Source coordinate ``f = (d + 0.5) in/out - 0.5`` (float32), ``i0 = floor(f)``,
    weights ``round((1 - frac) 2048), round(frac 2048)``; clamped to the edge pixel outside the image."""
    scale = in_size / out_size
    i0 = np.zeros(out_size, np.int64)
    w = np.zeros((out_size, 2), np.int64)
    for d in range(out_size):
        f = np.float32((d + 0.5) * scale - 0.5)
        s = int(np.floor(f))
        frac = np.float32(f - s)
        if s < 0:
            s, frac = 0, np.float32(0)
        if s >= in_size - 1:
            s, frac = in_size - 1, np.float32(0)
        i0[d] = s
        w[d] = (np.rint(np.float32(1 - frac) * 2048), np.rint(frac * 2048))
    return i0, np.minimum(i0 + 1, in_size - 1), w


def bilinear_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a uint8 ``(H, W)`` image, equal to OpenCV's ``cv2.resize(..., INTER_LINEAR)``.

    Rows first: ``h = p[i0] w0 + p[i1] w1`` (integers, scale 2048), then columns with the rounding of OpenCV's
    vectorised pass: ``((h0 >> 4) b0 >> 16) + ((h1 >> 4) b1 >> 16)``, then ``(x + 2) >> 2``.
    """
    ys0, ys1, wy = linear_weights(image.shape[0], height)
    xs0, xs1, wx = linear_weights(image.shape[1], width)
    src = image.astype(np.int64)
    rows = src[:, xs0] * wx[:, 0] + src[:, xs1] * wx[:, 1]
    out = ((rows[ys0] >> 4) * wy[:, :1] >> 16) + ((rows[ys1] >> 4) * wy[:, 1:] >> 16)
    return np.clip((out + 2) >> 2, 0, 255).astype(np.uint8)


RESIZES = {"area": area_resize, "bilinear": bilinear_resize}
LIFE_COUNTERS = ("on_loss", "every_step")
STACK_PADDINGS = ("zero", "reset")


# --- the protocol wrapper -----------------------------------------------------------------------------

class AtariProtocolEnv(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Frame skip + max-pool, sticky actions, no-op starts, life-loss handling, grayscale, area resize.

    Wraps an ``ALE/<Game>-v5`` env made with ``frameskip=1`` and ``repeat_action_probability=0``. See the
    module docstring for the semantics of each option; ``protocol`` is reported in ``info["protocol"]``.
    """

    def __init__(self, env: gym.Env, *, protocol: str, frame_skip: int = 4,
                 repeat_action_probability: float = 0.25, noop_max: int = 0, grayscale: bool = False,
                 size: int = 64, clip_rewards: bool = False, terminal_on_life_loss: bool = False,
                 reseed_every_reset: bool = False, resize: str = "area", life_counter: str = "on_loss") -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, protocol=protocol, frame_skip=frame_skip,
            repeat_action_probability=repeat_action_probability, noop_max=noop_max, grayscale=grayscale,
            size=size, clip_rewards=clip_rewards,
            terminal_on_life_loss=terminal_on_life_loss, reseed_every_reset=reseed_every_reset, resize=resize,
            life_counter=life_counter)
        gym.Wrapper.__init__(self, env)
        ale = env.unwrapped.ale
        if ale.getFloat("repeat_action_probability") != 0.0 or env.unwrapped._frameskip != 1:
            raise EnvError("AtariProtocolEnv needs the ALE made with frameskip=1 and "
                           "repeat_action_probability=0")
        self.protocol = protocol
        self.frame_skip = int(frame_skip)
        self.repeat_action_probability = float(repeat_action_probability)
        self.noop_max = int(noop_max)
        self.grayscale, self.size = grayscale, int(size)
        self.clip_rewards, self.terminal_on_life_loss = clip_rewards, terminal_on_life_loss
        self.reseed_every_reset = bool(reseed_every_reset)
        if resize not in RESIZES:
            raise EnvError(f"unknown env.kwargs.resize '{resize}'; choose one of: {', '.join(RESIZES)}")
        if resize == "bilinear" and not grayscale:
            raise EnvError("resize=bilinear is SPR's grayscale resize; the RGB protocol uses resize=area")
        if life_counter not in LIFE_COUNTERS:
            raise EnvError(f"unknown env.kwargs.life_counter '{life_counter}'; choose one of: "
                           f"{', '.join(LIFE_COUNTERS)}")
        self._resize_fn = RESIZES[resize]
        self.life_counter = life_counter
        self._action_set = env.unwrapped._action_set
        self._noop = ale_py.Action.NOOP
        h, w = ale.getScreenDims()
        screen = (h, w) if grayscale else (h, w, 3)
        self._screens = [np.zeros(screen, np.uint8), np.zeros(screen, np.uint8)]
        shape = (self.size, self.size) if grayscale else (self.size, self.size, 3)
        self.observation_space = gym.spaces.Box(0, 255, shape=shape, dtype=np.uint8)
        # dynamic state (saved by get_rlkit_state)
        self._executed = self._noop
        self._lives = 0
        self._game_over = True
        self._last_obs = np.zeros(shape, np.uint8)
        self._reset_seed: int | None = None  # the last explicit reset seed (reseed_every_reset)

    @property
    def ale(self) -> ale_py.ALEInterface:
        return self.env.unwrapped.ale

    def _grab(self, slot: int) -> None:
        if self.grayscale:
            self.ale.getScreenGrayscale(self._screens[slot])
        else:
            self.ale.getScreenRGB(self._screens[slot])

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        return self._resize_fn(frame, self.size, self.size)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
              ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None and not self._game_over:  # after a life-loss end (training): keep playing
            info = {"protocol": self.protocol, "lives": self._lives, "soft_reset": True}
            return self._last_obs.copy(), info
        if seed is not None:
            self._reset_seed = int(seed)
        elif self.reseed_every_reset:
            seed = self._reset_seed
        _, info = self.env.reset(seed=seed, options=options)
        self._executed = self._noop
        if self.noop_max > 0:
            rng = self.env.unwrapped.np_random
            for _ in range(int(rng.integers(1, self.noop_max + 1))):
                self.ale.act(self._noop)
                if self.ale.game_over():
                    self.env.reset(options=options)
        self._grab(0)
        self._lives = self.ale.lives()
        self._game_over = False
        self._last_obs = self._resize(self._screens[0])
        info = {**info, "protocol": self.protocol, "lives": self._lives}
        return self._last_obs.copy(), info

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        requested = self._action_set[int(action)]
        ale, p = self.ale, self.repeat_action_probability
        rng = self.env.unwrapped.np_random
        reward, frames, terminated, truncated = 0.0, 0, False, False
        for i in range(self.frame_skip):
            if p == 0.0 or rng.random() >= p:
                self._executed = requested
            reward += ale.act(self._executed)
            self._grab(i % 2)
            frames += 1
            terminated = ale.game_over(with_truncation=False)
            truncated = ale.game_truncated()
            if terminated or truncated:
                break
        last = self._screens[(frames - 1) % 2]
        frame = last if frames == 1 else np.maximum(self._screens[0], self._screens[1])
        self._last_obs = self._resize(frame)
        lives = ale.lives()
        life_loss = lives < self._lives
        if life_loss or self.life_counter == "every_step":
            self._lives = lives
        self._game_over = terminated or truncated
        info = {"lives": lives, "life_loss": life_loss, "raw_reward": reward, "frames": frames,
                "episode_frame_number": ale.getEpisodeFrameNumber()}
        if self.terminal_on_life_loss:
            terminated = terminated or life_loss
        out_reward = float(np.sign(reward)) if self.clip_rewards else reward
        return self._last_obs.copy(), out_reward, bool(terminated), bool(truncated), info

    # --- exact-resume state (envs.state); the ALE itself is saved by the AtariEnv layer --------------
    def get_rlkit_state(self) -> dict[str, Any]:
        # The screen buffers are rewritten before they are read in every step, so they are not saved.
        return {"executed": self._executed.value, "lives": self._lives, "game_over": self._game_over,
                "last_obs": self._last_obs.copy(), "reset_seed": self._reset_seed}

    def set_rlkit_state(self, state: dict[str, Any]) -> None:
        self._executed = ale_py.Action(state["executed"])
        self._lives, self._game_over = state["lives"], state["game_over"]
        self._last_obs = state["last_obs"].copy()
        self._reset_seed = state.get("reset_seed")


def _base_env(name: str, **kwargs: Any) -> gym.Env:
    game = game_of(name)
    options = {"frameskip": 1, "repeat_action_probability": 0.0, "full_action_space": False,
               "max_num_frames_per_episode": MAX_EPISODE_FRAMES, "disable_env_checker": True, **kwargs}
    try:
        return gym.make(ale_id(game), **options)
    except gym.error.Error as exc:
        raise EnvError(f"unknown Atari game '{game}' in '{name}' ({exc}); the Atari 100k games are "
                       f"{choices_hint(ATARI100K_GAMES)}") from exc


def make_atari100k(name: str, *, protocol: str = "storm", repeat_action_probability: float | None = None,
                   reseed_every_reset: bool = True, life_counter: str = "on_loss", **kwargs: Any) -> gym.Env:
    """``atari100k-<game>``: STORM's Atari 100k protocol (64x64 RGB, sticky 0.25, skip 4, raw rewards), or
    with ``protocol="spr"`` the SPR protocol (:func:`make_atari_spr`; its keywords ``training``,
    ``clip_rewards``, ``terminal_on_life_loss``, ``noop_max``, ``frame_stack`` pass through).

    ``repeat_action_probability`` is exposed for tests and ablations; the STORM protocol value is 0.25.
    ``reseed_every_reset`` (STORM's released code's behaviour) re-uses the last seed at seedless resets;
    ``life_counter`` (``on_loss``: STORM's code; ``every_step``) is the counter ``info["life_loss"]`` compares with.
    """
    _protocol_label(protocol)
    if protocol == "spr":
        if repeat_action_probability is not None:
            raise EnvError("the SPR protocol has no sticky actions; drop env.kwargs.repeat_action_probability")
        return make_atari_spr(name, reseed_every_reset=reseed_every_reset, life_counter=life_counter, **kwargs)
    spr_only = sorted(set(kwargs) & {"training", "clip_rewards", "terminal_on_life_loss", "noop_max", "frame_stack",
                                     "frame_stack_padding", "resize"})
    if spr_only:
        raise EnvError(f"{spr_only} are options of the SPR protocol; add env.kwargs.protocol=spr or drop them")
    sticky = 0.25 if repeat_action_probability is None else repeat_action_probability
    return AtariProtocolEnv(_base_env(name, **kwargs), protocol="atari100k-storm", frame_skip=4,
                            repeat_action_probability=sticky, noop_max=0,
                            grayscale=False, size=64, reseed_every_reset=reseed_every_reset,
                            life_counter=life_counter)


def make_atari_spr(name: str, *, training: bool = False, clip_rewards: bool | None = None,
                   terminal_on_life_loss: bool | None = None, noop_max: int = 30, frame_stack: int = 4,
                   frame_stack_padding: str = "zero", resize: str = "bilinear", life_counter: str = "on_loss",
                   reseed_every_reset: bool = False, **kwargs: Any) -> gym.Env:
    """``atari-spr-<game>``: the SPR / DER protocol (84x84 grayscale, 4-stack, no sticky, no-op starts).

    ``training=True`` turns on reward clipping and life-loss-as-terminal (each can be set on its own); the
    default ``training=False`` is the evaluation form (raw scores, game-over episodes). ``frame_stack_padding``
    (``zero``: SPR's code; ``reset``), ``resize`` (``bilinear``: SPR's code; ``area``) and ``life_counter``: see the
    module docstring.
    """
    if frame_stack_padding not in STACK_PADDINGS:
        raise EnvError(f"unknown env.kwargs.frame_stack_padding '{frame_stack_padding}'; choose one of: "
                       f"{', '.join(STACK_PADDINGS)}")
    base = AtariProtocolEnv(_base_env(name, **kwargs), protocol="atari100k-spr", frame_skip=4,
                            repeat_action_probability=0.0, noop_max=noop_max, grayscale=True, size=84,
                            clip_rewards=training if clip_rewards is None else clip_rewards,
                            terminal_on_life_loss=training if terminal_on_life_loss is None
                            else terminal_on_life_loss, reseed_every_reset=reseed_every_reset, resize=resize,
                            life_counter=life_counter)
    return gym.wrappers.FrameStackObservation(base, frame_stack, padding_type=frame_stack_padding)
