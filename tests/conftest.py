"""Test-wide settings: one torch thread (the CI machines have 2 cores) and a headless matplotlib."""

import matplotlib
import torch as th

matplotlib.use("Agg")
th.set_num_threads(1)
