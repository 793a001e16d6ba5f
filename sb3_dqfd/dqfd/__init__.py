"""DQfD: Deep Q-learning from Demonstrations (Hester et al., AAAI 2018)."""

from sb3_dqfd.dqfd.dqfd import ATARI_PAPER_HYPERPARAMS, DQfD
from sb3_dqfd.dqfd.policies import (
    CnnPolicy,
    DQfDPolicy,
    DuelingQNetwork,
    MinAtarCNN,
    MlpPolicy,
    MultiInputPolicy,
    NoisyLinear,
    StandardizeCombinedExtractor,
    StandardizeExtractor,
    default_cnn,
)

__all__ = [
    "ATARI_PAPER_HYPERPARAMS",
    "CnnPolicy",
    "DQfD",
    "DQfDPolicy",
    "DuelingQNetwork",
    "MinAtarCNN",
    "MlpPolicy",
    "MultiInputPolicy",
    "NoisyLinear",
    "StandardizeCombinedExtractor",
    "StandardizeExtractor",
    "default_cnn",
]
