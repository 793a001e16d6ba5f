"""``python -m sb3_dqfd.zoo``: rl-zoo3's scripts with our algorithms registered, and ``tune``."""

import sys

from sb3_dqfd.zoo.cli import main

sys.exit(main())
