"""Make rl-zoo3 know our algorithms: its algorithm table, its Optuna samplers and our hyperparameter files."""

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_dqfd.common.hyperparams import HYPERPARAMS_DIR, RUN_KEYS, constructor_keys, parse_hyperparameter
from sb3_dqfd.zoo.samplers import (
    convert_dqfd_params,
    convert_sacfd_params,
    convert_td3fd_params,
    convert_transformer_a2c_params,
    convert_transformer_ppo_params,
    sample_dqfd_params,
    sample_sacfd_params,
    sample_td3fd_params,
    sample_transformer_a2c_params,
    sample_transformer_ppo_params,
)

#: Our algorithms' names in rl-zoo3 (``--algo``), as rl-zoo3 spells its own (lower case, underscores)
ZOO_NAMES = ("dqfd", "sacfd", "td3fd", "transformer_a2c", "transformer_ppo")

#: Keys of an rl-zoo3 entry that rl-zoo3 consumes itself (environment and wrappers), besides the run keys
ZOO_KEYS = (
    "normalize",
    "frame_stack",
    "env_wrapper",
    "vec_env_wrapper",
    "callback",
    "monitor_kwargs",
    "env_kwargs",
    "noise_type",
    "noise_std",
)


#: The action spaces our demonstration algorithms take: the space, what it is called, and the algorithms for the others
ACTION_SPACES: dict[str, tuple[type[spaces.Space], str, str]] = {
    "dqfd": (spaces.Discrete, "discrete actions (a Discrete)", "sacfd or td3fd"),
    "sacfd": (spaces.Box, "continuous actions (a Box)", "dqfd"),
    "td3fd": (spaces.Box, "continuous actions (a Box)", "dqfd"),
}


class ZooError(ValueError):
    """Bad input for the rl-zoo3 integration (algorithm, environment, hyperparameter file, storage)."""


def register_algorithms() -> None:
    """
    Add ``dqfd``, ``sacfd``, ``td3fd``, ``transformer_a2c`` and ``transformer_ppo`` to rl-zoo3's algorithm table and
    Optuna samplers.

    rl-zoo3 reads ``rl_zoo3.utils.ALGOS``, ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` and
    ``HYPERPARAMS_CONVERTER`` when it runs, so updating these dicts in place before ``rl_zoo3.train.train()`` (or an
    ``ExperimentManager``) is enough. Idempotent.
    """
    try:
        from rl_zoo3 import hyperparams_opt, utils
    except ImportError as error:
        raise ZooError(f"the rl-zoo3 integration needs rl-zoo3: pip install 'sb3-dqfd[zoo]' (missing: {error.name})") from None

    # Imported here so that `import sb3_dqfd.zoo` stays light and rl-zoo3 is only needed when used
    from sb3_dqfd.dqfd.dqfd import DQfD
    from sb3_dqfd.sacfd.sacfd import SACfD
    from sb3_dqfd.td3fd.td3fd import TD3fD
    from sb3_dqfd.transformer_a2c.transformer_a2c import TransformerA2C
    from sb3_dqfd.transformer_ppo.transformer_ppo import TransformerPPO

    utils.ALGOS.update(dqfd=DQfD, sacfd=SACfD, td3fd=TD3fD, transformer_a2c=TransformerA2C, transformer_ppo=TransformerPPO)
    hyperparams_opt.HYPERPARAMS_SAMPLER.update(
        dqfd=sample_dqfd_params,
        sacfd=sample_sacfd_params,
        td3fd=sample_td3fd_params,
        transformer_a2c=sample_transformer_a2c_params,
        transformer_ppo=sample_transformer_ppo_params,
    )
    hyperparams_opt.HYPERPARAMS_CONVERTER.update(
        dqfd=convert_dqfd_params,
        sacfd=convert_sacfd_params,
        td3fd=convert_td3fd_params,
        transformer_a2c=convert_transformer_a2c_params,
        transformer_ppo=convert_transformer_ppo_params,
    )


def algorithm_class(algo: str) -> type[BaseAlgorithm]:
    """
    :param algo: an rl-zoo3 algorithm name (``dqfd``, ``sacfd``, ``td3fd``, ``transformer_a2c``, ``dqn``, ...)
    :return: its class, after :func:`register_algorithms`
    """
    from rl_zoo3.utils import ALGOS

    register_algorithms()
    if algo not in ALGOS:
        # sb3-dqfd's own command line spells transformer-a2c: point at rl-zoo3's spelling
        close = difflib.get_close_matches(algo.replace("-", "_"), list(ALGOS), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ZooError(f"unknown algorithm {algo!r} ({hint}known: {', '.join(sorted(ALGOS))})")
    return ALGOS[algo]


def default_config(algo: str) -> Path:
    """
    :param algo: an rl-zoo3 algorithm name
    :return: the hyperparameter file rl-zoo3 would read for it: ours for our algorithms, rl-zoo3's for its own
    """
    if algo in ZOO_NAMES:
        return HYPERPARAMS_DIR / f"{algo}.yml"
    import rl_zoo3

    return Path(rl_zoo3.__file__).resolve().parent / "hyperparams" / f"{algo}.yml"


def check_env_id(env_id: str) -> None:
    """
    Raise a :class:`ZooError` naming the closest registered id when ``env_id`` is not a registered environment.

    :param env_id: a Gymnasium environment id (rl-zoo3's extra ids such as ``CartPoleNoVel-v1`` included)
    """
    import rl_zoo3.import_envs  # noqa: F401  (registers rl-zoo3's environments, e.g. the no-velocity ones)

    if env_id not in gym.envs.registry:
        close = difflib.get_close_matches(env_id, list(gym.envs.registry), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ZooError(f"unknown environment {env_id!r}{hint}")


def check_action_space(algo: str, env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> None:
    """
    Raise a :class:`ZooError` naming the algorithm to use instead when ``algo`` is one of ours (:data:`ACTION_SPACES`)
    and cannot take the actions of ``env_id``: ``sacfd`` on CartPole is one line before rl-zoo3 builds anything, not
    a traceback from the algorithm's constructor. Other algorithms are left to rl-zoo3.

    :param algo: an rl-zoo3 algorithm name
    :param env_id: a registered environment id (see :func:`check_env_id`)
    :param env_kwargs: the keyword arguments rl-zoo3 makes the environment with (they may change its action space,
        e.g. ``continuous: true`` for ``LunarLander-v3``)
    """
    if algo not in ACTION_SPACES:
        return
    space_class, needs, others = ACTION_SPACES[algo]
    env = gym.make(env_id, **(env_kwargs or {}))
    try:
        action_space = env.action_space
    finally:
        env.close()
    if not isinstance(action_space, space_class):
        raise ZooError(f"--algo {algo} needs {needs}: {env_id} has {action_space} actions; use --algo {others}")


def entry_env_kwargs(entry: Mapping[str, Any], where: str) -> dict[str, Any] | None:
    """
    :param entry: an rl-zoo3 entry (values as in the file, see :func:`read_zoo_entry`)
    :param where: where it comes from, for errors
    :return: its ``env_kwargs`` as a dict (rl-zoo3 accepts a mapping or a ``"dict(...)"`` string), None without any
    """
    value = entry.get("env_kwargs")
    if value is None:
        return None
    parsed = parse_hyperparameter("env_kwargs", value, where)
    if not isinstance(parsed, Mapping):
        raise ZooError(f"{where}: env_kwargs must be a mapping, got {value!r}")
    return dict(parsed)


def known_keys(algorithm: type[BaseAlgorithm]) -> set[str]:
    """
    :param algorithm: an algorithm class
    :return: the keys an rl-zoo3 entry may hold for it: its constructor arguments, the run keys (``n_timesteps``,
        ``n_envs``, ``policy``) and the keys rl-zoo3 consumes itself (:data:`ZOO_KEYS`)
    """
    return constructor_keys(algorithm) | set(RUN_KEYS) | set(ZOO_KEYS)


def read_zoo_entry(path: str | Path, env_id: str, algorithm: type[BaseAlgorithm]) -> dict[str, Any]:
    """
    Read and check the entry of ``env_id`` in an rl-zoo3 hyperparameter file, without evaluating anything.

    rl-zoo3 falls back to a ``default`` entry when the environment has none; so does this. Unknown keys (neither
    constructor arguments of ``algorithm``, nor ``n_timesteps``/``n_envs``/``policy``, nor the keys rl-zoo3 itself
    consumes such as ``normalize`` or ``env_wrapper``) are an error that names them, before any training starts.
    A ``demonstrations`` path must exist.

    :param path: the YAML file
    :param env_id: the environment id
    :param algorithm: the algorithm class the entry is for
    :return: the raw entry (values as in the file)
    """
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"hyperparameter file {path} does not exist")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ZooError(f"hyperparameter file {path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(content, Mapping):
        raise ZooError(f"hyperparameter file {path} must map environment ids to hyperparameters")
    key = env_id if env_id in content else "default"
    if key not in content:
        raise ZooError(f"hyperparameter file {path} has no entry for {env_id!r} and no 'default' (entries: {sorted(content)})")
    entry = content[key]
    if not isinstance(entry, Mapping):
        raise ZooError(f"{path}: the entry {key!r} must be a mapping of hyperparameters, got {type(entry).__name__}")
    known = known_keys(algorithm)
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ZooError(
            f"{path} [{key}]: unknown hyperparameters for {algorithm.__name__}: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    demonstrations = entry.get("demonstrations")
    if isinstance(demonstrations, str) and not Path(demonstrations).exists():
        raise ZooError(
            f"{path} [{key}]: demonstrations file {demonstrations!r} does not exist (paths are relative to the working "
            f"directory); record it with: python -m sb3_dqfd record --env {env_id} --episodes <N> --output {demonstrations} "
            f"(the header of {path.name} gives the number of episodes each entry was tuned with)"
        )
    check_callbacks(entry.get("callback"), algorithm, f"{path} [{key}]")
    return dict(entry)


#: rl-zoo3's callback that trains a copy of the model in a thread: it takes SAC and TQC only and reloads the model's
#: zip as ``SAC`` (so SACfD passes its check, then fails), without the demonstrations and prioritized replay of ours
PARALLEL_TRAIN_CALLBACK = "ParallelTrainCallback"


def check_callbacks(callbacks: Any, algorithm: type[BaseAlgorithm], where: str) -> None:
    """
    Refuse rl-zoo3's ``ParallelTrainCallback`` for our algorithms (see :data:`PARALLEL_TRAIN_CALLBACK`).

    :param callbacks: the ``callback`` value of an entry, or of ``-params``: a name, a ``{name: kwargs}`` mapping or a
        list of them (None: no callback)
    :param algorithm: the algorithm the entry is for
    :param where: the file and entry, or the option, for the error
    """
    items = callbacks if isinstance(callbacks, list) else [callbacks]
    names = [name for item in items for name in (item if isinstance(item, Mapping) else [item]) if isinstance(name, str)]
    if algorithm.__module__.startswith("sb3_dqfd") and any(PARALLEL_TRAIN_CALLBACK in name for name in names):
        raise ZooError(
            f"{where}: rl-zoo3's {PARALLEL_TRAIN_CALLBACK} does not work with {algorithm.__name__}: it trains a copy "
            "reloaded as SB3's SAC (or refuses the model), without demonstrations or prioritized replay; remove the callback"
        )
