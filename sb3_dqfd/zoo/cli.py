"""
rl-zoo3's command line with ``dqfd`` and ``transformer_a2c`` registered: ``python -m sb3_dqfd.zoo <script> ...``.

Scripts: ``train``, ``enjoy``, ``plot_train``, ``plot_from_file``, ``all_plots`` (rl-zoo3's, unchanged) and ``tune``
(ours, see :mod:`sb3_dqfd.zoo.tune`). For ``train``, our algorithms read our shipped hyperparameter files unless
``--conf-file`` is given, and the file's entry is checked (unknown keys named, demonstration paths) before rl-zoo3
starts, so a typo costs one line instead of a traceback after the environments are built.
"""

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from sb3_dqfd.zoo.command import tune_main
from sb3_dqfd.zoo.registration import (
    ZOO_NAMES,
    ZooError,
    algorithm_class,
    check_action_space,
    check_callbacks,
    check_env_id,
    default_config,
    entry_env_kwargs,
    known_keys,
    read_zoo_entry,
    register_algorithms,
)

SCRIPTS = ("train", "enjoy", "plot_train", "plot_from_file", "all_plots", "tune")


def check_train_arguments(argv: Sequence[str]) -> list[str]:
    """
    Check the algorithm, environment and hyperparameter file of an rl-zoo3 ``train`` command line.

    :param argv: the arguments of ``train``
    :return: the arguments to hand to rl-zoo3, with ``--conf-file`` added for our algorithms when missing
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("-conf", "--conf-file")
    parser.add_argument("--gym-packages", nargs="+", default=[])
    parser.add_argument("-params", "--hyperparams", nargs="+", default=[])
    parser.add_argument("--env-kwargs", nargs="+")
    args, _ = parser.parse_known_args(argv)
    for module in args.gym_packages:
        importlib.import_module(module)
    algorithm = algorithm_class(args.algo)
    check_env_id(args.env)
    argv = list(argv)
    # The env's actions first, so that sacfd on CartPole says "use dqfd" rather than "no entry for CartPole-v1" in
    # our file; a file of the user's may make the env with env_kwargs that change its actions: read it first.
    # rl-zoo3's --env-kwargs (values it evaluates as Python) are left to it: no check then
    user_file = args.conf_file is not None and args.conf_file.endswith((".yml", ".yaml"))
    entry = read_zoo_entry(args.conf_file, args.env, algorithm) if user_file else {}
    if args.env_kwargs is None:
        check_action_space(args.algo, args.env, entry_env_kwargs(entry, f"{args.conf_file} [{args.env}]"))
    if args.conf_file is None and args.algo in ZOO_NAMES:
        args.conf_file = str(default_config(args.algo))
        argv += ["--conf-file", args.conf_file]
        read_zoo_entry(args.conf_file, args.env, algorithm)
    unknown = sorted({item.partition(":")[0] for item in args.hyperparams} - known_keys(algorithm))
    if unknown:
        raise ZooError(f"-params: unknown hyperparameters for {algorithm.__name__}: {', '.join(unknown)}")
    callbacks = [value for key, _, value in (item.partition(":") for item in args.hyperparams) if key == "callback"]
    check_callbacks(callbacks, algorithm, "-params")
    return argv


def _rl_zoo3_script(name: str) -> Callable[[], None]:
    """:return: rl-zoo3's function for the script ``name`` (it parses ``sys.argv``)"""
    if name == "train":
        from rl_zoo3.train import train

        return train
    if name == "enjoy":
        from rl_zoo3.enjoy import enjoy

        return enjoy
    from rl_zoo3 import plots

    return getattr(plots, name)


def main(argv: Sequence[str] | None = None) -> int:
    """
    :param argv: ``<script> <arguments...>`` (default: ``sys.argv[1:]``)
    :return: the exit status: 0 on success, 2 on bad input (one line on stderr)
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "python -m sb3_dqfd.zoo"
    if argv[:1] in (["-h"], ["--help"]):
        print(f"usage: {prog} {{{','.join(SCRIPTS)}}} [arguments]\n{__doc__}\nEach script's options: {prog} <script> --help")
        return 0
    if not argv or argv[0] not in SCRIPTS:
        given = repr(argv[0]) if argv else "nothing"
        print(f"{prog}: error: expected a script ({', '.join(SCRIPTS)}), got {given}", file=sys.stderr)
        return 2
    script, rest = argv[0], argv[1:]
    if script == "tune":
        return tune_main(rest)
    try:
        register_algorithms()
        if script == "train":
            rest = check_train_arguments(rest)
    except ZooError as error:
        print(f"{prog} {script}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    # rl-zoo3's scripts parse sys.argv themselves
    sys.argv = [f"{prog} {script}", *rest]
    _rl_zoo3_script(script)()
    return 0
