"""sb3_dqfd: Deep Q-learning from Demonstrations and friends for Stable-Baselines3."""

import os

from sb3_dqfd.common.demonstrations import Demonstrations, Episode

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = ["Demonstrations", "Episode", "__version__"]
