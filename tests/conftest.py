"""Test-wide settings: one torch thread (the CI machines have 2 cores), a headless matplotlib, reproducible hypothesis."""

import os

import matplotlib
import torch as th
from hypothesis import settings

matplotlib.use("Agg")
th.set_num_threads(1)

# CI must not turn red on an example no run before found: the default profile draws the same examples every run
# (derived from each test). HYPOTHESIS_PROFILE=explore searches with fresh random examples, to look for new failures.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
