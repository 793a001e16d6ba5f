"""MinAtar's bool observations as uint8 images, so that Stable-Baselines3 treats them as images."""

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class MinAtarImage(gym.ObservationWrapper[np.ndarray, gym.core.ActType, np.ndarray], gym.utils.RecordConstructorArgs):
    """
    Cast MinAtar's ``10x10xn`` bool observations to uint8 images: 0 (cell off) or 255 (cell on).

    SB3 treats an observation as an image only when it is uint8 with bounds 0..255 (``is_image_space``): then
    ``CnnPolicy`` accepts it, ``VecTransposeImage`` puts its channels first and the policy divides it by 255, so the
    network still sees MinAtar's 0/1 cells. Channel ``k`` keeps its meaning (see the game's ``channels``), so the
    built-in MinAtar experts read the wrapped observation as they read the bool one.

    SB3 guesses the channel axis as the smallest one (``is_image_space_channels_first``): a ``10x10x10`` image
    (Seaquest) would be taken as channel-first and fed to the CNN rows-as-channels. So for games with 10 channels or
    more the wrapper puts the channels first itself (``n x 10 x 10``), and SB3 reads that layout right.

    The wrapper records its constructor arguments (``env.spec`` lists it), so ``gym.make(env.spec)`` rebuilds the
    wrapped environment, as ``expert:N`` demonstrations do.

    :param env: a MinAtar environment (``MinAtar/<Game>-v1`` after ``minatar.gym.register_envs()``)

    >>> import minatar.gym
    >>> if "MinAtar/Breakout-v1" not in gym.registry:  # registering twice warns
    ...     minatar.gym.register_envs()
    >>> MinAtarImage(gym.make("MinAtar/Breakout-v1")).observation_space
    Box(0, 255, (10, 10, 4), uint8)
    >>> MinAtarImage(gym.make("MinAtar/Seaquest-v1")).channels_first  # 10 channels: laid out first
    True
    """

    def __init__(self, env: gym.Env) -> None:
        space = env.observation_space
        if not isinstance(space, spaces.Box) or space.dtype != np.bool_ or len(space.shape) != 3:
            raise TypeError(f"MinAtarImage expects MinAtar's bool observations (a 3-d bool Box), got {space}")
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)
        height, width, n_channels = space.shape
        # Channel-last unless SB3 would read it as channel-first (channels not the strictly smallest axis)
        self.channels_first = n_channels >= min(height, width)
        shape = (n_channels, height, width) if self.channels_first else space.shape
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        image = observation.astype(np.uint8) * np.uint8(255)  # [10, 10, n]
        return np.ascontiguousarray(np.moveaxis(image, -1, 0)) if self.channels_first else image
