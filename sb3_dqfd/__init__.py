"""sb3_dqfd: Deep Q-learning from Demonstrations and friends for Stable-Baselines3."""

import os

from sb3_dqfd.common.demonstrations import (
    Demonstrations,
    DemonstrationsNotFoundError,
    Episode,
    Transitions,
    load_demonstrations,
    record_demonstrations,
    save_demonstrations,
)
from sb3_dqfd.common.experts import EXPERTS, get_expert

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = [
    "EXPERTS",
    "Demonstrations",
    "DemonstrationsNotFoundError",
    "Episode",
    "Transitions",
    "__version__",
    "get_expert",
    "load_demonstrations",
    "record_demonstrations",
    "save_demonstrations",
]
