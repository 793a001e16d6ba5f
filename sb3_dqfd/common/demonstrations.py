"""
Expert demonstrations: the canonical validated form (:class:`Episode`, :class:`Demonstrations`), recording them
from an expert (:func:`record_demonstrations`) and reading or writing them (:func:`save_demonstrations`,
:func:`load_demonstrations`).

Formats read by :func:`load_demonstrations`, detected from the content:

- our ``.npz`` (written by :func:`save_demonstrations`, loads with ``allow_pickle=False``);
- a Stable-Baselines2 ``ExpertDataset`` ``.npz`` (keys ``obs``, ``actions``, ``rewards``, ``episode_starts``,
  ``episode_returns``): it holds no observation after the last step of an episode, so that step is dropped and
  the episode is marked truncated (it bootstraps from its last kept observation), with a warning;
- a Minari dataset (a ``minari.MinariDataset`` or the id of a dataset stored locally; nothing is downloaded);
- a sequence of imitation ``Trajectory``/``TrajectoryWithRew`` (duck-typed: ``obs``, ``acts``, ``rews``,
  ``infos``, ``terminal``);
- a list of episode dicts with the keys ``observations``, ``actions``, ``rewards``, ``terminated``, ``truncated``;
- a :class:`Demonstrations`.

Only array spaces are supported (``Box``, ``Discrete``, ``MultiDiscrete``, ``MultiBinary``), not ``Dict``/``Tuple``.
"""

import inspect
import itertools
import json
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, SupportsFloat, overload

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from sb3_dqfd.common.experts import get_expert

#: Value of the ``format`` entry of the ``.npz`` files written by :func:`save_demonstrations`.
NPZ_FORMAT = "sb3_dqfd.demonstrations"
#: Version of that layout; :func:`load_demonstrations` reads this version and older ones.
NPZ_FORMAT_VERSION = 1

_SB2_KEYS = ("obs", "actions", "rewards", "episode_starts", "episode_returns")
_EPISODE_DICT_KEYS = ("observations", "actions", "rewards", "terminated", "truncated")
_NUMERIC_KINDS = "biuf"  # bool, signed int, unsigned int, float


class DemonstrationsNotFoundError(FileNotFoundError, ValueError):
    """
    A demonstrations path that does not exist.

    Both a ``FileNotFoundError`` (what ``open`` and ``np.load`` raise) and a ``ValueError`` (what every other bad
    demonstrations input raises), so either ``except`` catches it.
    """


@dataclass(frozen=True)
class Episode:
    """
    One expert episode, laid out as Minari does.

    :param observations: observations, shape ``[T + 1, *obs_shape]``: the first one is the reset observation,
        the last one the observation the episode ended on (needed to bootstrap a truncated end)
    :param actions: actions taken, shape ``[T, *action_shape]``
    :param rewards: rewards received, shape ``[T]``
    :param terminated: the episode ended in a terminal state: its last transition does not bootstrap
    :param truncated: the episode was cut (time limit or end of recording): its last transition bootstraps
        from ``observations[-1]``
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool
    truncated: bool

    def __post_init__(self) -> None:
        # Accept array-likes (lists of per-step observations, ...): store them as arrays, dtypes untouched.
        for name in ("observations", "actions", "rewards"):
            try:
                value = np.asarray(getattr(self, name))
            except ValueError as error:  # ragged lists
                raise ValueError(f"{name} cannot be stacked into one array (steps of different shapes?): {error}") from None
            if value.dtype.kind not in _NUMERIC_KINDS:
                raise TypeError(
                    f"{name} must be a numeric array, got dtype {value.dtype} "
                    "(dict and tuple observations or actions are not supported)"
                )
            if value.ndim == 0:
                raise ValueError(f"{name} must have one entry per step, got a scalar")
            object.__setattr__(self, name, value)
        for name in ("terminated", "truncated"):
            if np.ndim(getattr(self, name)) != 0:
                raise ValueError(f"{name} must be a single bool for the whole episode, got {getattr(self, name)!r}")
            object.__setattr__(self, name, bool(getattr(self, name)))
        n_steps = len(self.actions)
        if n_steps == 0:
            raise ValueError("An episode must hold at least one transition (got 0 actions)")
        if len(self.observations) != n_steps + 1:
            raise ValueError(
                f"An episode of {n_steps} actions needs {n_steps + 1} observations (T + 1), got {len(self.observations)}"
            )
        if self.rewards.shape != (n_steps,):
            raise ValueError(f"An episode of {n_steps} actions needs rewards of shape ({n_steps},), got {self.rewards.shape}")
        if self.terminated and self.truncated:
            raise ValueError("An episode cannot end by both termination and truncation")

    def __len__(self) -> int:
        """Number of transitions ``T``."""
        return len(self.actions)

    @property
    def episode_return(self) -> float:
        """Undiscounted sum of the rewards."""
        return float(self.rewards.sum())


class Transitions(NamedTuple):
    """
    All transitions of a :class:`Demonstrations`, episodes laid end to end (flat, in episode order).

    ``N`` is the number of transitions. ``terminations[i]`` is True only on the last step of an episode that ended by
    termination (no bootstrap); ``episode_ends[i]`` is True on the last step of every episode (terminated or not), so
    an n-step window starting in one episode never reads into the next.
    """

    observations: np.ndarray  # [N, *obs_shape]
    next_observations: np.ndarray  # [N, *obs_shape]
    actions: np.ndarray  # [N, *action_shape]
    rewards: np.ndarray  # [N], float32
    terminations: np.ndarray  # [N], bool
    episode_ends: np.ndarray  # [N], bool


class Demonstrations(Sequence[Episode]):
    """
    A validated collection of expert episodes.

    Build one with :func:`sb3_dqfd.load_demonstrations` (any supported format) or
    :func:`sb3_dqfd.record_demonstrations`. On construction every episode is checked (no NaN or inf in
    observations, actions or rewards; the same observation and action shape in every episode) and, when the spaces
    are given, conformed to them (see :meth:`validate`): Discrete actions become ``int64`` of shape ``[T]`` (an
    ``[T, 1]`` column is accepted), Box actions ``float32``, observations take the space's dtype, rewards stay
    ``float32``/``float64`` (other dtypes become ``float64``).

    :param episodes: the episodes, at least one
    :param observation_space: the observation space the episodes were recorded in, if known
    :param action_space: the action space the episodes were recorded in, if known
    """

    def __init__(
        self,
        episodes: Sequence[Episode],
        observation_space: spaces.Space | None = None,
        action_space: spaces.Space | None = None,
    ) -> None:
        episodes = tuple(episodes)
        if len(episodes) == 0:
            raise ValueError("Demonstrations must hold at least one episode (got none)")
        checked = []
        for index, episode in enumerate(episodes):
            if not isinstance(episode, Episode):
                raise TypeError(f"episode {index}: expected an Episode, got {type(episode).__name__}")
            checked.append(_conform_episode(episode, index, episodes[0], observation_space, action_space))
        self.episodes: tuple[Episode, ...] = tuple(checked)
        self.observation_space = observation_space
        self.action_space = action_space

    def validate(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        """
        Check that every episode fits the given spaces; raise otherwise.

        Observations must have the space's shape and a dtype that converts to the space's dtype without changing
        kind (float data for an integer space is refused; integer observations must lie in the space's bounds).
        Actions must have the space's shape (a trailing axis of size 1 is accepted for Discrete), be integers for
        Discrete/MultiDiscrete/MultiBinary and lie inside the space (bounds included for Box). Float observation
        values are not checked against Box bounds. To get a copy conformed to the spaces (dtypes normalized), use
        ``Demonstrations(demos.episodes, observation_space, action_space)`` or
        ``load_demonstrations(demos, env=...)``.

        :param observation_space: the observation space the episodes must fit
        :param action_space: the action space the episodes must fit
        :raises TypeError: a space type is not supported, or a dtype does not fit
        :raises ValueError: a shape or a value does not fit; the message names the episode and step
        """
        for index, episode in enumerate(self.episodes):
            _conform_episode(episode, index, self.episodes[0], observation_space, action_space)

    def __len__(self) -> int:
        """Number of episodes."""
        return len(self.episodes)

    @overload
    def __getitem__(self, index: int) -> Episode: ...

    @overload
    def __getitem__(self, index: slice) -> "Demonstrations": ...

    def __getitem__(self, index: int | slice) -> "Episode | Demonstrations":
        if isinstance(index, slice):
            return Demonstrations(self.episodes[index], self.observation_space, self.action_space)
        return self.episodes[index]

    def __iter__(self) -> Iterator[Episode]:
        return iter(self.episodes)

    @property
    def n_transitions(self) -> int:
        """Total number of transitions over all episodes."""
        return sum(len(episode) for episode in self.episodes)

    @property
    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode, shape ``[n_episodes]``."""
        return np.array([episode.episode_return for episode in self.episodes], dtype=np.float64)

    @property
    def episode_lengths(self) -> np.ndarray:
        """Number of transitions of each episode, shape ``[n_episodes]``."""
        return np.array([len(episode) for episode in self.episodes], dtype=np.int64)

    def to_transitions(self) -> Transitions:
        """
        Lay the episodes end to end as flat transition arrays, the form replay buffers consume.

        :return: the transitions, in episode order
        """
        ends = [np.zeros(len(episode), dtype=bool) for episode in self.episodes]
        terminations = [np.zeros(len(episode), dtype=bool) for episode in self.episodes]
        for episode, end, termination in zip(self.episodes, ends, terminations, strict=True):
            end[-1] = True
            termination[-1] = episode.terminated
        return Transitions(
            observations=np.concatenate([episode.observations[:-1] for episode in self.episodes]),
            next_observations=np.concatenate([episode.observations[1:] for episode in self.episodes]),
            actions=np.concatenate([episode.actions for episode in self.episodes]),
            rewards=np.concatenate([episode.rewards for episode in self.episodes]).astype(np.float32),
            terminations=np.concatenate(terminations),
            episode_ends=np.concatenate(ends),
        )

    def __repr__(self) -> str:
        returns = self.episode_returns
        lines = [
            f"Demonstrations: {len(self)} episodes, {self.n_transitions} transitions",
            f"  return: mean {returns.mean():.2f}, min {returns.min():.2f}, max {returns.max():.2f}",
            f"  length: mean {self.episode_lengths.mean():.1f}",
            f"  ends: {sum(e.terminated for e in self)} terminated, {sum(e.truncated for e in self)} truncated",
            f"  observation space: {self.observation_space}",
            f"  action space: {self.action_space}",
        ]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------------
# Validation and dtype normalization
# --------------------------------------------------------------------------------------------------------------------


def _first_bad_step(bad: np.ndarray) -> int:
    """Index of the first step flagged in ``bad`` (shape ``[T, ...]``), any extra axes reduced."""
    return int(np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[0])


def _check_finite(values: np.ndarray, name: str, where: str) -> None:
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values)
        if bad.any():
            step = _first_bad_step(bad)
            raise ValueError(f"{where}, step {step}: {name} contain NaN or inf ({values[step]!r})")


def _conform_episode(
    episode: Episode,
    index: int,
    reference: Episode,
    observation_space: spaces.Space | None,
    action_space: spaces.Space | None,
) -> Episode:
    """
    Check one episode and return it with its arrays converted to the canonical dtypes.

    :param episode: the episode to check
    :param index: its position, for error messages
    :param reference: the first episode: without spaces, every episode must have its per-step shapes
    :param observation_space: the observation space to conform to, if known
    :param action_space: the action space to conform to, if known
    :return: the conformed episode
    """
    where = f"episode {index}"
    for name in ("observations", "actions", "rewards"):
        _check_finite(getattr(episode, name), name, where)
    observations, actions = episode.observations, episode.actions
    rewards = episode.rewards if episode.rewards.dtype in (np.float32, np.float64) else episode.rewards.astype(np.float64)
    if observation_space is not None:
        observations = _conform_values(observations, observation_space, "observations", where)
    elif observations.shape[1:] != reference.observations.shape[1:]:
        raise ValueError(
            f"{where}: observations have shape {observations.shape[1:]} per step, "
            f"episode 0 has {reference.observations.shape[1:]}"
        )
    if action_space is not None:
        actions = _conform_values(actions, action_space, "actions", where)
    elif actions.shape[1:] != reference.actions.shape[1:]:
        raise ValueError(
            f"{where}: actions have shape {actions.shape[1:]} per step, episode 0 has {reference.actions.shape[1:]}"
        )
    return replace(episode, observations=observations, actions=actions, rewards=rewards)


def _conform_values(values: np.ndarray, space: spaces.Space, name: str, where: str) -> np.ndarray:
    """
    Check per-step ``values`` (shape ``[T, ...]``) against ``space`` and convert them to the canonical dtype.

    :param values: observations or actions of one episode
    :param space: the space they must belong to
    :param name: ``"observations"`` or ``"actions"``, for messages
    :param where: the episode, for messages
    :return: the converted values
    """
    if not isinstance(space, spaces.Box | spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary):
        raise TypeError(
            f"{type(space).__name__} {name[:-1]} spaces are not supported (only Box, Discrete, MultiDiscrete and MultiBinary)"
        )
    if isinstance(space, spaces.Discrete) and values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]  # SB2 and others store Discrete values as a [T, 1] column
    if values.shape[1:] != space.shape:
        raise ValueError(f"{where}: {name} have shape {values.shape[1:]} per step, but {space} expects {space.shape}")
    if isinstance(space, spaces.Box):
        return _conform_box(values, space, name, where)
    if values.dtype.kind not in "biu":
        raise TypeError(f"{where}: {name} must be integers for {space}, got dtype {values.dtype}")
    if isinstance(space, spaces.Discrete):
        low, high = np.asarray(space.start), np.asarray(space.start + space.n - 1)
    elif isinstance(space, spaces.MultiDiscrete):
        low, high = space.start, space.start + space.nvec - 1
    else:
        low, high = np.zeros(space.shape, dtype=np.int64), np.ones(space.shape, dtype=np.int64)
    _check_bounds(values, low, high, space, name, where)
    # Discrete spaces keep their values as int64 in gymnasium and in SB3's replay buffers
    return values.astype(np.int64 if isinstance(space, spaces.Discrete) else space.dtype)


def _conform_box(values: np.ndarray, space: spaces.Box, name: str, where: str) -> np.ndarray:
    target = np.dtype(space.dtype)
    if name == "actions" and target.kind == "f":
        target = np.dtype(np.float32)  # as SB3's replay buffers store them
    # Any numeric data fits a float space; only integers (bounds-checked below) fit an integer space
    if values.dtype.kind not in ("biuf" if target.kind == "f" else "biu"):
        raise TypeError(f"{where}: {name} of dtype {values.dtype} do not fit {space} (dtype {space.dtype})")
    # Actions must be inside the space; so must integer observations (a cast would wrap them around).
    # Float observations are not bounds-checked: nothing downstream relies on their bounds.
    if name == "actions" or target.kind in "iu":
        _check_bounds(values, space.low, space.high, space, name, where)
    return values.astype(target)


def _check_bounds(values: np.ndarray, low: np.ndarray, high: np.ndarray, space: spaces.Space, name: str, where: str) -> None:
    bad = (values < low) | (values > high)
    if bad.any():
        step = _first_bad_step(bad)
        raise ValueError(f"{where}, step {step}: {name[:-1]} {values[step].tolist()} is outside {space}")


# --------------------------------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------------------------------


def _as_policy(expert: Any, deterministic: bool) -> Callable[[Any, bool], Any]:
    """
    Turn an expert into ``act(observation, episode_start) -> action``.

    :param expert: an object with ``predict`` (SB3 model), a callable ``obs -> action`` or a built-in expert's name
    :param deterministic: passed to ``predict``
    :return: the acting function
    """
    if isinstance(expert, str):
        expert = get_expert(expert)
    if hasattr(expert, "predict"):
        # Recurrent models (RecurrentPPO, TransformerA2C) need their state carried between steps
        if "state" in inspect.signature(expert.predict).parameters:
            state: Any = None

            def act(observation: Any, episode_start: bool) -> Any:
                nonlocal state
                action, state = expert.predict(
                    observation, state=state, episode_start=np.array([episode_start]), deterministic=deterministic
                )
                return action

            return act
        return lambda observation, episode_start: expert.predict(observation, deterministic=deterministic)[0]
    if callable(expert):
        return lambda observation, episode_start: expert(observation)
    raise TypeError(
        f"expert must be an SB3 model (with .predict), a callable obs -> action or a built-in expert's name, "
        f"got {type(expert).__name__}"
    )


def record_demonstrations(
    expert: Any,
    env: str | gym.Env,
    n_episodes: int,
    seed: int | None = None,
    deterministic: bool = True,
    progress_bar: bool = False,
) -> Demonstrations:
    """
    Run an expert for ``n_episodes`` full episodes and record them.

    Episodes end when the environment terminates or truncates them (``gym.make`` adds the registered
    ``TimeLimit``); a time-limit end is recorded as truncated, so it bootstraps. An episode that both terminates
    and truncates on the same step is recorded as terminated. Box actions are clipped to the action space before the
    step, as SB3 does in its rollouts, so the stored action is the one the environment executed.

    Seeding: with ``seed`` given, episode ``i`` starts from ``env.reset(seed=seed + i)``, so each episode is
    reproducible on its own and the first ``k`` episodes do not depend on ``n_episodes``. The expert's own
    randomness (``deterministic=False``) is not seeded here: seed the model (``model.set_random_seed``) yourself.

    :param expert: an SB3 model (anything with ``.predict(obs, deterministic=...)``; recurrent models get their
        state and ``episode_start``), a callable ``obs -> action``, or the name of a built-in expert
        (see :func:`sb3_dqfd.common.experts.get_expert`)
    :param env: an environment id (made with ``gym.make`` and closed afterwards) or a single ``gymnasium.Env``
        (left open). VecEnvs are refused: they reset on their own and hide the final observation.
    :param n_episodes: number of episodes to record, at least 1
    :param seed: seed of the first reset (then ``seed + i``); ``None`` leaves the environment unseeded
    :param deterministic: passed to the model's ``predict``
    :param progress_bar: show a progress bar over episodes (tqdm + rich, as SB3's ``learn``)
    :return: the recorded demonstrations, with the environment's spaces
    """
    if isinstance(env, VecEnv):
        raise TypeError(
            f"record_demonstrations takes a single environment (an id or a gymnasium.Env), got a VecEnv of {env.num_envs} "
            "envs: VecEnvs reset automatically and keep the final observation in infos"
        )
    if not isinstance(env, str | gym.Env):
        raise TypeError(f"env must be an environment id or a gymnasium.Env, got {type(env).__name__}")
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int | np.integer) or n_episodes < 1:
        raise ValueError(f"n_episodes must be a positive integer, got {n_episodes!r}")
    act = _as_policy(expert, deterministic)
    environment = gym.make(env) if isinstance(env, str) else env
    episode_indices: Any = range(n_episodes)
    if progress_bar:
        from tqdm import TqdmExperimentalWarning

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=TqdmExperimentalWarning)
            from tqdm.rich import tqdm

            episode_indices = tqdm(episode_indices, unit="episode")
    try:
        episodes = [
            _record_episode(act, environment, index, None if seed is None else seed + index) for index in episode_indices
        ]
    finally:
        if isinstance(env, str):
            environment.close()
    return Demonstrations(episodes, environment.observation_space, environment.action_space)


def _record_episode(act: Callable[[Any, bool], Any], env: gym.Env, index: int, seed: int | None) -> Episode:
    observation, _ = env.reset(seed=seed)
    observations: list[Any] = [observation]
    actions: list[Any] = []
    rewards: list[SupportsFloat] = []
    terminated = truncated = False
    while not (terminated or truncated):
        action = act(observation, len(actions) == 0)
        if isinstance(env.action_space, spaces.Box):
            # Step with (and store) the action the environment can execute, as SB3's rollouts do
            action = np.clip(action, env.action_space.low, env.action_space.high)
        try:
            observation, reward, terminated, truncated, _ = env.step(action)
        except AssertionError as error:  # gymnasium's classic-control envs assert that the action is valid
            raise ValueError(
                f"episode {index}, step {len(actions)}: the environment rejected the expert's action {action!r}: {error}"
            ) from error
        observations.append(observation)
        actions.append(action)
        rewards.append(reward)
    return Episode(np.array(observations), np.array(actions), np.array(rewards), terminated, truncated and not terminated)


# --------------------------------------------------------------------------------------------------------------------
# Our .npz format
# --------------------------------------------------------------------------------------------------------------------


def _space_to_arrays(space: spaces.Space, prefix: str) -> dict[str, np.ndarray]:
    """Describe a space with plain arrays: a JSON string (type, dtype, n, ...) and the array attributes."""
    description: dict[str, Any] = {"type": type(space).__name__, "dtype": str(space.dtype)}
    arrays: dict[str, np.ndarray] = {}
    if isinstance(space, spaces.Box):
        arrays = {f"{prefix}_low": space.low, f"{prefix}_high": space.high}
    elif isinstance(space, spaces.Discrete):
        description |= {"n": int(space.n), "start": int(space.start)}
    elif isinstance(space, spaces.MultiDiscrete):
        arrays = {f"{prefix}_nvec": space.nvec, f"{prefix}_start": space.start}
    elif isinstance(space, spaces.MultiBinary):
        description["n"] = np.asarray(space.n).tolist()
    else:
        raise TypeError(f"cannot save a {type(space).__name__} space (only Box, Discrete, MultiDiscrete and MultiBinary)")
    return {prefix: np.array(json.dumps(description)), **arrays}


def _space_from_arrays(data: Mapping[str, np.ndarray], prefix: str, where: str) -> spaces.Space | None:
    if prefix not in data:
        return None
    try:
        description = json.loads(str(data[prefix]))
        kind, dtype = description["type"], description["dtype"]
        if kind == "Box":
            return spaces.Box(data[f"{prefix}_low"], data[f"{prefix}_high"], dtype=dtype)
        if kind == "Discrete":
            return spaces.Discrete(description["n"], start=description["start"])
        if kind == "MultiDiscrete":
            return spaces.MultiDiscrete(data[f"{prefix}_nvec"], dtype=dtype, start=data[f"{prefix}_start"])
        if kind == "MultiBinary":
            return spaces.MultiBinary(description["n"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{where}: key {prefix!r}: the space description cannot be read ({error!r})") from None
    raise ValueError(f"{where}: key {prefix!r}: unknown space type {kind!r}")


def save_demonstrations(demos: Demonstrations, path: str | os.PathLike) -> None:
    """
    Write demonstrations to a compressed ``.npz`` file that loads with ``np.load(path, allow_pickle=False)``.

    The file is written at ``path`` exactly (no suffix added); missing parent folders are created, as SB3's
    ``save`` does. Layout (format version 1): ``format`` and
    ``format_version`` (markers); ``observations`` ``[sum(T + 1), *obs_shape]``, ``actions`` ``[sum(T), ...]``
    and ``rewards`` ``[sum(T)]``, episodes end to end; ``episode_lengths`` (``T`` of each episode),
    ``terminated`` and ``truncated`` (one flag per episode); the spaces, when known, as a JSON string under
    ``observation_space``/``action_space`` plus their arrays (``<space>_low``, ``<space>_high`` for Box,
    ``<space>_nvec``, ``<space>_start`` for MultiDiscrete).

    :param demos: the demonstrations to write
    :param path: where to write them
    """
    if not isinstance(demos, Demonstrations):
        raise TypeError(f"save_demonstrations takes a Demonstrations, got {type(demos).__name__}")
    arrays: dict[str, np.ndarray] = {
        "format": np.array(NPZ_FORMAT),
        "format_version": np.array(NPZ_FORMAT_VERSION),
        "observations": np.concatenate([episode.observations for episode in demos]),
        "actions": np.concatenate([episode.actions for episode in demos]),
        "rewards": np.concatenate([episode.rewards for episode in demos]),
        "episode_lengths": demos.episode_lengths,
        "terminated": np.array([episode.terminated for episode in demos]),
        "truncated": np.array([episode.truncated for episode in demos]),
    }
    if demos.observation_space is not None:
        arrays |= _space_to_arrays(demos.observation_space, "observation_space")
    if demos.action_space is not None:
        arrays |= _space_to_arrays(demos.action_space, "action_space")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Through a file handle so that numpy does not append ".npz" to the path
    with open(path, "wb") as file:
        np.savez_compressed(file, **arrays)  # type: ignore[arg-type]  # numpy's stub mistypes **kwds


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` without pickle; refuse anything else with a clear message."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a .npz archive (nor a Minari dataset): the format cannot be recognised")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {}
            for key in archive.files:
                try:
                    arrays[key] = archive[key]
                except ValueError as error:
                    if "allow_pickle" not in str(error):  # numpy: "Object arrays cannot be loaded when allow_pickle=False"
                        raise
                    raise ValueError(
                        f"{path}: key {key!r} holds Python objects that would need pickle to load; "
                        "refusing to unpickle (demonstration files must hold plain numeric arrays)"
                    ) from error
                if not isinstance(arrays[key], np.ndarray):  # numpy returns the raw bytes of non-.npy members
                    raise ValueError(f"{path}: member {key!r} of the archive is not a numpy array")
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"{path}: the .npz archive cannot be read ({error})") from error
    return arrays


def _require(data: Mapping[str, Any], keys: Sequence[str], where: str, layout: str) -> None:
    missing = [key for key in keys if key not in data]
    if missing:
        raise ValueError(
            f"{where}: missing key(s) {missing} for the {layout} layout (expected {list(keys)}, found {sorted(data)})"
        )


def _split_points(lengths: np.ndarray) -> np.ndarray:
    """Where to cut a flat array into consecutive parts of the given lengths."""
    return np.cumsum(lengths)[:-1]


def _episodes_from_npz(data: Mapping[str, np.ndarray], where: str) -> list[Episode]:
    keys = ("format_version", "observations", "actions", "rewards", "episode_lengths", "terminated", "truncated")
    _require(data, keys, where, "sb3_dqfd")
    version = data["format_version"]
    if version.shape != () or version.dtype.kind not in "iu" or not 1 <= version <= NPZ_FORMAT_VERSION:
        raise ValueError(
            f"{where}: format_version {version.tolist()} is not supported (this version reads 1..{NPZ_FORMAT_VERSION})"
        )
    lengths = data["episode_lengths"]
    n_episodes = len(lengths)
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu" or n_episodes == 0:
        raise ValueError(f"{where}: episode_lengths must be a non-empty 1-D integer array, got {lengths!r}")
    if (lengths < 1).any():
        raise ValueError(f"{where}: episode {int(np.argmax(lengths < 1))} has length {lengths.min()}: episodes need >= 1 step")
    expected = {
        "observations": int(lengths.sum()) + n_episodes,
        "actions": int(lengths.sum()),
        "rewards": int(lengths.sum()),
        "terminated": n_episodes,
        "truncated": n_episodes,
    }
    for key, length in expected.items():
        if data[key].ndim == 0 or len(data[key]) != length:
            raise ValueError(
                f"{where}: key {key!r} has {len(np.atleast_1d(data[key]))} entries, episode_lengths imply {length}"
            )
    observations = np.split(data["observations"], _split_points(lengths + 1))
    actions = np.split(data["actions"], _split_points(lengths))
    rewards = np.split(data["rewards"], _split_points(lengths))
    return [
        _episode(where, index, observations[index], actions[index], rewards[index], terminated, truncated)
        for index, (terminated, truncated) in enumerate(zip(data["terminated"], data["truncated"], strict=True))
    ]


def _episode(
    where: str, index: int, observations: Any, actions: Any, rewards: Any, terminated: Any, truncated: Any
) -> Episode:
    """Build an Episode, naming the source and episode in any error."""
    with _located(f"{where}: episode {index}"):
        return Episode(observations, actions, rewards, terminated, truncated)


@contextmanager
def _located(where: str) -> Iterator[None]:
    """Prefix the message of a ValueError/TypeError raised inside with a location (file, episode)."""
    try:
        yield
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error
    except TypeError as error:
        raise TypeError(f"{where}: {error}") from error


# --------------------------------------------------------------------------------------------------------------------
# Other formats
# --------------------------------------------------------------------------------------------------------------------


def _episodes_from_sb2(data: Mapping[str, np.ndarray], where: str) -> list[Episode]:
    """
    Rebuild episodes from a Stable-Baselines2 ``ExpertDataset`` archive.

    SB2 stores ``obs[i]`` the observation acted on at step ``i``, and ``episode_starts[i]`` True on the first step
    of each episode. Inside an episode the next observation of step ``i`` is ``obs[i + 1]``; after the last step of
    an episode SB2 kept nothing (the environment was reset), and its ``done`` did not tell termination from a time
    limit. Rather than invent a next observation or guess the kind of end, the last step of every episode is
    dropped and the episode is marked truncated: it bootstraps from its last kept observation, which is exact.
    """
    _require(data, _SB2_KEYS[:4], where, "Stable-Baselines2 ExpertDataset")
    obs, actions, rewards, starts = (data[key] for key in _SB2_KEYS[:4])
    for key in _SB2_KEYS[:4]:
        if data[key].ndim == 0 or len(data[key]) != len(obs):
            raise ValueError(f"{where}: key {key!r} has {len(np.atleast_1d(data[key]))} entries but 'obs' has {len(obs)}")
    if len(obs) == 0:
        raise ValueError(f"{where}: the dataset is empty (0 steps)")
    if starts.ndim != 1 or not starts[0]:
        raise ValueError(f"{where}: key 'episode_starts' must be 1-D and True on step 0")
    if actions.dtype.kind in "iu" and actions.ndim == 2 and actions.shape[1] == 1:
        actions = actions[:, 0]  # SB2 wrote Discrete actions as an [N, 1] column
    bounds = [*np.flatnonzero(starts), len(obs)]
    n_episodes = len(bounds) - 1
    if "episode_returns" in data and len(np.atleast_1d(data["episode_returns"])) != n_episodes:
        raise ValueError(
            f"{where}: key 'episode_returns' has {len(np.atleast_1d(data['episode_returns']))} entries "
            f"but 'episode_starts' marks {n_episodes} episodes"
        )
    episodes, n_single = [], 0
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        if end - start < 2:
            n_single += 1  # one step and no next observation: no transition at all
            continue
        episodes.append(
            _episode(where, index, obs[start:end], actions[start : end - 1], rewards[start : end - 1], False, True)
        )
    warnings.warn(
        f"{where}: Stable-Baselines2 datasets hold no observation after the last step of an episode and do not say "
        f"whether it ended by termination or time limit: the last step of each of the {n_episodes} episodes was "
        f"dropped and the episodes are marked truncated (they bootstrap from their last kept observation)"
        + (f"; {n_single} one-step episodes were dropped entirely" if n_single else ""),
        stacklevel=3,
    )
    if not episodes:
        raise ValueError(f"{where}: no episode of at least 2 steps: nothing left once the last steps are dropped")
    return episodes


def _episodes_from_minari(dataset: Any, where: str) -> list[Episode]:
    episodes = []
    for index, data in enumerate(dataset.iterate_episodes()):
        if isinstance(data.observations, dict | tuple) or isinstance(data.actions, dict | tuple):
            raise TypeError(f"{where}: episode {index}: dict/tuple observations or actions are not supported")
        # A step both terminated and truncated is a termination (no bootstrap); truncations need no reading:
        # an end that is not a termination is a time limit or a cut collection, and both bootstrap.
        terminations = np.asarray(data.terminations, dtype=bool)
        if len(terminations) and terminations[:-1].any():
            raise ValueError(f"{where}: episode {index}, step {int(np.argmax(terminations))}: terminates before the last step")
        terminated = bool(len(terminations) and terminations[-1])
        episodes.append(_episode(where, index, data.observations, data.actions, data.rewards, terminated, not terminated))
    return episodes


def _episodes_from_trajectories(trajectories: Sequence[Any], where: str) -> list[Episode]:
    """imitation trajectories: ``terminal`` is True on any end; truncation is read from the last info if present."""
    episodes, n_unknown = [], 0
    for index, trajectory in enumerate(trajectories):
        rewards = getattr(trajectory, "rews", None)
        if rewards is None:
            raise ValueError(f"{where}: trajectory {index} has no rewards ('rews'): DQfD needs rewards, use TrajectoryWithRew")
        terminated = truncated = False
        if not getattr(trajectory, "terminal", True):
            truncated = True  # cut short before its end: bootstrap
        else:
            infos = getattr(trajectory, "infos", None)
            last_info = infos[-1] if infos is not None and len(infos) > 0 else None
            flag = None
            if isinstance(last_info, Mapping):
                flag = last_info.get("TimeLimit.truncated", last_info.get("truncated"))
            if flag is None:
                n_unknown += 1
            truncated = bool(flag)
            terminated = not truncated
        episodes.append(_episode(where, index, trajectory.obs, trajectory.acts, rewards, terminated, truncated))
    if n_unknown:
        warnings.warn(
            f"{where}: imitation trajectories mark every end as terminal; {n_unknown} of {len(episodes)} had no "
            "'TimeLimit.truncated' or 'truncated' entry in their last info and were taken as terminated: if they ended "
            "by a time limit, that truncation is lost and their last transition will not bootstrap",
            stacklevel=3,
        )
    return episodes


def _episodes_from_dicts(episode_dicts: Sequence[Any], where: str) -> list[Episode]:
    episodes = []
    for index, episode in enumerate(episode_dicts):
        if not isinstance(episode, Mapping):
            raise TypeError(f"{where}: item {index} is a {type(episode).__name__}, expected an episode dict like item 0")
        _require(episode, _EPISODE_DICT_KEYS, f"{where}: episode {index}", "episode dict")
        episodes.append(_episode(where, index, *(episode[key] for key in _EPISODE_DICT_KEYS)))
    return episodes


def _env_spaces(env: str | gym.Env | VecEnv) -> tuple[spaces.Space, spaces.Space]:
    if isinstance(env, str):
        environment = gym.make(env)
        environment.close()
        return environment.observation_space, environment.action_space
    if isinstance(env, gym.Env | VecEnv):
        return env.observation_space, env.action_space
    raise TypeError(f"env must be an environment id, a gymnasium.Env or a VecEnv, got {type(env).__name__}")


def _read_path(path: Path, where: str) -> tuple[list[Episode], spaces.Space | None, spaces.Space | None]:
    if path.is_file():
        data = _read_npz(path)
        if "format" in data:
            if str(data["format"]) != NPZ_FORMAT:
                raise ValueError(f"{where}: unknown format marker {str(data['format'])!r} (expected {NPZ_FORMAT!r})")
            return (
                _episodes_from_npz(data, where),
                _space_from_arrays(data, "observation_space", where),
                _space_from_arrays(data, "action_space", where),
            )
        if any(key in data for key in _SB2_KEYS):
            return _episodes_from_sb2(data, where), None, None
        raise ValueError(
            f"{where}: unknown .npz layout with keys {sorted(data)}: expected an sb3_dqfd file (key 'format') "
            f"or a Stable-Baselines2 ExpertDataset (keys {list(_SB2_KEYS)})"
        )
    if path.exists():
        raise ValueError(f"{where}: not a file (a directory?): expected a .npz file or a local Minari dataset id")
    if path.suffix.lower() == ".npz":
        raise DemonstrationsNotFoundError(f"{where}: no such file")
    try:
        import minari
    except ImportError:
        raise DemonstrationsNotFoundError(
            f"{where}: no such file (minari is not installed, so it was not tried as a Minari dataset id)"
        ) from None
    try:
        dataset = minari.load_dataset(str(path), download=False)
    except (FileNotFoundError, ValueError) as error:
        message = f"{where}: no such file, nor a local Minari dataset with that id ({error})"
        raise DemonstrationsNotFoundError(message) from None
    return _episodes_from_minari(dataset, where), dataset.observation_space, dataset.action_space


def load_demonstrations(source: Any, env: str | gym.Env | VecEnv | None = None) -> Demonstrations:
    """
    Load demonstrations from any supported format (detected, see the module docstring) and validate them.

    ``source`` may be a path to our ``.npz`` or to a Stable-Baselines2 ``ExpertDataset`` ``.npz``, the id of a
    Minari dataset stored locally (``MINARI_DATASETS_PATH``; never downloaded), a ``minari.MinariDataset``, a
    sequence of imitation ``Trajectory``/``TrajectoryWithRew`` (or anything with ``obs``, ``acts``, ``rews``,
    ``infos``, ``terminal``), a sequence of episode dicts with the keys ``observations`` ``[T + 1, ...]``,
    ``actions`` ``[T, ...]``, ``rewards`` ``[T]``, ``terminated`` and ``truncated`` (bools), a sequence of
    :class:`Episode`, or a :class:`Demonstrations`.

    :param source: the demonstrations
    :param env: an environment id, ``gymnasium.Env`` or VecEnv: when given, the episodes are validated against its
        spaces and conformed to them (dtypes normalized), and the result carries them. Without it, the spaces stored
        in the source are used if it has any (our ``.npz``, Minari, :class:`Demonstrations`).
    :return: the validated demonstrations
    :raises DemonstrationsNotFoundError: ``source`` is a path that does not exist and no local Minari dataset has that id
    :raises ValueError: malformed data (missing key, lengths that disagree, NaN/inf, values outside the spaces,
        no episode or an empty one, unknown format, arrays that would need pickle); the message says where
    :raises TypeError: a source or a dtype of the wrong kind
    """
    observation_space: spaces.Space | None
    action_space: spaces.Space | None
    where = type(source).__name__
    if isinstance(source, Demonstrations):
        episodes, observation_space, action_space = list(source.episodes), source.observation_space, source.action_space
    elif isinstance(source, str | os.PathLike):
        where = str(source)
        episodes, observation_space, action_space = _read_path(Path(source), where)
    elif hasattr(source, "iterate_episodes"):
        episodes = _episodes_from_minari(source, where)
        observation_space, action_space = source.observation_space, source.action_space
    elif isinstance(source, Sequence) and not isinstance(source, bytes):
        if len(source) == 0:
            raise ValueError("load_demonstrations: the sequence is empty: demonstrations need at least one episode")
        first, observation_space, action_space = source[0], None, None
        if isinstance(first, Mapping):
            where = "episode dicts"
            episodes = _episodes_from_dicts(source, where)
        elif hasattr(first, "obs") and hasattr(first, "acts"):
            where = "imitation trajectories"
            episodes = _episodes_from_trajectories(source, where)
        elif isinstance(first, Episode):
            episodes = list(source)
        else:
            raise TypeError(
                f"load_demonstrations: unknown sequence item {type(first).__name__}: expected episode dicts, imitation "
                "trajectories or Episode"
            )
    else:
        raise TypeError(
            f"load_demonstrations: unsupported source {type(source).__name__}: expected a path, a Minari dataset or id, "
            "a sequence of episode dicts / imitation trajectories / Episode, or a Demonstrations"
        )
    if env is not None:
        observation_space, action_space = _env_spaces(env)
    with _located(where):
        return Demonstrations(episodes, observation_space, action_space)
