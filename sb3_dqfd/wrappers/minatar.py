"""MinAtar's bool observations as uint8 images, so that Stable-Baselines3 treats them as images."""

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class MinAtarImage(gym.ObservationWrapper[np.ndarray, gym.core.ActType, np.ndarray]):
    """
    Cast MinAtar's ``10x10xn`` bool observations to uint8 images: 0 (cell off) or 255 (cell on).

    SB3 treats an observation as an image only when it is uint8 with bounds 0..255 (``is_image_space``): then
    ``CnnPolicy`` accepts it, ``VecTransposeImage`` puts its channels first and the policy divides it by 255, so the
    network still sees MinAtar's 0/1 cells. Channel ``k`` keeps its meaning (see the game's ``channels``), so the
    built-in MinAtar experts read the wrapped observation as they read the bool one.

    :param env: a MinAtar environment (``MinAtar/<Game>-v1`` after ``minatar.gym.register_envs()``)
    """

    def __init__(self, env: gym.Env) -> None:
        space = env.observation_space
        if not isinstance(space, spaces.Box) or space.dtype != np.bool_ or len(space.shape) != 3:
            raise TypeError(f"MinAtarImage expects MinAtar's bool observations (a 3-d bool Box), got {space}")
        super().__init__(env)
        self.observation_space = spaces.Box(0, 255, space.shape, np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation.astype(np.uint8) * np.uint8(255)
