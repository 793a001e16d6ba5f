"""Hyperparameter files in rl-zoo3's YAML format, read without ``eval``."""

import ast
import difflib
import importlib.metadata
import importlib.util
import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import yaml
from gymnasium import spaces
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.utils import LinearSchedule

# Keys of an rl-zoo3 entry that are not constructor arguments of the algorithm
RUN_KEYS = ("n_timesteps", "n_envs", "policy")

#: Where the shipped hyperparameter files live (``<algo>.yml``, rl-zoo3's layout)
HYPERPARAMS_DIR = Path(__file__).resolve().parent.parent / "hyperparams"


def _parse_dict_call(text: str, where: str) -> dict[str, Any]:
    """
    Parse rl-zoo3's ``"dict(net_arch=[64, 64])"`` (and ``"{'norm_obs': True}"``) strings safely: only a ``dict(...)``
    call or a ``{...}`` display, with literal values.

    :param text: the string from the YAML file
    :param where: where the string comes from, for error messages
    :return: the keyword arguments as a dict
    """
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError as error:
        raise ValueError(f"{where}: cannot parse {text!r} ({error.msg})") from None
    try:
        if isinstance(node, ast.Dict):
            return ast.literal_eval(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
            return {keyword.arg: ast.literal_eval(keyword.value) for keyword in node.keywords if keyword.arg is not None}
    except ValueError:
        raise ValueError(
            f"{where}: only literal values (numbers, strings, lists, dicts) are allowed in {text!r}; "
            "classes such as nn.ReLU are not evaluated for safety: use their names in a policy that accepts them"
        ) from None
    raise ValueError(f"{where}: expected a mapping or a string 'dict(key=value, ...)' or '{{key: value, ...}}', got {text!r}")


def parse_hyperparameter(key: str, value: Any, where: str) -> Any:
    """
    Turn rl-zoo3's string conventions into Python values: ``lin_<x>`` linear schedules, and ``dict(...)`` strings for
    ``*_kwargs`` and ``normalize`` (VecNormalize's arguments).

    :param key: the hyperparameter name
    :param value: its raw YAML value
    :param where: where it comes from, for error messages
    :return: the value to pass to the algorithm
    """
    if isinstance(value, str) and value.startswith("lin_"):
        try:
            return LinearSchedule(float(value[4:]), 0.0, 1.0)
        except ValueError:
            raise ValueError(f"{where}: {key}={value!r} is not a linear schedule 'lin_<number>'") from None
    if (key.endswith("kwargs") or key == "normalize") and isinstance(value, str):
        return _parse_dict_call(value, f"{where}: {key}")
    return value


def constructor_keys(algorithm_class: type[BaseAlgorithm]) -> set[str]:
    """
    :param algorithm_class: an algorithm class
    :return: the hyperparameters its constructor takes (``self``, ``env`` and SB3's private ``_init_setup_model`` left
        out)
    """
    parameters = inspect.signature(algorithm_class.__init__).parameters
    return {name for name in parameters if not name.startswith("_")} - {"self", "env"}


def load_hyperparameters(
    path: str | Path, env_id: str, algorithm_class: type[BaseAlgorithm], extra_keys: Iterable[str] = ()
) -> dict[str, Any]:
    """
    Read the entry for ``env_id`` from an rl-zoo3 style YAML file (``{env_id: {hyperparameter: value}}``).

    Strings are never evaluated: ``policy_kwargs: "dict(net_arch=[64, 64])"`` is parsed as a literal, ``lin_1e-3``
    becomes a linear schedule. Unknown keys are an error naming them.

    :param path: the YAML file
    :param env_id: the environment id whose entry to read
    :param algorithm_class: the algorithm the hyperparameters are for (its constructor defines the known keys)
    :param extra_keys: other keys the entry may hold, for a caller that handles them, e.g. the keys rl-zoo3 builds
        the environment from (:data:`sb3_dqfd.zoo.registration.ZOO_KEYS`: ``normalize``, ``env_wrapper``, ...)
    :return: the hyperparameters, including the run keys ``n_timesteps``, ``n_envs`` and ``policy`` and the
        ``extra_keys`` when given
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Hyperparameter file {path} does not exist")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"Hyperparameter file {path} is not valid YAML: {error}") from None
    if not isinstance(content, dict) or env_id not in content:
        known = sorted(content) if isinstance(content, dict) else []
        raise ValueError(f"Hyperparameter file {path} has no entry for {env_id!r} (entries: {known})")
    entry = content[env_id]
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: the entry for {env_id!r} must be a mapping of hyperparameters, got {type(entry).__name__}")
    known_keys = constructor_keys(algorithm_class) | set(RUN_KEYS) | set(extra_keys)
    unknown = sorted(set(entry) - known_keys)
    if unknown:
        guesses = {key: difflib.get_close_matches(key, sorted(known_keys), n=1) for key in unknown}
        hints = ", ".join(f"{key} -> {guess[0]}?" for key, guess in guesses.items() if guess)
        raise ValueError(
            f"{path}: unknown hyperparameters for {algorithm_class.__name__} on {env_id!r}: {unknown} "
            + (f"(did you mean: {hints}) " if hints else "")
            + f"(known: {sorted(known_keys)})"
        )
    return {key: parse_hyperparameter(key, value, f"{path} [{env_id}]") for key, value in entry.items()}


def shipped_hyperparameters(algorithm_class: type[BaseAlgorithm], env_id: str) -> dict[str, Any]:
    """
    The package's hyperparameters for ``env_id`` (``sb3_dqfd/hyperparams/<algo>.yml``, what the benchmarks measure),
    as constructor arguments of ``algorithm_class``.

    The run keys (``n_timesteps``, ``n_envs``, ``policy``) and the ``demonstrations`` path are left out: pass your own
    demonstrations. Schedules (learning rate, exploration) stretch over whatever budget ``learn()`` gets.

    :param algorithm_class: ``DQfD``, ``SACfD``, ``TD3fD``, ``TransformerA2C`` or ``TransformerPPO`` (or a subclass)
    :param env_id: the environment id whose entry to read
    :return: the keyword arguments
    """
    files = {
        "DQfD": "dqfd.yml",
        "SACfD": "sacfd.yml",
        "TD3fD": "td3fd.yml",
        "TransformerA2C": "transformer_a2c.yml",
        "TransformerPPO": "transformer_ppo.yml",
    }
    name = next((cls.__name__ for cls in algorithm_class.__mro__ if cls.__name__ in files), None)
    if name is None:
        raise ValueError(f"No shipped hyperparameters for {algorithm_class.__name__}: only for {sorted(files)}")
    entry = load_hyperparameters(HYPERPARAMS_DIR / files[name], env_id, algorithm_class)
    return {key: value for key, value in entry.items() if key not in (*RUN_KEYS, "demonstrations")}


#: SB3's algorithms by their rl-zoo3 names: the ones whose tuned entries :func:`zoo_hyperparameters` reads
ZOO_ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"a2c": A2C, "ddpg": DDPG, "dqn": DQN, "ppo": PPO, "sac": SAC, "td3": TD3}
#: Keys of an rl-zoo3 entry that build the environments (rl-zoo3's ``ExperimentManager`` applies them): an entry with
#: any of them is not the algorithm alone, so :func:`zoo_hyperparameters` refuses it
ZOO_ENV_KEYS = ("normalize", "frame_stack", "env_wrapper", "vec_env_wrapper", "callback", "monitor_kwargs", "env_kwargs")
#: rl-zoo3's ``noise_type`` values, as SB3's action noise classes
ZOO_NOISE = {"normal": NormalActionNoise, "ornstein-uhlenbeck": OrnsteinUhlenbeckActionNoise}


def zoo_hyperparameters(algo: str, env_id: str, action_space: spaces.Space | None = None) -> dict[str, Any]:
    """
    rl-zoo3's entry for ``env_id`` in the installed rl-zoo3 package's ``hyperparams/<algo>.yml``, as constructor
    arguments of SB3's algorithm: the baseline the benchmarks and ``sb3-dqfd compare`` measure against.

    Read as rl-zoo3 reads it, without evaluating anything: ``lin_<x>`` becomes a linear schedule (it decays over the
    budget ``learn()`` is given, as with rl-zoo3's ``-n``), ``policy_kwargs`` strings are parsed as literals, a
    ``train_freq`` list becomes a tuple, and ``noise_type``/``noise_std`` become SB3's ``NormalActionNoise`` or
    ``OrnsteinUhlenbeckActionNoise`` (``mean`` 0, ``sigma`` ``noise_std`` on every action dimension). The run keys
    ``n_timesteps`` and ``policy`` are left out. Unlike rl-zoo3, an environment without an entry is an error, not
    the untuned ``default`` entry; so is an entry that builds more than one plain environment (``n_envs`` above 1,
    ``normalize``, wrappers, ...: see :data:`ZOO_ENV_KEYS`), which a caller passing the arguments alone would not
    reproduce.

    :param algo: rl-zoo3's name of the algorithm, a key of :data:`ZOO_ALGORITHMS` (``"sac"``, ``"td3"``, ``"dqn"``, ...)
    :param env_id: the environment id whose entry to read (e.g. ``"LunarLanderContinuous-v3"``)
    :param action_space: the environment's action space, for the action noise (default: read from ``gym.make(env_id)``
        when the entry has a ``noise_type``)
    :return: the keyword arguments (a new action noise object at each call)
    :raises ImportError: rl-zoo3 is not installed
    :raises ValueError: unknown ``algo``, no entry for ``env_id`` (the message lists the entries), keys the
        algorithm does not take, an unknown noise type
    """
    if algo not in ZOO_ALGORITHMS:
        raise ValueError(f"No rl-zoo3 hyperparameters for algorithm {algo!r}: use one of {sorted(ZOO_ALGORITHMS)}")
    spec = importlib.util.find_spec("rl_zoo3")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("rl-zoo3's tuned hyperparameters need rl-zoo3: pip install 'sb3-dqfd[zoo]'", name="rl_zoo3")
    path = Path(next(iter(spec.submodule_search_locations))) / "hyperparams" / f"{algo}.yml"
    content = yaml.safe_load(path.read_text())
    where = f"rl-zoo3 {importlib.metadata.version('rl_zoo3')} {path.name}"
    if env_id not in content:
        raise ValueError(
            f"{where} has no entry for {env_id!r} (entries: {sorted(key for key in content if key != 'default')}; "
            "its untuned 'default' entry is not used)"
        )
    entry = dict(content[env_id])
    algorithm_class = ZOO_ALGORITHMS[algo]
    env_keys = sorted(set(entry) & set(ZOO_ENV_KEYS))
    if env_keys or entry.get("n_envs", 1) != 1:
        raise ValueError(
            f"{where} [{env_id}] builds its environments with {env_keys or ['n_envs: ' + str(entry['n_envs'])]}: "
            f"not reproduced by {algorithm_class.__name__}'s arguments alone"
        )
    noise_type, noise_std = entry.pop("noise_type", None), entry.pop("noise_std", None)
    unknown = sorted(set(entry) - constructor_keys(algorithm_class) - set(RUN_KEYS))
    if unknown:
        raise ValueError(f"{where} [{env_id}]: keys {unknown} are not arguments of {algorithm_class.__name__}")
    kwargs = {
        key: parse_hyperparameter(key, value, f"{where} [{env_id}]") for key, value in entry.items() if key not in RUN_KEYS
    }
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    if noise_type is not None:
        noise_class = ZOO_NOISE.get(str(noise_type).strip())
        if noise_class is None:
            raise ValueError(f"{where} [{env_id}]: unknown noise_type {noise_type!r} (known: {sorted(ZOO_NOISE)})")
        if action_space is None:
            with gym.make(env_id) as env:
                action_space = env.action_space
        if not isinstance(action_space, spaces.Box):
            raise TypeError(f"{where} [{env_id}]: action noise needs a Box action space, got {action_space}")
        n_actions = int(np.prod(action_space.shape))
        kwargs["action_noise"] = noise_class(mean=np.zeros(n_actions), sigma=float(noise_std) * np.ones(n_actions))
    return kwargs
