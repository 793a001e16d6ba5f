"""
rl-zoo3 and Optuna integration: our algorithms in rl-zoo3's tables, their Optuna search spaces, and ``tune``.

Needs the ``zoo`` extra (``pip install sb3-dqfd[zoo]``: rl-zoo3, Optuna, and a database driver for shared studies)
when used; importing this package does not (so a command line can offer ``tune`` and explain what is missing).
"""

from sb3_dqfd.zoo.command import add_tune_subcommand, run_tune_command, tune_main
from sb3_dqfd.zoo.registration import HYPERPARAMS_DIR, ZooError, read_zoo_entry, register_algorithms
from sb3_dqfd.zoo.samplers import (
    convert_dqfd_params,
    convert_transformer_a2c_params,
    sample_dqfd_params,
    sample_transformer_a2c_params,
)

__all__ = [
    "HYPERPARAMS_DIR",
    "ZooError",
    "add_tune_subcommand",
    "convert_dqfd_params",
    "convert_transformer_a2c_params",
    "read_zoo_entry",
    "register_algorithms",
    "run_tune_command",
    "sample_dqfd_params",
    "sample_transformer_a2c_params",
    "tune_main",
]
