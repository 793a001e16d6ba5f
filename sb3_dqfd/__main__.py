"""``python -m sb3_dqfd``: the command line (see :mod:`sb3_dqfd.cli`)."""

import sys

from sb3_dqfd.cli import main

sys.exit(main())
