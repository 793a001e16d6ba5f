"""Features extractors shared by the algorithms: a CNN for small images such as MinAtar's, and the choice of CNN."""

import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, NatureCNN
from torch import nn


class MinAtarCNN(BaseFeaturesExtractor):
    """
    The MinAtar paper's network (Young & Tian, 2019): one 3x3 convolution of 16 channels, stride 1, then a dense layer.

    Sized for small images such as MinAtar's ``10x10xn`` (``NatureCNN``'s 8x8 stride-4 kernel does not fit them).
    ``CnnPolicy`` picks it for images with a side under 36 cells (:func:`default_cnn`); or pass
    ``policy_kwargs=dict(features_extractor_class=MinAtarCNN)``.

    :param observation_space: a channel-first image space (SB3's ``VecTransposeImage`` makes one of a channel-last
        uint8 image, e.g. :class:`sb3_dqfd.wrappers.MinAtarImage`)
    :param features_dim: units of the dense layer (128 in the paper)
    """

    def __init__(self, observation_space: spaces.Box, features_dim: int = 128) -> None:
        if not is_image_space(observation_space, check_channels=False, normalized_image=True):
            raise TypeError(f"MinAtarCNN expects an image observation space (a 3-d Box), got {observation_space}")
        super().__init__(observation_space, features_dim)
        n_channels, height, width = observation_space.shape
        if height < 3 or width < 3:
            raise ValueError(f"MinAtarCNN needs images of at least 3x3 for its 3x3 kernel, got {observation_space.shape}")
        self.cnn = nn.Sequential(nn.Conv2d(n_channels, 16, kernel_size=3, stride=1), nn.ReLU(), nn.Flatten())
        self.linear = nn.Sequential(nn.Linear(16 * (height - 2) * (width - 2), features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.linear(self.cnn(observations))


#: The smallest image side ``NatureCNN`` reads: its 8x8/4, 4x4/2 and 3x3/1 convolutions leave one cell of a 36x36 image
NATURE_CNN_MIN_SIDE = 36


def default_cnn(observation_space: spaces.Space) -> type[BaseFeaturesExtractor]:
    """
    The features extractor ``CnnPolicy`` uses unless told otherwise: SB3's ``NatureCNN``, or :class:`MinAtarCNN` for
    images smaller than ``NatureCNN`` can read (a side under 36 cells, e.g. MinAtar's 10x10), on which ``NatureCNN``
    would fail with a convolution error.

    :param observation_space: the observation space the policy receives (channel-first after SB3's transpose)
    :return: the extractor class
    """
    if isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 3:
        shape = observation_space.shape
        height, width = shape[1:] if is_image_space_channels_first(observation_space) else shape[:2]
        if min(height, width) < NATURE_CNN_MIN_SIDE:
            return MinAtarCNN
    return NatureCNN
