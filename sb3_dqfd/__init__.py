"""sb3_dqfd: Deep Q-learning from Demonstrations and friends for Stable-Baselines3."""

import os

from sb3_dqfd.common.buffers import CompactDQfDReplayBuffer, DQfDReplayBuffer
from sb3_dqfd.common.demonstrations import (
    Demonstrations,
    DemonstrationsNotFoundError,
    Episode,
    FrameStack,
    Transitions,
    frame_stack_demonstrations,
    load_demonstrations,
    record_demonstrations,
    save_demonstrations,
    unstack_demonstrations,
)
from sb3_dqfd.common.experts import EXPERTS, NormalizedExpert, get_expert, load_vecnormalize_statistics
from sb3_dqfd.common.hyperparams import shipped_hyperparameters
from sb3_dqfd.dqfd import DQfD
from sb3_dqfd.sacfd import RLPD_HYPERPARAMS, SACfD
from sb3_dqfd.td3fd import TD3fD
from sb3_dqfd.transformer_a2c import TransformerA2C
from sb3_dqfd.transformer_ppo import TransformerPPO

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = [
    "EXPERTS",
    "RLPD_HYPERPARAMS",
    "CompactDQfDReplayBuffer",
    "DQfD",
    "DQfDReplayBuffer",
    "Demonstrations",
    "DemonstrationsNotFoundError",
    "Episode",
    "FrameStack",
    "NormalizedExpert",
    "SACfD",
    "TD3fD",
    "TransformerA2C",
    "TransformerPPO",
    "Transitions",
    "__version__",
    "frame_stack_demonstrations",
    "get_expert",
    "load_demonstrations",
    "load_vecnormalize_statistics",
    "record_demonstrations",
    "save_demonstrations",
    "shipped_hyperparameters",
    "unstack_demonstrations",
]
