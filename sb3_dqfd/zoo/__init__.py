"""
rl-zoo3 and Optuna integration: our algorithms in rl-zoo3's tables, their Optuna search spaces, and ``tune``.

Needs the ``zoo`` extra (``pip install sb3-dqfd[zoo]``: rl-zoo3, Optuna, and a database driver for shared studies).
"""

from sb3_dqfd.zoo.registration import HYPERPARAMS_DIR, ZooError, read_zoo_entry, register_algorithms
from sb3_dqfd.zoo.samplers import (
    convert_dqfd_params,
    convert_transformer_a2c_params,
    sample_dqfd_params,
    sample_transformer_a2c_params,
)
from sb3_dqfd.zoo.tune import add_tune_subcommand, run_tune, tune_main

__all__ = [
    "HYPERPARAMS_DIR",
    "ZooError",
    "add_tune_subcommand",
    "convert_dqfd_params",
    "convert_transformer_a2c_params",
    "read_zoo_entry",
    "register_algorithms",
    "run_tune",
    "sample_dqfd_params",
    "sample_transformer_a2c_params",
    "tune_main",
]
