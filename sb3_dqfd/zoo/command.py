"""
The ``tune`` command line, importable without the ``zoo`` extra: rl-zoo3 and Optuna are imported when it runs.

To add ``tune`` to an argparse command line::

    from sb3_dqfd.zoo.command import add_tune_subcommand

    add_tune_subcommand(parser.add_subparsers())  # its func raises ZooError (a ValueError) on bad input
"""

import argparse
import sys
from collections.abc import Sequence

from sb3_dqfd.zoo.registration import ZooError

TUNE_DESCRIPTION = """\
Optuna hyperparameter search through rl-zoo3's experiment manager, shareable across machines.

rl-zoo3 builds the environments, the model and the pruned evaluation of each trial; Optuna samples, prunes and keeps
the study. Worker processes, on one machine or many, given the same --storage URL and --study-name share one study.
The best trial's hyperparameters are written as a ready-to-use rl-zoo3 YAML file (--output).
"""


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    """
    Add the options of ``tune`` to ``parser``.

    :param parser: the parser of the ``tune`` command
    """
    parser.add_argument("algo", help="dqfd, transformer_a2c (or transformer-a2c), or an rl-zoo3 algorithm (dqn, ppo, ...)")
    parser.add_argument("--env", required=True, help="environment id, e.g. CartPole-v1 (rl-zoo3's CartPoleNoVel-v1 too)")
    parser.add_argument(
        "--conf-file", help="rl-zoo3 hyperparameter YAML whose entry for --env holds the fixed settings (default: ours)"
    )
    parser.add_argument("--n-trials", type=int, default=50, help="trials run by THIS worker")
    parser.add_argument(
        "--max-total-trials", type=int, help="stop every worker once the study holds this many trials (all workers)"
    )
    parser.add_argument("--n-jobs", type=int, default=1, help="trials run in parallel threads by this worker")
    parser.add_argument(
        "--storage",
        help="Optuna storage shared by all workers: an RDB URL (postgresql://user:password@host:5432/db, "
        "mysql+pymysql://..., sqlite:///study.db) or a journal file path ending in .log (default: in memory)",
    )
    parser.add_argument("--study-name", help="study to create or join (default: <algo>-<env>)")
    parser.add_argument("--sampler", choices=["tpe", "random"], default="tpe")
    parser.add_argument("--pruner", choices=["median", "halving", "none"], default="median")
    parser.add_argument("--n-startup-trials", type=int, default=5, help="random trials before TPE and pruning start")
    parser.add_argument("--n-timesteps", type=int, help="environment steps per trial (default: n_timesteps of the YAML)")
    parser.add_argument("--n-evaluations", type=int, default=5, help="evaluations per trial (pruning points)")
    parser.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation")
    parser.add_argument(
        "--fix",
        nargs="+",
        default=[],
        metavar="NAME=VALUE",
        help="fix sampled parameters (Optuna PartialFixedSampler), e.g. --fix pretrain_steps=1000 demo_ratio=null",
    )
    parser.add_argument("--seed", type=int, help="seed of the sampler and the environments (default: random per worker)")
    parser.add_argument("--num-threads", type=int, default=1, help="torch threads (-1: torch's default)")
    parser.add_argument("--device", default="auto", help="torch device of the trials")
    parser.add_argument("--log-folder", default="logs/tune", help="rl-zoo3's log folder")
    parser.add_argument("--output", help="YAML file for the best hyperparameters (default: <log-folder>/<study>.yml)")
    parser.add_argument("--verbose", type=int, default=1, help="0: only errors and the summary, 1: each trial")


def add_tune_subcommand(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    """
    Add the ``tune`` command to a command line's subcommands. Its ``func`` default is :func:`run_tune_command`,
    which raises :class:`~sb3_dqfd.zoo.registration.ZooError` (a ``ValueError``) on bad input.

    :param subparsers: the object returned by ``parser.add_subparsers()``
    :return: the ``tune`` parser
    """
    parser = subparsers.add_parser(
        "tune",
        help="Optuna hyperparameter search via rl-zoo3, shareable across machines with --storage",
        description=TUNE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_tune_arguments(parser)
    parser.set_defaults(func=run_tune_command)
    return parser


def run_tune_command(args: argparse.Namespace) -> None:
    """
    Run ``tune`` with the parsed options of :func:`add_tune_arguments` (see :func:`sb3_dqfd.zoo.tune.run_tune`).

    :param args: the parsed options
    """
    try:
        from sb3_dqfd.zoo.tune import run_tune
    except ImportError as error:
        raise ZooError(f"tune needs rl-zoo3 and Optuna: pip install 'sb3-dqfd[zoo]' (missing: {error.name})") from None
    run_tune(args)


def tune_main(argv: Sequence[str] | None = None) -> int:
    """
    Standalone entry of ``tune`` (``python -m sb3_dqfd.zoo tune ...``).

    :param argv: the arguments after ``tune`` (default: ``sys.argv[1:]``)
    :return: the exit status: 0 on success, 2 on bad input (reported as one line, never a traceback)
    """
    parser = argparse.ArgumentParser(
        prog="sb3-dqfd tune", description=TUNE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_tune_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run_tune_command(args)
    except ZooError as error:
        print(f"{parser.prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    return 0
