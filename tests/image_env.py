"""A tiny channel-last image env and its expert, for the image tests."""

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class BrightSideEnv(gym.Env):
    """A 40x40 grey image lit on its left or right half; action 0 (left) or 1 (right) scores 1 when it matches."""

    observation_space = spaces.Box(0, 255, (40, 40, 1), np.uint8)
    action_space = spaces.Discrete(2)

    def __init__(self) -> None:
        self.side, self.t = 0, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._observation(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(action == self.side)
        self.t += 1
        return self._observation(), reward, False, self.t >= 8, {}

    def _observation(self) -> np.ndarray:
        self.side = int(self.np_random.integers(2))
        image = np.zeros((40, 40, 1), dtype=np.uint8)
        image[:, 20 * self.side : 20 * (self.side + 1)] = 255
        return image


def lit_side(observation: np.ndarray) -> int:
    return int(observation[:, 20:].mean() > observation[:, :20].mean())
