"""The ``sb3-dqfd`` command line: record demonstrations, train, evaluate, compare DQfD with DQN, and the demo."""

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import platform
import shutil
import signal
import sys
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO, cast

import gymnasium as gym
import numpy as np
import torch as th
import yaml
from gymnasium import spaces
from sb3_contrib import QRDQN, TRPO, RecurrentPPO
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecNormalize, VecTransposeImage

from sb3_dqfd.common.demonstrations import Demonstrations, load_demonstrations, record_demonstrations, save_demonstrations
from sb3_dqfd.common.experiment import (
    EXIT_CTRL_C,
    LATEST_CHECKPOINT,
    RETURN_FLOORS,
    ZOO_DQN_HYPERPARAMS,
    LearningCurve,
    format_table,
    load_checkpoint,
    plot_curves,
    save_results,
    summarize,
    train_with_curve,
)
from sb3_dqfd.common.experts import (
    VECNORMALIZE_FILE,
    NormalizedExpert,
    find_vecnormalize_statistics,
    get_expert,
    load_vecnormalize_statistics,
)
from sb3_dqfd.common.from_demonstrations import FromDemonstrations
from sb3_dqfd.common.hyperparams import load_hyperparameters, shipped_hyperparameters, zoo_hyperparameters
from sb3_dqfd.dqfd import DQfD
from sb3_dqfd.sacfd import SACfD
from sb3_dqfd.td3fd import TD3fD
from sb3_dqfd.transformer_a2c import TransformerA2C
from sb3_dqfd.transformer_ppo import TransformerPPO
from sb3_dqfd.wrappers import PRESETS
from sb3_dqfd.zoo.command import add_tune_subcommand
from sb3_dqfd.zoo.registration import ZOO_KEYS

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "dqfd": DQfD,
    "sacfd": SACfD,
    "td3fd": TD3fD,
    "transformer-a2c": TransformerA2C,
    "transformer-ppo": TransformerPPO,
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
TRAINABLE = ("dqfd", "sacfd", "td3fd", "transformer-a2c", "transformer-ppo")
#: The algorithms of ``train`` that learn from demonstrations (``--demos``, ``--pretrain-steps``)
FROM_DEMONSTRATIONS = ("dqfd", "sacfd", "td3fd")
PROG = "sb3-dqfd"
#: The exit status of a command stopped by Ctrl-C (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = EXIT_CTRL_C
#: The keys of rl-zoo3's entries (:data:`~sb3_dqfd.zoo.registration.ZOO_KEYS`) that ``train`` honours, as rl-zoo3's
#: ``ExperimentManager`` does; it refuses the others (callbacks, VecEnv wrappers, action noise), naming them
ENV_KEYS = ("env_kwargs", "env_wrapper", "frame_stack", "monitor_kwargs", "normalize")
#: ``train --checkpoint``: the folder in ``--output-dir`` of the run's checkpoint, and the file there that records the
#: options a ``--resume`` must repeat (those that build the model and its environments)
CHECKPOINT_FOLDER, CHECKPOINT_OPTIONS = "checkpoint", "options.json"
RESUME_OPTIONS = ("algo", "env", "demos", "hyperparams", "pretrain_steps", "n_envs", "seed")


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit status 2."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, with its usage errors on one line as the commands' own errors (argparse prints its usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see {self.prog} --help)\n")


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type of counts and budgets: a whole number >= 1 (argparse names the option in the error)."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type of seeds and numbers of pre-training updates: a whole number >= 0."""
    return _whole_number(text, 0)


@dataclass
class EnvSettings:
    """
    How ``train`` builds its environments from the rl-zoo3 keys of a ``--hyperparams`` entry, in the order of rl-zoo3's
    ``ExperimentManager.create_envs``: ``env_wrapper`` on each environment, then ``VecNormalize``, then ``VecFrameStack``.

    :param env_kwargs: keyword arguments of ``gymnasium.make``
    :param wrapper_class: wraps each environment (rl-zoo3's ``env_wrapper``)
    :param monitor_kwargs: keyword arguments of SB3's ``Monitor``
    :param normalize_kwargs: the arguments of ``VecNormalize`` (None: no normalization)
    :param frame_stack: stack this many observations with ``VecFrameStack`` (None: no stacking)
    """

    env_kwargs: dict[str, Any] | None = None
    wrapper_class: Callable[[gym.Env], gym.Env] | None = None
    monitor_kwargs: dict[str, Any] | None = None
    normalize_kwargs: dict[str, Any] | None = None
    frame_stack: int | None = None


def _check_video_support() -> None:
    """Refuse ``--video`` before any work when MP4s cannot be written (gymnasium's ``RecordVideo`` needs MoviePy)."""
    if importlib.util.find_spec("moviepy") is None:
        raise UsageError('--video writes MP4 files with MoviePy: pip install "sb3-dqfd[video]" (or moviepy)')


def with_video(settings: EnvSettings, video_folder: str, n_episodes: int) -> EnvSettings:
    """
    :param settings: how to build the environments
    :param video_folder: where gymnasium's ``RecordVideo`` writes one MP4 per episode (``rl-video-episode-<i>.mp4``)
    :param n_episodes: record the first ``n_episodes`` episodes of each environment (not the one a VecEnv starts by
        itself after the last)
    :return: the same settings, each environment rendering ``rgb_array`` frames and recording every episode, after its
        own wrapper (what a person sees is the env, not what the agent gets after ``VecNormalize``/``VecFrameStack``)
    """
    inner = settings.wrapper_class

    def record(env: gym.Env) -> gym.Env:
        return gym.wrappers.RecordVideo(
            inner(env) if inner is not None else env, video_folder, episode_trigger=lambda episode: episode < n_episodes
        )

    env_kwargs = {**(settings.env_kwargs or {}), "render_mode": "rgb_array"}
    return dataclasses.replace(settings, env_kwargs=env_kwargs, wrapper_class=record)


def _register_zoo_envs(env_id: str) -> None:
    """Register rl-zoo3's extra environments (CartPoleNoVel-v1, ...) when ``env_id`` is not known and rl-zoo3 is installed."""
    if env_id not in gym.registry:
        # Its YAML files and ours name them; rl-zoo3 is optional
        with contextlib.suppress(ImportError):
            importlib.import_module("rl_zoo3.import_envs")


def make_env(
    env_id: str, n_envs: int, seed: int, domain_randomization: str | None = None, settings: EnvSettings | None = None
) -> VecEnv:
    """
    :param env_id: a registered Gymnasium environment id
    :param n_envs: number of environments
    :param seed: seed of the first environment (the others get ``seed + i``)
    :param domain_randomization: name of a preset from :data:`sb3_dqfd.wrappers.PRESETS`
    :param settings: the keyword arguments and wrapper of each environment (its ``VecEnv`` wrappers are left to
        :func:`make_train_envs`); with ``domain_randomization`` its wrapper goes outside the preset's
    :return: the vectorized, monitored environment
    """
    _register_zoo_envs(env_id)
    settings = settings or EnvSettings()
    wrapper = settings.wrapper_class
    if domain_randomization is not None:
        if domain_randomization not in PRESETS:
            raise UsageError(f"unknown domain randomization preset {domain_randomization!r} (known: {sorted(PRESETS)})")
        wrapper = _chained(PRESETS[domain_randomization], settings.wrapper_class)
    return make_vec_env(
        env_id,
        n_envs=n_envs,
        seed=seed,
        wrapper_class=wrapper,
        env_kwargs=settings.env_kwargs,
        monitor_kwargs=settings.monitor_kwargs,
    )


def _chained(inner: Callable[[gym.Env], gym.Env], outer: Callable[[gym.Env], gym.Env] | None) -> Callable[[gym.Env], gym.Env]:
    """:return: a wrapper that applies ``inner``, then ``outer`` (if any)"""
    if outer is None:
        return inner
    return lambda env: outer(inner(env))


def make_train_envs(env_id: str, n_envs: int, seed: int, settings: EnvSettings) -> tuple[VecEnv, VecEnv]:
    """
    :param env_id: a registered Gymnasium environment id
    :param n_envs: number of training environments
    :param seed: seed of the first training environment (evaluation: ``seed + 10_000``)
    :param settings: how to build them
    :return: the training environments and the evaluation environment, built alike. With ``VecNormalize``, the
        evaluation environment reads the training statistics (the same object, which training updates in place) and
        neither updates them nor scales rewards: the curve's callback, unlike SB3's ``EvalCallback``, syncs no copy
    """
    env = make_env(env_id, n_envs, seed, settings=settings)
    eval_env = make_env(env_id, 1, seed + 10_000, settings=settings)
    if settings.normalize_kwargs is not None:
        env = VecNormalize(env, **settings.normalize_kwargs)
        eval_env = VecNormalize(eval_env, **{**settings.normalize_kwargs, "training": False, "norm_reward": False})
        eval_env.obs_rms = env.obs_rms
    if settings.frame_stack is not None:
        env, eval_env = VecFrameStack(env, settings.frame_stack), VecFrameStack(eval_env, settings.frame_stack)
    return env, eval_env


def algorithm_name(name: str) -> str:
    """
    :param name: an algorithm name as typed: rl-zoo3 spells ``transformer_a2c``, this command line ``transformer-a2c``
    :return: the name in :data:`ALGORITHMS` (both spellings accepted)
    """
    return name.lower().replace("_", "-")


def _policy_modules(algorithm: type[BaseAlgorithm]) -> set[str]:
    """:return: the modules of the policies ``algorithm`` builds from its aliases (MlpPolicy, CnnPolicy, ...)"""
    return {policy.__module__ for policy in algorithm.policy_aliases.values()}


def load_model(path: str, algo: str | None, env: VecEnv | None = None) -> tuple[BaseAlgorithm, str]:
    """
    Load a saved SB3 model, checking first that it exists and that ``algo`` saved it.

    The saving algorithm is read from the policy class the zip names (its module, as JSON: nothing is unpickled for
    the check). SB3 itself would load a DQfD zip as DQN and fail later with an ``AttributeError``.

    :param path: the model file, with or without ``.zip`` (as SB3's ``load``)
    :param algo: a name from :data:`ALGORITHMS`, or None to infer it from the zip where only one algorithm fits
    :param env: the environment to attach
    :return: the loaded model and the name of its algorithm in :data:`ALGORITHMS` (``algo``, or the one inferred)
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
    return ALGORITHMS[algo].load(file, env=env, device="cpu"), algo


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


def _describe(space: spaces.Space) -> str:
    """:return: ``space`` in a few characters: a Box by its shape and dtype, not its bounds"""
    return f"Box{space.shape} {space.dtype}" if isinstance(space, spaces.Box) else str(space)


def _as_sb3_models_read(space: spaces.Space) -> spaces.Space:
    """
    :return: ``space`` as an SB3 model trained in it reads it: channel-last images channel-first (SB3 wraps their env
        in ``VecTransposeImage``, and ``predict`` transposes the observations it is given)
    """
    if isinstance(space, spaces.Box) and is_image_space(space) and not is_image_space_channels_first(space):
        return VecTransposeImage.transpose_space(space)
    return space


def _check_fits(
    expert: str, observation_space: spaces.Space, action_space: spaces.Space, env: gym.Env | VecEnv, env_name: str
) -> None:
    """
    Refuse an expert whose spaces are not those of the env it records in, before recording: the recorder would only
    fail at the first action the environment rejects, or record nonsense from observations of the wrong meaning.

    :param expert: the expert, as the error names it
    :param observation_space: the observations the expert reads
    :param action_space: the actions it takes
    :param env: the environment to record in
    :param env_name: its name, for the error
    """
    env_observations = env.observation_space
    fits = observation_space in (env_observations, _as_sb3_models_read(env_observations))
    if not fits or action_space != env.action_space:
        raise UsageError(
            f"{expert} does not fit {env_name}: it reads observations {_describe(observation_space)} and takes actions "
            f"{_describe(action_space)}, {env_name} has {_describe(env_observations)} and {_describe(env.action_space)}"
        )


def _recording_expert(args: argparse.Namespace, env: gym.Env | VecEnv, env_name: str) -> Any:
    """:return: the expert of ``record`` (a saved model or a built-in expert), checked against the env it records in"""
    if args.model is not None:
        model, algo = load_model(args.model, args.algo)
        _check_fits(f"the model {args.model} ({algo})", model.observation_space, model.action_space, env, env_name)
        statistics = find_vecnormalize_statistics(args.model)
        if statistics is None:
            return model
        # Trained under VecNormalize: it plays the raw observations scaled as in training; the demonstrations keep them raw
        print(f"Observations scaled for the model with {statistics} (recorded unscaled)")
        return NormalizedExpert(model, load_vecnormalize_statistics(statistics))
    expert_id = args.expert or args.env
    expert = get_expert(expert_id)
    # Built-in experts are functions: the environment they were written for tells what they read and take
    with contextlib.closing(gym.make(expert_id)) as expert_env:
        name = f"the built-in expert of {expert_id}"
        _check_fits(name, expert_env.observation_space, expert_env.action_space, env, env_name)
    return expert


def _recording_settings(path: str, env_id: str) -> EnvSettings:
    """
    :param path: the ``--hyperparams`` file
    :param env_id: the environment whose entry to read
    :return: how ``train <algo> --hyperparams path`` builds its environments (the entry's other keys are ignored)
    """
    where = f"{path} [{env_id}]"
    # Read as train reads it for the algorithm the entry is for (demonstrations are for dqfd, sacfd, td3fd): keys that
    # none of them knows are refused, with DQfD's message
    errors = []
    for algo in FROM_DEMONSTRATIONS:
        try:
            hyperparams = load_hyperparameters(path, env_id, ALGORITHMS[algo], extra_keys=ZOO_KEYS)
            break
        except ValueError as error:
            errors.append(error)
    else:
        raise errors[0]
    zoo_command = f"python -m sb3_dqfd.zoo train --algo {algo} --env {env_id} --conf-file {path}"
    # The keys that build the env; as in train, _env_settings refuses vec_env_wrapper
    env_keys = {*ENV_KEYS, "vec_env_wrapper"}
    settings = _env_settings({key: value for key, value in hyperparams.items() if key in env_keys}, where, zoo_command)
    if settings.normalize_kwargs is not None:
        raise UsageError(
            f"{where}: normalize: record refuses VecNormalize, whose running statistics would make the stored "
            "observations drift; record with a copy of the entry without normalize (DQfD stores demonstrations "
            "un-normalized, and VecNormalize normalizes them when they are sampled)"
        )
    return settings


def _recording_env(args: argparse.Namespace) -> tuple[gym.Env | VecEnv, str]:
    """
    :return: the environment ``record`` steps and its name for messages. With one env and no ``--hyperparams``,
        ``gym.make(--env)`` (episode ``i`` reset with ``seed + i``); otherwise the training VecEnv ``train`` builds
        from the same entry and ``--n-envs`` (seeded once: env ``i`` with ``seed + i``)
    """
    if args.video is not None and args.n_envs != 1:
        raise UsageError("--video records one environment: use --n-envs 1")
    if args.hyperparams is None and args.n_envs == 1:
        if args.video is None:
            return gym.make(args.env), args.env
        return gym.wrappers.RecordVideo(
            gym.make(args.env, render_mode="rgb_array"), args.video, episode_trigger=lambda episode: True
        ), args.env
    settings = EnvSettings() if args.hyperparams is None else _recording_settings(args.hyperparams, args.env)
    if args.video is not None:
        settings = with_video(settings, args.video, args.episodes)
    env, eval_env = make_train_envs(args.env, args.n_envs, args.seed, settings)
    eval_env.close()  # train's evaluation env, built alongside
    return env, args.env if args.hyperparams is None else f"{args.env} built from {args.hyperparams}"


def cmd_record(args: argparse.Namespace) -> None:
    """Record demonstrations from a built-in expert or a saved SB3 model and write them as ``.npz``."""
    _register_zoo_envs(args.env)
    gym.spec(args.env)  # an unknown or retired env id first (gymnasium names the current version), not "no expert"
    if args.video is not None:
        _check_video_support()
    env, env_name = _recording_env(args)
    with contextlib.closing(env):
        expert = _recording_expert(args, env, env_name)
        demos = record_demonstrations(expert, env, n_episodes=args.episodes, seed=args.seed, progress_bar=True)
    save_demonstrations(demos, args.output)
    print(demos)
    print(f"Saved to {args.output}")


def _check_train_options(args: argparse.Namespace) -> None:
    """Refuse the options of ``train`` that do not apply, before any work."""
    if args.algo not in FROM_DEMONSTRATIONS and args.demos is not None:
        raise UsageError(f"--demos is an option of dqfd, sacfd and td3fd; {args.algo} does not learn from demonstrations")
    if args.algo not in FROM_DEMONSTRATIONS and args.pretrain_steps is not None:
        raise UsageError(f"--pretrain-steps is an option of dqfd, sacfd and td3fd; {args.algo} does not pre-train")
    if args.tensorboard_log is not None and importlib.util.find_spec("tensorboard") is None:
        raise UsageError("--tensorboard-log needs TensorBoard: pip install tensorboard (or sb3-dqfd[all])")


def _entry_count(value: Any, key: str, where: str) -> int:
    """
    :return: ``value`` of ``key`` in a YAML entry as a whole number >= 1 (rl-zoo3's files write budgets as floats,
        ``!!float 1e5``: a whole float counts)
    """
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < 1:
        raise UsageError(f"{where}: {key} must be a whole number >= 1, got {value!r}")
    return int(value)


def _entry_mapping(value: Any, key: str, where: str) -> dict[str, Any] | None:
    """:return: ``value`` of ``key`` in a YAML entry, None or a mapping (``"dict(...)"`` strings are parsed already)"""
    if value is not None and not isinstance(value, dict):
        raise UsageError(f"{where}: {key} must be a mapping, got {value!r}")
    return value


def _zoo_import(key: str, value: Any, where: str) -> Any:
    """
    Import what ``key`` of a YAML entry names, with rl-zoo3's own functions, as its training does.

    :return: the ``policy`` class, or the function that wraps an environment in the ``env_wrapper`` class(es) (a name,
        a list of names, ``{name: kwargs}``)
    """
    try:
        from rl_zoo3.utils import get_class_by_name, get_wrapper_class
    except ImportError:
        raise UsageError(f"{where}: {key} needs rl-zoo3: pip install 'sb3-dqfd[zoo]'") from None
    try:
        return get_wrapper_class({key: value}) if key == "env_wrapper" else get_class_by_name(value)
    except (ImportError, AttributeError, ValueError, AssertionError) as error:
        raise UsageError(f"{where}: {key}: cannot import {value!r} ({error})") from None


def _normalize_kwargs(hyperparams: dict[str, Any], where: str) -> dict[str, Any] | None:
    """:return: the ``VecNormalize`` arguments of rl-zoo3's ``normalize`` key, None when it is absent or false"""
    normalize = hyperparams.pop("normalize", False)
    if normalize is False:
        return None
    if normalize is not True and not isinstance(normalize, dict):
        raise UsageError(f"{where}: normalize must be true, false or a mapping of VecNormalize arguments, got {normalize!r}")
    kwargs = {} if normalize is True else dict(normalize)
    if "gamma" in hyperparams:
        kwargs["gamma"] = hyperparams["gamma"]  # as rl-zoo3: rewards are scaled by the returns the algorithm discounts
    return kwargs


def _env_settings(hyperparams: dict[str, Any], where: str, zoo_command: str) -> EnvSettings:
    """
    Take the rl-zoo3 environment keys out of a YAML entry, read as rl-zoo3's ``ExperimentManager`` reads them.

    :param hyperparams: the entry; the keys are removed from it
    :param where: the file and entry, for error messages
    :param zoo_command: the rl-zoo3 command line that runs the keys ``train`` refuses
    :return: the settings
    """
    refused = sorted(set(hyperparams) & (set(ZOO_KEYS) - set(ENV_KEYS)))
    if refused:
        raise UsageError(
            f"{where}: rl-zoo3 keys that sb3-dqfd train does not support: {refused} (rl-zoo3 runs them: {zoo_command})"
        )
    frame_stack = hyperparams.pop("frame_stack", None)
    wrapper = hyperparams.pop("env_wrapper", None)
    return EnvSettings(
        env_kwargs=_entry_mapping(hyperparams.pop("env_kwargs", None), "env_kwargs", where),
        wrapper_class=None if wrapper is None else _zoo_import("env_wrapper", wrapper, where),
        monitor_kwargs=_entry_mapping(hyperparams.pop("monitor_kwargs", None), "monitor_kwargs", where),
        normalize_kwargs=_normalize_kwargs(hyperparams, where),
        frame_stack=None if frame_stack is None else _entry_count(frame_stack, "frame_stack", where),
    )


def _build_model(args: argparse.Namespace, env: VecEnv, hyperparams: dict[str, Any], where: str) -> BaseAlgorithm:
    """Create the model of ``train`` from the command line and the constructor arguments of the YAML entry."""
    policy = hyperparams.pop("policy", "MlpPolicy")
    if isinstance(policy, str) and "." in policy:  # rl-zoo3 imports a policy named by its module
        policy = _zoo_import("policy", policy, where)
    if args.algo in FROM_DEMONSTRATIONS:
        spec = args.demos or hyperparams.pop("demonstrations", None)
        if spec is None:
            raise UsageError(
                f"train {args.algo} needs --demos (a file or expert:N), or a demonstrations path in --hyperparams"
            )
        # The algorithm loads them against the env built from the entry (frame stacks, wrappers), single frames included
        hyperparams["demonstrations"] = str(spec)
        if args.pretrain_steps is not None:
            hyperparams["pretrain_steps"] = args.pretrain_steps
    algorithm_class = ALGORITHMS[args.algo]
    return algorithm_class(policy, env, seed=args.seed, tensorboard_log=args.tensorboard_log, verbose=0, **hyperparams)


class _StopOnCtrlC(BaseCallback):
    """
    Make the first Ctrl-C while the model steps its environments a clean stop of ``learn()``: this callback then
    returns False, and :func:`~sb3_dqfd.common.experiment.train_with_curve` evaluates the model where it stopped and
    returns the curve so far, which a ``KeyboardInterrupt`` through it would lose. Ctrl-C anywhere else (DQfD's
    pre-training, the evaluations before and after ``learn()``), or a second one, raises ``KeyboardInterrupt`` at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False
        self._learning = False

    def on_sigint(self, signum: int, frame: FrameType | None) -> None:
        """The SIGINT handler (see :func:`signal.signal`)."""
        if self.interrupted or not self._learning:
            raise KeyboardInterrupt
        self.interrupted = True
        print(
            f"{PROG}: interrupted: stopping at step {self.model.num_timesteps:,} to evaluate and save "
            "(Ctrl-C again to stop at once, without the learning curve)",
            file=sys.stderr,
        )

    def _on_training_start(self) -> None:
        self._learning = True

    def _on_training_end(self) -> None:
        self._learning = False

    def _on_step(self) -> bool:
        return not self.interrupted


@contextlib.contextmanager
def _handling_sigint(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """
    Handle Ctrl-C with ``handler`` within the block. Only the main thread gets signals: elsewhere, do nothing; nor
    where Ctrl-C is ignored (``nohup``, a background job), which should stay ignored.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _save_model(model: BaseAlgorithm, path: Path) -> list[Path]:
    """
    Save the model and, as rl-zoo3 does, its ``VecNormalize`` statistics next to it (where ``evaluate`` reads them).

    :return: the files written
    """
    model.save(path)
    files = [path.with_name(f"{path.name}.zip")]
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is not None:
        files.append(path.parent / VECNORMALIZE_FILE)
        vec_normalize.save(str(files[-1]))
    return files


def _save_curve(args: argparse.Namespace, curve: LearningCurve, timesteps: int, interrupted: bool) -> list[Path]:
    """
    Plot the learning curve and write it with the run's metadata as JSON; print the summary table.

    :param args: the command line of ``train``
    :param curve: the curve
    :param timesteps: the environment steps the model trained for
    :param interrupted: whether Ctrl-C stopped the run before its budget
    :return: the files written
    """
    output = Path(args.output_dir)
    threshold = gym.spec(args.env).reward_threshold
    plot_curves([curve], output / "learning_curve.png", f"{args.algo} on {args.env}", threshold)
    metadata = {"command": sys.argv, "args": _arguments(args), "machine": _machine()}
    save_results(output / "results.json", [curve], metadata | {"interrupted": interrupted, "timesteps_reached": timesteps})
    print(format_table(summarize([curve], threshold), threshold))
    return [output / "learning_curve.png", output / "results.json"]


def _report_interrupt(model: BaseAlgorithm, total_timesteps: int, files: list[Path], note: str = "") -> int:
    """Say how far an interrupted ``train`` went and what it saved; return the exit status of an interruption."""
    saved = ", ".join(str(file) for file in files)
    print(f"{PROG}: interrupted at step {model.num_timesteps:,} of {total_timesteps:,}: saved {saved}{note}", file=sys.stderr)
    return EXIT_INTERRUPTED


def _checkpoint_options(args: argparse.Namespace) -> dict[str, Any]:
    """
    :return: what a ``--resume`` must repeat: :data:`RESUME_OPTIONS` and the ``--hyperparams`` entry as written (its
        YAML values, read again: the parsed ones hold schedules and classes, not comparable as JSON)
    """
    options = {name: getattr(args, name) for name in RESUME_OPTIONS}
    entry = yaml.safe_load(Path(args.hyperparams).read_text()).get(args.env) if args.hyperparams is not None else None
    return options | {"hyperparams entry": json.loads(json.dumps(entry, default=str))}


def _start_or_resume(
    args: argparse.Namespace, model: BaseAlgorithm, options: dict[str, Any], folder: Path
) -> tuple[BaseAlgorithm, LearningCurve | None]:
    """
    ``train --checkpoint``: start a new checkpoint in ``folder`` (replacing one there), or with ``--resume`` load the
    one there, checking first that the command repeats the options it was started with.

    :return: the model to train and, when resuming, its curve so far (see ``train_with_curve``'s ``curve``)
    """
    stored = folder / CHECKPOINT_OPTIONS
    if not args.resume:
        if (folder / LATEST_CHECKPOINT).exists():
            print(f"{PROG}: starting afresh: replacing the checkpoint in {folder} (--resume would continue it)")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        stored.write_text(json.dumps(options, indent=2))
        return model, None
    started = json.loads(stored.read_text()) if stored.is_file() else {}
    different = [
        f"{name} {started.get(name)!r} (now {value!r})" for name, value in options.items() if started.get(name) != value
    ]
    if started and different:
        raise UsageError(f"--resume: the run in {folder} was started with other options: {'; '.join(different)}")
    try:
        resumed = load_checkpoint(folder, model) if started else None
    except ValueError as error:
        raise UsageError(f"--resume: {error}") from None
    if resumed is None:
        raise UsageError(f"--resume: no checkpoint in {folder}: start the run with --checkpoint")
    loaded, curve = resumed
    print(f"{PROG}: resuming at step {loaded.num_timesteps:,} from {folder}")
    return loaded, curve


def _resume_note(checkpoint_dir: Path | None) -> str:
    """:return: how to continue an interrupted ``train`` if it saved a checkpoint (none before its first evaluation)"""
    if checkpoint_dir is None or not (checkpoint_dir / LATEST_CHECKPOINT).is_file():
        return ""
    return f"; the same command with --resume continues from the checkpoint in {checkpoint_dir}"


def cmd_train(args: argparse.Namespace) -> int:
    """
    Train DQfD, SACfD, TD3fD, TransformerA2C or TransformerPPO with periodic evaluation; save the model, a
    learning-curve PNG and a JSON.

    Ctrl-C saves the model and, when it stops the interaction, the curve so far (see :class:`_StopOnCtrlC`).

    :return: the exit status: 0, or :data:`EXIT_INTERRUPTED` after Ctrl-C
    """
    _check_train_options(args)
    hyperparams: dict[str, Any] = {}
    where = f"{args.hyperparams} [{args.env}]"
    if args.hyperparams is not None:
        hyperparams = load_hyperparameters(args.hyperparams, args.env, ALGORITHMS[args.algo], extra_keys=ZOO_KEYS)
    zoo_command = (
        f"python -m sb3_dqfd.zoo train --algo {args.algo.replace('-', '_')} --env {args.env} --conf-file {args.hyperparams}"
    )
    settings = _env_settings(hyperparams, where, zoo_command)
    # The entry's values are checked even where the command line overrides them: the file is wrong either way
    n_envs = _entry_count(hyperparams.pop("n_envs", 1), "n_envs", where)
    total_timesteps = _entry_count(hyperparams.pop("n_timesteps", 50_000), "n_timesteps", where)
    n_envs = n_envs if args.n_envs is None else args.n_envs
    total_timesteps = total_timesteps if args.timesteps is None else args.timesteps
    env, eval_env = make_train_envs(args.env, n_envs, args.seed, settings)
    model = _build_model(args, env, hyperparams, where)

    model_path = Path(args.output_dir) / f"{args.algo}_{args.env}"
    model_path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint_dir, curve_so_far = None, None
    if args.checkpoint or args.resume:
        checkpoint_dir = model_path.parent / CHECKPOINT_FOLDER
        model, curve_so_far = _start_or_resume(args, model, _checkpoint_options(args), checkpoint_dir)
    stop = _StopOnCtrlC()
    try:
        with _handling_sigint(stop.on_sigint):
            curve = train_with_curve(model, args.algo, args.seed, total_timesteps, eval_env, args.eval_freq,
                                     args.eval_episodes, args.progress_bar, extra_callback=stop,
                                     checkpoint_dir=checkpoint_dir, curve=curve_so_far)  # fmt: skip
    except KeyboardInterrupt:
        note = " (no learning curve: stopped outside the interaction with the environment, or by a second Ctrl-C)"
        files = _save_model(model, model_path)
        return _report_interrupt(model, total_timesteps, files, note + _resume_note(checkpoint_dir))
    model_files = _save_model(model, model_path)
    curve_files = _save_curve(args, curve, model.num_timesteps, stop.interrupted)
    if stop.interrupted:
        return _report_interrupt(model, total_timesteps, model_files + curve_files, _resume_note(checkpoint_dir))
    plot, results = curve_files
    print(f"Model: {' + '.join(map(str, model_files))}  curve: {plot}  results: {results}")
    return 0


def _prepare_json(path: str | None) -> Path | None:
    """:return: ``path`` with its folder created, before the work whose result it will hold (None: no JSON)"""
    if path is None:
        return None
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--json {path}: cannot create its folder ({error.strerror})") from None
    return Path(path)


def cmd_evaluate(args: argparse.Namespace) -> None:
    """
    Evaluate a saved model, optionally under domain randomization, with the ``VecNormalize`` statistics saved with it
    if any (:func:`~sb3_dqfd.common.experts.find_vecnormalize_statistics`).
    """
    json_path = _prepare_json(args.json)
    settings = EnvSettings()
    if args.video is not None:
        _check_video_support()
        settings = with_video(settings, args.video, args.episodes)
    env = make_env(args.env, 1, args.seed, args.domain_randomization, settings)
    statistics = find_vecnormalize_statistics(args.model)
    normalized = statistics is not None
    if statistics is not None:
        # Observations are scaled as in training, with its statistics frozen; returns are reported unscaled
        env = VecNormalize.load(str(statistics), env)
        env.training, env.norm_reward = False, False
    model, algo = load_model(args.model, args.algo, env)
    returns, lengths = evaluate_policy(
        model, env, n_eval_episodes=args.episodes, deterministic=not args.stochastic, return_episode_rewards=True
    )
    result = {
        "algo": algo,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "mean_length": float(np.mean(lengths)),
        "episodes": args.episodes,
        "vecnormalize": str(statistics) if normalized else None,
    }
    print(
        f"{algo} on {args.env}: return {result['mean_return']:.2f} ± {result['std_return']:.2f} "
        f"over {args.episodes} episodes, mean length {result['mean_length']:.1f}"
        + (f" (observations normalized with {statistics})" if normalized else "")
    )
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2))
    if args.video is not None:
        env.close()  # RecordVideo writes the last episode's file on close
        print(f"Videos: {len(list(Path(args.video).glob('*.mp4')))} MP4 files in {args.video}")


#: ``compare --algo``: the algorithm, its label, rl-zoo3's name of the baseline and the baseline's class and label
COMPARED: dict[str, tuple[type[FromDemonstrations], str, str, type[BaseAlgorithm], str]] = {
    "dqfd": (DQfD, "DQfD", "dqn", DQN, "DQN (rl-zoo3)"),
    "sacfd": (SACfD, "SACfD", "sac", SAC, "SAC (rl-zoo3)"),
    "td3fd": (TD3fD, "TD3fD", "td3", TD3, "TD3 (rl-zoo3)"),
}
#: ``compare``'s environment when ``--env`` is not given
COMPARE_DEFAULT_ENV = {"dqfd": "MountainCar-v0", "sacfd": "LunarLanderContinuous-v3", "td3fd": "LunarLanderContinuous-v3"}


def _action_space(env_id: str) -> spaces.Space:
    """:return: the action space of ``env_id`` (gymnasium's error for an id it does not know)"""
    _register_zoo_envs(env_id)
    env = gym.make(env_id)
    try:
        return env.action_space
    finally:
        env.close()


def _check_compared(algo: str, env_id: str) -> None:
    """
    Refuse an environment whose actions ``algo`` cannot take, or that rl-zoo3 has no tuned baseline for, before any
    work: one line naming the algorithm to use instead.

    :param algo: a key of :data:`COMPARED`
    :param env_id: the environment id
    """
    if algo not in COMPARED:
        raise UsageError(f"compare --algo {algo!r}: expected one of {', '.join(COMPARED)}")
    if algo == "dqfd":
        if env_id in ZOO_DQN_HYPERPARAMS:
            return
        with contextlib.suppress(gym.error.Error):  # an unknown id gets the list below
            action_space = _action_space(env_id)
            if isinstance(action_space, spaces.Box):
                raise UsageError(
                    f"compare --algo dqfd needs discrete actions: {env_id} has {_describe(action_space)} actions; use "
                    "--algo sacfd or td3fd"
                )
        raise UsageError(f"compare has tuned DQN settings for {sorted(ZOO_DQN_HYPERPARAMS)}, not {env_id!r}")
    action_space = _action_space(env_id)
    if not isinstance(action_space, spaces.Box):
        raise UsageError(
            f"compare --algo {algo} needs continuous actions (a Box): {env_id} has {_describe(action_space)} actions; "
            "use --algo dqfd (the default)"
        )


def _baseline_hyperparameters(algo: str, env_id: str) -> dict[str, Any]:
    """:return: the tuned baseline's arguments for ``compare --algo algo`` on ``env_id`` (rl-zoo3's entry)"""
    if algo == "dqfd":
        return dict(ZOO_DQN_HYPERPARAMS[env_id])
    try:
        return zoo_hyperparameters(COMPARED[algo][2], env_id)
    except ImportError as error:
        raise UsageError(f"compare --algo {algo} reads rl-zoo3's tuned {COMPARED[algo][3].__name__}: {error}") from None


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
    algo: str = "dqfd",
) -> list[LearningCurve]:
    """
    DQfD vs rl-zoo3's tuned DQN vs DQfD's pre-training alone, side by side on one environment over several seeds; for
    continuous actions, SACfD vs rl-zoo3's tuned SAC or TD3fD vs rl-zoo3's tuned TD3 (``algo``).

    The algorithm uses the package's hyperparameters for ``env_id`` (:func:`~sb3_dqfd.shipped_hyperparameters`), as
    the baseline uses rl-zoo3's (DQN: :data:`~sb3_dqfd.common.experiment.ZOO_DQN_HYPERPARAMS`; SAC, TD3: the entry
    of the installed rl-zoo3, :func:`~sb3_dqfd.common.hyperparams.zoo_hyperparameters`). DQfD is always pre-trained
    (with its ``pretrain_steps``, as before); SACfD and TD3fD only when their ``pretrain_steps`` is above 0, and only
    then is the pre-training-only curve drawn. The table, the JSON (``retention``) and the printout give the
    algorithm's retention of its pre-trained policy per seed and its median: the lowest evaluation after
    pre-training over the pre-trained one, both measured from the task's return floor
    (:data:`~sb3_dqfd.common.experiment.RETURN_FLOORS`, 0 where not listed, as for both landers).

    :param env_id: the environment id (discrete actions for DQfD, a Box for SACfD and TD3fD)
    :param demos_spec: the demonstrations, as ``--demos`` takes them
    :param timesteps: environment steps per run
    :param seeds: one run of each method per seed
    :param eval_freq: evaluate every this many environment steps
    :param eval_episodes: episodes per evaluation
    :param output_dir: where the table (Markdown), the plot and the JSON go
    :param progress_bar: show progress bars
    :param dqfd_kwargs: arguments of the algorithm (DQfD, SACfD or TD3fD: the name is from when it was DQfD only) on
        top of the shipped ones for ``env_id`` (e.g. ``pretrain_steps``)
    :param algo: ``"dqfd"``, ``"sacfd"`` or ``"td3fd"``: the algorithm compared with its rl-zoo3 baseline
    :return: the learning curves
    """
    _check_compared(algo, env_id)
    algorithm, label, _, baseline_class, baseline_label = COMPARED[algo]
    kwargs = {**shipped_hyperparameters(algorithm, env_id), **(dqfd_kwargs or {})}
    _baseline_hyperparameters(algo, env_id)  # a missing rl-zoo3 entry is reported before any training
    curves = []
    for seed in seeds:
        eval_env = make_env(env_id, 1, seed + 10_000)
        demos = load_demonstrations(demos_spec, env=env_id, seed=seed)
        model = algorithm("MlpPolicy", make_env(env_id, 1, seed), seed=seed, **(kwargs | {"demonstrations": demos}))
        pretrained = algo == "dqfd" or model.pretrain_steps > 0
        pretrain = partial(model.pretrain, model.pretrain_steps) if pretrained else None
        curve = train_with_curve(model, label, seed, timesteps, eval_env, eval_freq, eval_episodes, progress_bar,
                                 before_learning=pretrain)  # fmt: skip
        curves.append(_teacher(demos, seed, timesteps))
        if pretrained:
            curves.append(_pretraining_only(curve, timesteps, model.pretrain_steps, label))
        curves.append(curve)
        baseline = baseline_class("MlpPolicy", make_env(env_id, 1, seed), seed=seed, **_baseline_hyperparameters(algo, env_id))
        curves.append(
            train_with_curve(baseline, baseline_label, seed, timesteps, eval_env, eval_freq, eval_episodes, progress_bar)
        )
    stem = Path(output_dir) / (f"compare_{env_id}" if algo == "dqfd" else f"compare_{algo}_{env_id}")
    threshold = gym.spec(env_id).reward_threshold
    return_floor = RETURN_FLOORS.get(env_id, 0.0)
    rows = summarize(curves, threshold, return_floor)
    table = format_table(rows, threshold)
    plot_curves(curves, f"{stem}.png", f"{label} vs {baseline_class.__name__} on {env_id} ({demos_spec})", threshold)
    retention = _retention(curves, rows, return_floor, label)
    Path(f"{stem}.md").write_text(f"{table}\n\n{_describe_retention(retention)}\n")
    metadata = {
        "command": sys.argv,
        "algo": algo,
        "env": env_id,
        "demos": demos_spec,
        "seeds": list(seeds),
        "machine": _machine(),
        "hyperparameters": {key: repr(value) for key, value in kwargs.items()},
        "baseline_hyperparameters": {key: repr(value) for key, value in _baseline_hyperparameters(algo, env_id).items()},
    }
    save_results(f"{stem}.json", curves, metadata | {"summary": rows, "retention": retention})
    print(table)
    print(_describe_retention(retention))
    print(f"Table: {stem}.md  plot: {stem}.png  results: {stem}.json")
    return curves


def _retention(
    curves: Sequence[LearningCurve], rows: Sequence[dict[str, Any]], return_floor: float, label: str = "DQfD"
) -> dict[str, Any]:
    """
    :param curves: the curves of :func:`compare`
    :param rows: their :func:`~sb3_dqfd.common.experiment.summarize` rows
    :param return_floor: the return that counts as nothing kept
    :param label: the method whose retention it is (``"DQfD"``, ``"SACfD"``, ``"TD3fD"``)
    :return: that method's retention of its pre-trained policy, per seed (``{seed: value}``, JSON keys are strings)
        and the median over seeds (the table's), with the floor it is measured from, the method and whether it was
        pre-trained (without pre-training there is no retention: None)
    """
    runs = [curve for curve in curves if curve.label == label]
    return {
        "method": label,
        "pretrained": all(curve.pretrained for curve in runs),
        "return_floor": return_floor,
        "per_seed": {str(curve.seed): curve.retention(return_floor) for curve in runs},
        "median": next(row["median_retention"] for row in rows if row["method"] == label),
    }


def _describe_retention(retention: dict[str, Any]) -> str:
    """:return: one line for the table's reader: what the retention column of the method is, per seed and median"""

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    method = retention.get("method", "DQfD")
    if not retention.get("pretrained", True):
        return f"{method} retention: none (no pre-training: pretrain_steps is 0)"
    per_seed = ", ".join(f"seed {seed} {fmt(value)}" for seed, value in retention["per_seed"].items())
    return (
        f"{method} retention (lowest evaluation after pre-training / the pre-trained one, both from a return floor of "
        f"{retention['return_floor']:g}): {per_seed}; median {fmt(retention['median'])} (1.0: never below the "
        "pre-trained policy)"
    )


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


def _pretraining_only(dqfd_curve: LearningCurve, timesteps: int, pretrain_steps: int, label: str = "DQfD") -> LearningCurve:
    """
    The "pre-training only" baseline: the algorithm's evaluation right after pre-training, before any interaction,
    drawn flat over the budget (it does not change with environment steps).

    :param dqfd_curve: the run (DQfD, SACfD or TD3fD), whose first evaluation follows pre-training
    :param timesteps: the budget of the other methods
    :param pretrain_steps: the number of pre-training updates, for the label
    :param label: the algorithm's label
    :return: the baseline's curve
    """
    return LearningCurve(
        label=f"{label} pre-training only ({pretrain_steps:,} updates)",
        seed=dqfd_curve.seed,
        timesteps=[0, timesteps],
        mean_returns=[dqfd_curve.mean_returns[0]] * 2,
        std_returns=[dqfd_curve.std_returns[0]] * 2,
    )


def _dqfd_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """:return: the arguments of the algorithm (DQfD, SACfD, TD3fD) given on the command line of ``compare`` or ``demo``"""
    return {} if args.pretrain_steps is None else {"pretrain_steps": args.pretrain_steps}


def cmd_compare(args: argparse.Namespace) -> None:
    """Run :func:`compare` from the command line."""
    env_id = COMPARE_DEFAULT_ENV[args.algo] if args.env is None else args.env
    compare(env_id, args.demos, args.timesteps, args.seeds, args.eval_freq, args.eval_episodes, args.output_dir,
            args.progress_bar, _dqfd_overrides(args), algo=args.algo)  # fmt: skip


def cmd_demo(args: argparse.Namespace) -> None:
    """
    The ``make demo`` job: DQfD vs DQN on LunarLander-v3 from 20 episodes of gymnasium's heuristic lander.

    LunarLander shows within a few minutes what demonstrations buy: DQfD lands from its first evaluation on, where
    rl-zoo3's tuned DQN needs ~90k steps. (MountainCar, where DQfD beats its teacher, takes 20k-30k steps: see README.)
    Its table is :func:`compare`'s, with DQfD's retention of the pre-trained policy (the lowest evaluation after
    pre-training over the one right after it; LunarLander's return floor is 0).
    """
    compare("LunarLander-v3", "expert:20", args.timesteps, args.seeds, args.eval_freq, 10, args.output_dir,
            args.progress_bar, _dqfd_overrides(args))  # fmt: skip


#: What ``--demos`` takes (anything :func:`~sb3_dqfd.common.demonstrations.load_demonstrations` reads from a string)
DEMOS_HELP = (
    "demonstrations: a file (our .npz, or a Stable-Baselines2 ExpertDataset .npz), the id of a Minari dataset stored "
    "locally (MINARI_DATASETS_PATH; never downloaded), or expert:N to record N episodes with the built-in expert"
)


def build_parser() -> argparse.ArgumentParser:
    """:return: the parser of the ``sb3-dqfd`` command line"""
    parser = _ArgumentParser(prog=PROG, description=__doc__)
    # Its parsers are _ArgumentParser (argparse makes them of the parent's class); tune's code takes any ArgumentParser
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]", parser.add_subparsers(dest="command", required=True)
    )

    record = commands.add_parser("record", help="record demonstrations to .npz")
    record.add_argument("--env", required=True, help="environment id, e.g. CartPole-v1")
    record.add_argument("--expert", help="built-in expert name (default: the env id)")
    record.add_argument(
        "--model",
        help=f"a saved SB3 model (.zip) to use as the expert instead (with its {VECNORMALIZE_FILE}, if saved with it, "
        "scaling what it sees; the demonstrations stay unscaled)",
    )
    record.add_argument(
        "--algo", type=algorithm_name, choices=sorted(ALGORITHMS), help="algorithm that saved --model (default: read from it)"
    )
    record.add_argument("--episodes", type=positive_int, default=10, help="episodes to record (default: %(default)s)")
    record.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="seed of the first episode (the next ones: seed + 1, ...); in a VecEnv, env i is seeded once with seed + i",
    )
    record.add_argument(
        "--n-envs",
        type=positive_int,
        default=1,
        help="environments stepped at once (default: %(default)s); more than one, or --hyperparams, records in the "
        "VecEnv train builds",
    )
    record.add_argument(
        "--hyperparams",
        help="rl-zoo3 style YAML file, as train dqfd takes it: record in the env train builds from the entry of --env "
        "(env_kwargs, env_wrapper, frame_stack, monitor_kwargs; normalize is refused; other keys are ignored)",
    )
    record.add_argument("--output", required=True, help="the .npz file to write")
    record.add_argument("--video", metavar="DIR", help="write an MP4 of every recorded episode to DIR (needs moviepy)")
    record.set_defaults(func=cmd_record)

    train = commands.add_parser(
        "train",
        help="train DQfD, SACfD, TD3fD, TransformerA2C or TransformerPPO with periodic evaluation",
        description="Train DQfD, SACfD, TD3fD, TransformerA2C or TransformerPPO with periodic evaluation; write the "
        "model, a learning-curve PNG and "
        "results.json to --output-dir. Ctrl-C stops the run and saves the model and the curve so far (exit status 130); "
        "with --checkpoint, --resume continues it.",
    )
    train.add_argument(
        "algo",
        type=algorithm_name,
        choices=TRAINABLE,
        help="dqfd, sacfd, td3fd, transformer-a2c or transformer-ppo (or transformer_a2c, transformer_ppo)",
    )
    train.add_argument("--env", required=True, help="environment id, e.g. CartPole-v1")
    train.add_argument(
        "--demos", help=f"dqfd, sacfd and td3fd: {DEMOS_HELP} (default: the demonstrations path of --hyperparams)"
    )
    train.add_argument(
        "--hyperparams",
        help="rl-zoo3 style YAML file {env_id: {name: value}}: constructor arguments, n_timesteps, n_envs, policy, "
        "env_kwargs, env_wrapper, frame_stack, normalize (VecNormalize, saved as vecnormalize.pkl), monitor_kwargs",
    )
    train.add_argument(
        "--pretrain-steps",
        type=non_negative_int,
        help="pre-training updates of dqfd, sacfd and td3fd (default: the YAML's, else the algorithm's)",
    )
    train.add_argument(
        "--timesteps", type=positive_int, help="environment steps (default: n_timesteps of the YAML, else 50,000)"
    )
    train.add_argument("--n-envs", type=positive_int, help="training environments (default: n_envs of the YAML, else 1)")
    train.add_argument("--seed", type=non_negative_int, default=0, help="seed of the model and the environments")
    train.add_argument("--tensorboard-log", help="TensorBoard log directory")
    train.add_argument(
        "--eval-freq", type=positive_int, default=5_000, help="evaluate every this many environment steps (default: 5,000)"
    )
    train.add_argument("--eval-episodes", type=positive_int, default=10, help="episodes per evaluation (default: %(default)s)")
    train.add_argument("--progress-bar", action="store_true", help="show progress bars")
    train.add_argument(
        "--output-dir", default="runs/train", help="where the model, the curve and the JSON go (default: %(default)s)"
    )
    train.add_argument(
        "--checkpoint",
        action="store_true",
        help=f"save the run at every evaluation and at the end (model, replay buffer, VecNormalize statistics, curve) in "
        f"<output-dir>/{CHECKPOINT_FOLDER}, replacing one there, so that --resume can continue it after Ctrl-C or a "
        "killed machine",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help=f"continue the run checkpointed in <output-dir>/{CHECKPOINT_FOLDER} from its last evaluation (and go on "
        "checkpointing): the same command as the one that started it, except that --timesteps may grow to train longer",
    )
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a saved model")
    evaluate.add_argument(
        "model",
        help=f"the saved model (.zip), with its {VECNORMALIZE_FILE} if any: next to it, or rl-zoo3's "
        f"<run>/<env id>/{VECNORMALIZE_FILE}",
    )
    evaluate.add_argument(
        "--algo",
        type=algorithm_name,
        choices=sorted(ALGORITHMS),
        help="algorithm that saved the model (default: read from it)",
    )
    evaluate.add_argument("--env", required=True, help="environment id, e.g. CartPole-v1")
    evaluate.add_argument("--episodes", type=positive_int, default=20, help="episodes (default: %(default)s)")
    evaluate.add_argument("--seed", type=non_negative_int, default=0, help="seed of the environment")
    evaluate.add_argument("--domain-randomization", help=f"evaluate under a preset: {', '.join(sorted(PRESETS))}")
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of the greedy policy")
    evaluate.add_argument("--json", help="also write the result to this JSON file")
    evaluate.add_argument("--video", metavar="DIR", help="write an MP4 of every evaluated episode to DIR (needs moviepy)")
    evaluate.set_defaults(func=cmd_evaluate)

    comparison = commands.add_parser(
        "compare",
        help="DQfD vs tuned DQN vs pre-training only, over seeds (continuous actions: SACfD vs SAC, TD3fD vs TD3)",
        description="DQfD vs rl-zoo3's tuned DQN vs DQfD's pre-training only, side by side over seeds; with --algo sacfd "
        "or td3fd, SACfD or TD3fD (the shipped hyperparameters) vs rl-zoo3's tuned SAC or TD3 (read from the installed "
        "rl-zoo3) on an environment with continuous actions.",
    )
    comparison.add_argument(
        "--algo",
        type=algorithm_name,
        choices=list(COMPARED),
        default="dqfd",
        help="dqfd (discrete actions, vs DQN), sacfd or td3fd (continuous actions, vs SAC or TD3) (default: %(default)s)",
    )
    comparison.add_argument(
        "--env",
        help=f"an environment with rl-zoo3's tuned baseline: for dqfd one of {', '.join(sorted(ZOO_DQN_HYPERPARAMS))} "
        "(default: MountainCar-v0); for sacfd and td3fd one with a shipped entry and an rl-zoo3 entry "
        "(default: LunarLanderContinuous-v3)",
    )
    comparison.add_argument("--demos", default="expert:10", help=f"{DEMOS_HELP} (default: %(default)s)")
    _add_comparison_options(comparison, timesteps=30_000, seeds=[0, 1, 2], eval_freq=2_500)
    comparison.add_argument("--eval-episodes", type=positive_int, default=10, help="episodes per evaluation (default: 10)")
    comparison.add_argument(
        "--pretrain-steps",
        type=non_negative_int,
        help="pre-training updates of the algorithm (default: the shipped YAML's; sacfd and td3fd: 0 skips pre-training)",
    )
    comparison.add_argument("--output-dir", default="runs/compare", help="where the results go (default: %(default)s)")
    comparison.set_defaults(func=cmd_compare)

    demo = commands.add_parser("demo", help="the make demo job: compare on LunarLander-v3 with 20 expert episodes")
    # A budget that finishes within 5 minutes on 2 cores; the benchmarks use the full budgets
    _add_comparison_options(demo, timesteps=6_000, seeds=[0], eval_freq=1_500)
    demo.add_argument(
        "--pretrain-steps", type=non_negative_int, default=1_500, help="DQfD pre-training updates (default: 1,500)"
    )
    demo.add_argument("--output-dir", default="demo_output", help="where the results go (default: %(default)s)")
    demo.set_defaults(func=cmd_demo)

    add_tune_subcommand(commands)  # Optuna search through rl-zoo3 (the zoo extra), see sb3_dqfd/zoo/
    return parser


def _add_comparison_options(parser: argparse.ArgumentParser, timesteps: int, seeds: list[int], eval_freq: int) -> None:
    """Add the options ``compare`` and ``demo`` share, with their defaults."""
    parser.add_argument(
        "--timesteps", type=positive_int, default=timesteps, help=f"environment steps per run (default: {timesteps:,})"
    )
    parser.add_argument(
        "--seeds",
        type=non_negative_int,
        nargs="+",
        default=seeds,
        help="one run of each method per seed (default: %(default)s)",
    )
    parser.add_argument(
        "--eval-freq",
        type=positive_int,
        default=eval_freq,
        help=f"evaluate every this many environment steps (default: {eval_freq:,})",
    )
    parser.add_argument("--progress-bar", action="store_true", help="show progress bars")


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Show Python warnings as one line each, as the errors, instead of two with a line of Python source code."""
    showwarning = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        print(f"{PROG}: warning: {' '.join(str(message).split())}", file=file or sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = showwarning


def main(argv: Sequence[str] | None = None) -> int:
    """
    Entry point of ``sb3-dqfd`` and ``python -m sb3_dqfd``.

    Python warnings are shown as one line each while a command runs (``sb3-dqfd: warning: ...``).

    :param argv: the arguments (default: ``sys.argv[1:]``)
    :return: the exit status: 0 on success, 2 for bad usage (reported as one line, never a traceback; set the
        environment variable ``SB3_DQFD_DEBUG=1`` to see the traceback instead), 130 after Ctrl-C
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _one_line_warnings():
            return args.func(args) or 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError, ValueError, TypeError, FileNotFoundError, gym.error.Error) as error:
        if os.environ.get("SB3_DQFD_DEBUG"):
            raise  # the full traceback, for bug reports

        message = " ".join(str(error).split())
        parser.exit(2, f"{parser.prog}: error: {message}\n")
