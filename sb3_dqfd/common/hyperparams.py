"""Hyperparameter files in rl-zoo3's YAML format, read without ``eval``."""

import ast
import difflib
import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
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
