"""TinyCatch: a small pixel game for CPU learning checks of pixel-based agents (STORM's learning check).

The game is bsuite's *Catch* (Osband et al. 2020) drawn as an RGB image:

* a ``rows`` x ``cols`` grid (default 8 x 8), each cell ``cell`` x ``cell`` pixels (default 2: 16x16x3
  uint8 frames, channels last like ``atari100k-*``);
* a ball appears in row 0 at a uniformly random column and falls one row per step; a paddle of
  ``paddle`` cells (default 1) sits in the bottom row, starting in the middle (column ``(cols - paddle)
  // 2``);
* actions: 0 = stay, 1 = left, 2 = right (the paddle stops at the walls); the paddle moves, then the
  ball falls;
* when the ball reaches the bottom row the episode terminates with reward +1 if it lands on the paddle,
  else -1 (all other rewards are 0), so every episode lasts ``rows - 1`` steps;
* ``info["life_loss"]`` is always False (one life; the key lets agents that store it run unchanged).

Returns: a perfect policy scores +1. A policy that ignores the ball (uniform random, or a constant
action) catches with probability ``paddle / cols`` and scores ``2 paddle / cols - 1`` (-0.75 with the
defaults; :func:`random_policy_return`).

Registered as ``rlkit/TinyCatch-v0``; ``gymnasium.make("rlkit.envs.tiny_pixels:rlkit/TinyCatch-v0")`` imports
this module first, so the env needs no entry in :mod:`envs`'s name dispatcher.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

BALL_COLOUR = np.array([255, 255, 255], dtype=np.uint8)
PADDLE_COLOUR = np.array([64, 255, 64], dtype=np.uint8)


class TinyCatchEnv(gym.Env):
    """bsuite Catch on pixels (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, rows: int = 8, cols: int = 8, cell: int = 2, paddle: int = 1,
                 render_mode: str | None = None) -> None:
        if rows < 2 or cols < 1 or cell < 1 or not 1 <= paddle <= cols:
            raise ValueError(f"TinyCatch needs rows >= 2, cols >= 1, cell >= 1, 1 <= paddle <= cols; got "
                             f"rows={rows}, cols={cols}, cell={cell}, paddle={paddle}")
        self.rows, self.cols, self.cell, self.paddle = int(rows), int(cols), int(cell), int(paddle)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (rows * cell, cols * cell, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.ball_row, self.ball_col, self.paddle_col = 0, 0, (cols - paddle) // 2

    def _frame(self) -> np.ndarray:
        grid = np.zeros((self.rows, self.cols, 3), np.uint8)
        grid[self.rows - 1, self.paddle_col:self.paddle_col + self.paddle] = PADDLE_COLOUR
        grid[self.ball_row, self.ball_col] = BALL_COLOUR
        return np.repeat(np.repeat(grid, self.cell, axis=0), self.cell, axis=1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.ball_row = 0
        self.ball_col = int(self.np_random.integers(self.cols))
        self.paddle_col = (self.cols - self.paddle) // 2
        return self._frame(), {"life_loss": False}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        move = {0: 0, 1: -1, 2: 1}[int(action)]
        self.paddle_col = int(np.clip(self.paddle_col + move, 0, self.cols - self.paddle))
        self.ball_row += 1
        terminated = self.ball_row == self.rows - 1
        reward = 0.0
        if terminated:
            caught = self.paddle_col <= self.ball_col < self.paddle_col + self.paddle
            reward = 1.0 if caught else -1.0
        return self._frame(), reward, terminated, False, {"life_loss": False}

    def render(self) -> np.ndarray:
        return self._frame()


def random_policy_return(cols: int = 8, paddle: int = 1) -> float:
    """Expected return of any policy blind to the ball (e.g. uniform random): the ball's column is
    uniform and independent of the paddle, so P(catch) = paddle / cols and E[R] = 2 paddle / cols - 1."""
    return 2.0 * paddle / cols - 1.0


gym.register(id="rlkit/TinyCatch-v0", entry_point="rlkit.envs.tiny_pixels:TinyCatchEnv")
