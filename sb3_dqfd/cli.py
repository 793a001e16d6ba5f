"""The ``sb3-dqfd`` command line: record demonstrations, train, evaluate, compare DQfD with DQN, and the demo."""

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import sys
import zipfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from sb3_contrib import QRDQN, TRPO, RecurrentPPO
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

from sb3_dqfd.common.demonstrations import Demonstrations, load_demonstrations, record_demonstrations, save_demonstrations
from sb3_dqfd.common.experiment import (
    ZOO_DQN_HYPERPARAMS,
    LearningCurve,
    format_table,
    plot_curves,
    save_results,
    summarize,
    train_with_curve,
)
from sb3_dqfd.common.experts import get_expert
from sb3_dqfd.common.hyperparams import load_hyperparameters, shipped_hyperparameters
from sb3_dqfd.dqfd import DQfD
from sb3_dqfd.transformer_a2c import TransformerA2C
from sb3_dqfd.wrappers import PRESETS
from sb3_dqfd.zoo.command import add_tune_subcommand

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "dqfd": DQfD,
    "transformer-a2c": TransformerA2C,
    "a2c": A2C,
    "ppo": PPO,
    "dqn": DQN,
    "sac": SAC,
    "td3": TD3,
    "ddpg": DDPG,
    "qrdqn": QRDQN,
    "trpo": TRPO,
    "recurrent-ppo": RecurrentPPO,
}
TRAINABLE = ("dqfd", "transformer-a2c")


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit status 2."""


def make_env(env_id: str, n_envs: int, seed: int, domain_randomization: str | None = None) -> VecEnv:
    """
    :param env_id: a registered Gymnasium environment id
    :param n_envs: number of environments
    :param seed: seed of the first environment (the others get ``seed + i``)
    :param domain_randomization: name of a preset from :data:`sb3_dqfd.wrappers.PRESETS`
    :return: the vectorized, monitored environment
    """
    if env_id not in gym.registry:
        # rl-zoo3's extra environments (CartPoleNoVel-v1, ...), which its YAML files and ours name; rl-zoo3 is optional
        with contextlib.suppress(ImportError):
            importlib.import_module("rl_zoo3.import_envs")
    wrapper = None
    if domain_randomization is not None:
        if domain_randomization not in PRESETS:
            raise UsageError(f"unknown domain randomization preset {domain_randomization!r} (known: {sorted(PRESETS)})")
        wrapper = PRESETS[domain_randomization]
    return make_vec_env(env_id, n_envs=n_envs, seed=seed, wrapper_class=wrapper)


def algorithm_name(name: str) -> str:
    """
    :param name: an algorithm name as typed: rl-zoo3 spells ``transformer_a2c``, this command line ``transformer-a2c``
    :return: the name in :data:`ALGORITHMS` (both spellings accepted)
    """
    return name.lower().replace("_", "-")


def _policy_modules(algorithm: type[BaseAlgorithm]) -> set[str]:
    """:return: the modules of the policies ``algorithm`` builds from its aliases (MlpPolicy, CnnPolicy, ...)"""
    return {policy.__module__ for policy in algorithm.policy_aliases.values()}


def load_model(path: str, algo: str | None, env: VecEnv | None = None) -> BaseAlgorithm:
    """
    Load a saved SB3 model, checking first that it exists and that ``algo`` saved it.

    The saving algorithm is read from the policy class the zip names (its module, as JSON: nothing is unpickled for
    the check). SB3 itself would load a DQfD zip as DQN and fail later with an ``AttributeError``.

    :param path: the model file, with or without ``.zip`` (as SB3's ``load``)
    :param algo: a name from :data:`ALGORITHMS`, or None to infer it from the zip where only one algorithm fits
    :param env: the environment to attach
    :return: the loaded model
    """
    file = Path(path)
    if not file.is_file() and file.suffix != ".zip" and file.with_name(file.name + ".zip").is_file():
        file = file.with_name(file.name + ".zip")
    if not file.is_file():
        raise UsageError(f"model file {path!r} does not exist")
    try:
        with zipfile.ZipFile(file) as archive:
            module = json.loads(archive.read("data")).get("policy_class", {}).get("__module__")
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError):
        raise UsageError(f"{file} is not a model saved by Stable-Baselines3's save() (no readable 'data' in a zip)") from None
    fitting = sorted(name for name, algorithm in ALGORITHMS.items() if module in _policy_modules(algorithm))
    if algo is None:
        if len(fitting) != 1:
            raise UsageError(f"{file}: give --algo (the algorithm that saved it: {', '.join(fitting) or 'unknown'})")
        algo = fitting[0]
    elif fitting and algo not in fitting:
        raise UsageError(
            f"{file} was saved by {' or '.join(fitting)} (policy from {module}), not {algo}: use --algo {fitting[0]}"
        )
    return ALGORITHMS[algo].load(file, env=env, device="cpu")


def demonstrations_from_arg(spec: str, env_id: str, seed: int) -> Demonstrations:
    """
    :param spec: ``expert:N`` to record N episodes with the built-in expert of ``env_id``, or anything
    :func:`~sb3_dqfd.common.demonstrations.load_demonstrations` takes as a string (a file, a local Minari dataset id)
    :param env_id: the environment the demonstrations are for
    :param seed: seed of the recording
    :return: the demonstrations, validated against the environment
    """
    if spec.startswith("expert:"):
        count = spec.removeprefix("expert:")
        if not count.isdigit() or int(count) < 1:
            raise UsageError(f"--demos {spec!r}: expected expert:N with N a positive whole number of episodes")
        return record_demonstrations(env_id, env_id, n_episodes=int(count), seed=seed)
    return load_demonstrations(spec, env=env_id)


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": th.__version__,
        "processor": platform.processor() or platform.machine(),
        "torch_threads": th.get_num_threads(),
    }


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    """:return: the parsed command line as JSON-ready values (the subcommand's function left out)"""
    return {name: value for name, value in vars(args).items() if name != "func"}


def cmd_record(args: argparse.Namespace) -> None:
    """Record demonstrations from a built-in expert or a saved SB3 model and write them as ``.npz``."""
    gym.spec(args.env)  # an unknown or retired env id first (gymnasium names the current version), not "no expert"
    if args.model is not None:
        expert: Any = load_model(args.model, args.algo)
    else:
        expert = get_expert(args.expert or args.env)
    demos = record_demonstrations(expert, args.env, n_episodes=args.episodes, seed=args.seed, progress_bar=True)
    save_demonstrations(demos, args.output)
    print(demos)
    print(f"Saved to {args.output}")


def _build_model(args: argparse.Namespace, env: VecEnv) -> tuple[BaseAlgorithm, int]:
    """Create the model of ``train`` from the command line and the hyperparameter file; return it and its budget."""
    algorithm_class = ALGORITHMS[args.algo]
    hyperparams: dict[str, Any] = {}
    if args.hyperparams is not None:
        hyperparams = load_hyperparameters(args.hyperparams, args.env, algorithm_class)
    total_timesteps = int(args.timesteps or hyperparams.pop("n_timesteps", 0) or 50_000)
    hyperparams.pop("n_timesteps", None)
    hyperparams.pop("n_envs", None)
    policy = hyperparams.pop("policy", "MlpPolicy")
    if args.algo == "dqfd":
        spec = args.demos or hyperparams.pop("demonstrations", None)
        if spec is None:
            raise UsageError("train dqfd needs --demos (a file or expert:N), or a demonstrations path in --hyperparams")
        hyperparams["demonstrations"] = demonstrations_from_arg(str(spec), args.env, args.seed)
        if args.pretrain_steps is not None:
            hyperparams["pretrain_steps"] = args.pretrain_steps
    elif args.pretrain_steps is not None:
        raise UsageError(f"--pretrain-steps is a DQfD option; {args.algo} does not pre-train")
    if args.tensorboard_log is not None and importlib.util.find_spec("tensorboard") is None:
        raise UsageError("--tensorboard-log needs TensorBoard: pip install tensorboard (or sb3-dqfd[all])")
    model = algorithm_class(policy, env, seed=args.seed, tensorboard_log=args.tensorboard_log, verbose=0, **hyperparams)
    return model, total_timesteps


def cmd_train(args: argparse.Namespace) -> None:
    """Train DQfD or TransformerA2C with periodic evaluation; save the model, a learning-curve PNG and a JSON."""
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    env = make_env(args.env, args.n_envs, args.seed)
    model, total_timesteps = _build_model(args, env)
    eval_env = make_env(args.env, 1, args.seed + 10_000)
    curve = train_with_curve(
        model, args.algo, args.seed, total_timesteps, eval_env, args.eval_freq, args.eval_episodes, args.progress_bar
    )
    model_path = output / f"{args.algo}_{args.env}"
    model.save(model_path)
    threshold = gym.spec(args.env).reward_threshold
    plot_curves([curve], output / "learning_curve.png", f"{args.algo} on {args.env}", threshold)
    save_results(output / "results.json", [curve], {"command": sys.argv, "args": _arguments(args), "machine": _machine()})
    print(format_table(summarize([curve], threshold), threshold))
    print(f"Model: {model_path}.zip  curve: {output / 'learning_curve.png'}  results: {output / 'results.json'}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Evaluate a saved model, optionally under domain randomization."""
    env = make_env(args.env, 1, args.seed, args.domain_randomization)
    model = load_model(args.model, args.algo, env)
    returns, lengths = evaluate_policy(
        model, env, n_eval_episodes=args.episodes, deterministic=not args.stochastic, return_episode_rewards=True
    )
    result = {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "mean_length": float(np.mean(lengths)),
        "episodes": args.episodes,
    }
    print(
        f"{args.algo} on {args.env}: return {result['mean_return']:.2f} ± {result['std_return']:.2f} "
        f"over {args.episodes} episodes, mean length {result['mean_length']:.1f}"
    )
    if args.json is not None:
        Path(args.json).write_text(json.dumps(result, indent=2))


def compare(
    env_id: str,
    demos_spec: str,
    timesteps: int,
    seeds: Sequence[int],
    eval_freq: int,
    eval_episodes: int,
    output_dir: str | Path,
    progress_bar: bool = False,
    dqfd_kwargs: dict[str, Any] | None = None,
) -> list[LearningCurve]:
    """
    DQfD vs rl-zoo3's tuned DQN vs DQfD's pre-training alone, side by side on one environment over several seeds.

    DQfD uses the package's hyperparameters for ``env_id`` (:func:`~sb3_dqfd.shipped_hyperparameters`), as DQN uses
    rl-zoo3's.

    :param env_id: the environment id
    :param demos_spec: the demonstrations, as ``--demos`` takes them
    :param timesteps: environment steps per run
    :param seeds: one run of each method per seed
    :param eval_freq: evaluate every this many environment steps
    :param eval_episodes: episodes per evaluation
    :param output_dir: where the table (Markdown), the plot and the JSON go
    :param progress_bar: show progress bars
    :param dqfd_kwargs: DQfD arguments on top of the shipped ones for ``env_id`` (e.g. ``pretrain_steps``)
    :return: the learning curves
    """
    if env_id not in ZOO_DQN_HYPERPARAMS:
        raise UsageError(f"compare has tuned DQN settings for {sorted(ZOO_DQN_HYPERPARAMS)}, not {env_id!r}")
    dqfd_kwargs = {**shipped_hyperparameters(DQfD, env_id), **(dqfd_kwargs or {})}
    curves = []
    for seed in seeds:
        eval_env = make_env(env_id, 1, seed + 10_000)
        demos = demonstrations_from_arg(demos_spec, env_id, seed)
        dqfd = DQfD("MlpPolicy", make_env(env_id, 1, seed), demonstrations=demos, seed=seed, **dqfd_kwargs)
        dqfd_curve = train_with_curve(dqfd, "DQfD", seed, timesteps, eval_env, eval_freq, eval_episodes, progress_bar,
                                      before_learning=partial(dqfd.pretrain, dqfd.pretrain_steps))  # fmt: skip
        curves.append(_teacher(demos, seed, timesteps))
        curves.append(_pretraining_only(dqfd_curve, timesteps, dqfd.pretrain_steps))
        curves.append(dqfd_curve)
        dqn = DQN("MlpPolicy", make_env(env_id, 1, seed), seed=seed, **ZOO_DQN_HYPERPARAMS[env_id])
        label = "DQN (rl-zoo3)"
        curves.append(train_with_curve(dqn, label, seed, timesteps, eval_env, eval_freq, eval_episodes, progress_bar))
    stem = Path(output_dir) / f"compare_{env_id}"
    threshold = gym.spec(env_id).reward_threshold
    table = format_table(summarize(curves, threshold), threshold)
    plot_curves(curves, f"{stem}.png", f"DQfD vs DQN on {env_id} ({demos_spec})", threshold)
    Path(f"{stem}.md").write_text(table + "\n")
    metadata = {"command": sys.argv, "env": env_id, "demos": demos_spec, "seeds": list(seeds), "machine": _machine()}
    save_results(f"{stem}.json", curves, metadata)
    print(table)
    print(f"Table: {stem}.md  plot: {stem}.png  results: {stem}.json")
    return curves


def _teacher(demos: Demonstrations, seed: int, timesteps: int) -> LearningCurve:
    """
    The teacher's level: the mean return of the demonstrations, drawn flat over the budget.

    :param demos: the demonstrations the run learned from
    :param seed: the run's seed
    :param timesteps: the budget of the other methods
    :return: the teacher's curve
    """
    returns = demos.episode_returns
    return LearningCurve(
        label=f"teacher ({len(demos)} demonstrations)",
        seed=seed,
        timesteps=[0, timesteps],
        mean_returns=[float(returns.mean())] * 2,
        std_returns=[float(returns.std())] * 2,
    )


def _pretraining_only(dqfd_curve: LearningCurve, timesteps: int, pretrain_steps: int) -> LearningCurve:
    """
    The "pre-training only" baseline: DQfD's evaluation right after pre-training, before any interaction, drawn flat
    over the budget (it does not change with environment steps).

    :param dqfd_curve: the DQfD run, whose first evaluation follows pre-training
    :param timesteps: the budget of the other methods
    :param pretrain_steps: the number of pre-training updates, for the label
    :return: the baseline's curve
    """
    return LearningCurve(
        label=f"DQfD pre-training only ({pretrain_steps:,} updates)",
        seed=dqfd_curve.seed,
        timesteps=[0, timesteps],
        mean_returns=[dqfd_curve.mean_returns[0]] * 2,
        std_returns=[dqfd_curve.std_returns[0]] * 2,
    )


def _dqfd_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """:return: the DQfD arguments given on the command line of ``compare`` or ``demo``"""
    return {} if args.pretrain_steps is None else {"pretrain_steps": args.pretrain_steps}


def cmd_compare(args: argparse.Namespace) -> None:
    """Run :func:`compare` from the command line."""
    compare(args.env, args.demos, args.timesteps, args.seeds, args.eval_freq, args.eval_episodes, args.output_dir,
            args.progress_bar, _dqfd_overrides(args))  # fmt: skip


def cmd_demo(args: argparse.Namespace) -> None:
    """
    The ``make demo`` job: DQfD vs DQN on LunarLander-v3 from 20 episodes of gymnasium's heuristic lander.

    LunarLander shows within a few minutes what demonstrations buy: DQfD lands from its first evaluation on, where
    rl-zoo3's tuned DQN needs ~90k steps. (MountainCar, where DQfD beats its teacher, takes 20k-30k steps: see README.)
    """
    compare("LunarLander-v3", "expert:20", args.timesteps, args.seeds, args.eval_freq, 10, args.output_dir,
            args.progress_bar, _dqfd_overrides(args))  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """:return: the parser of the ``sb3-dqfd`` command line"""
    parser = argparse.ArgumentParser(prog="sb3-dqfd", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    record = commands.add_parser("record", help="record demonstrations to .npz")
    record.add_argument("--env", required=True, help="environment id, e.g. CartPole-v1")
    record.add_argument("--expert", help="built-in expert name (default: the env id)")
    record.add_argument("--model", help="a saved SB3 model (.zip) to use as the expert instead")
    record.add_argument(
        "--algo", type=algorithm_name, choices=sorted(ALGORITHMS), help="algorithm that saved --model (default: read from it)"
    )
    record.add_argument("--episodes", type=int, default=10)
    record.add_argument("--seed", type=int, default=0)
    record.add_argument("--output", required=True, help="the .npz file to write")
    record.set_defaults(func=cmd_record)

    train = commands.add_parser("train", help="train DQfD or TransformerA2C with periodic evaluation")
    train.add_argument("algo", type=algorithm_name, choices=TRAINABLE)
    train.add_argument("--env", required=True)
    train.add_argument("--demos", help="demonstrations: a file or expert:N (DQfD)")
    train.add_argument("--hyperparams", help="rl-zoo3 style YAML file {env_id: {name: value}}")
    train.add_argument("--pretrain-steps", type=int, help="DQfD pre-training updates (default: the YAML's, else DQfD's)")
    train.add_argument("--timesteps", type=int, help="environment steps (default: n_timesteps of the YAML, else 50k)")
    train.add_argument("--n-envs", type=int, default=1)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--tensorboard-log", help="TensorBoard log directory")
    train.add_argument("--eval-freq", type=int, default=5_000, help="evaluate every this many environment steps")
    train.add_argument("--eval-episodes", type=int, default=10)
    train.add_argument("--progress-bar", action="store_true")
    train.add_argument("--output-dir", default="runs/train")
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a saved model")
    evaluate.add_argument("model", help="the saved model (.zip)")
    evaluate.add_argument(
        "--algo",
        type=algorithm_name,
        choices=sorted(ALGORITHMS),
        help="algorithm that saved the model (default: read from it)",
    )
    evaluate.add_argument("--env", required=True)
    evaluate.add_argument("--episodes", type=int, default=20)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--domain-randomization", help=f"evaluate under a preset: {', '.join(sorted(PRESETS))}")
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of the greedy policy")
    evaluate.add_argument("--json", help="also write the result to this JSON file")
    evaluate.set_defaults(func=cmd_evaluate)

    comparison = commands.add_parser("compare", help="DQfD vs tuned DQN vs pre-training only, over seeds")
    comparison.add_argument("--env", default="MountainCar-v0", choices=sorted(ZOO_DQN_HYPERPARAMS))
    comparison.add_argument("--demos", default="expert:10", help="a file or expert:N")
    comparison.add_argument("--timesteps", type=int, default=30_000)
    comparison.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    comparison.add_argument("--eval-freq", type=int, default=2_500)
    comparison.add_argument("--eval-episodes", type=int, default=10)
    comparison.add_argument("--pretrain-steps", type=int, help="DQfD pre-training updates (default: DQfD's)")
    comparison.add_argument("--progress-bar", action="store_true")
    comparison.add_argument("--output-dir", default="runs/compare")
    comparison.set_defaults(func=cmd_compare)

    demo = commands.add_parser("demo", help="the make demo job: compare on LunarLander-v3 with 20 expert episodes")
    # A budget that finishes within 5 minutes on 2 cores; the benchmarks use the full budgets
    demo.add_argument("--timesteps", type=int, default=6_000)
    demo.add_argument("--seeds", type=int, nargs="+", default=[0])
    demo.add_argument("--eval-freq", type=int, default=1_500)
    demo.add_argument("--pretrain-steps", type=int, default=1_500, help="DQfD pre-training updates")
    demo.add_argument("--progress-bar", action="store_true")
    demo.add_argument("--output-dir", default="demo_output")
    demo.set_defaults(func=cmd_demo)

    add_tune_subcommand(commands)  # Optuna search through rl-zoo3 (the zoo extra), see sb3_dqfd/zoo/
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """
    Entry point of ``sb3-dqfd`` and ``python -m sb3_dqfd``.

    :param argv: the arguments (default: ``sys.argv[1:]``)
    :return: the exit status: 0 on success, 2 for bad usage (reported as one line, never a traceback; set the
        environment variable ``SB3_DQFD_DEBUG=1`` to see the traceback instead)
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (UsageError, ValueError, TypeError, FileNotFoundError, gym.error.Error) as error:
        if os.environ.get("SB3_DQFD_DEBUG"):
            raise  # the full traceback, for bug reports

        message = " ".join(str(error).split())
        parser.exit(2, f"{parser.prog}: error: {message}\n")
    return 0
