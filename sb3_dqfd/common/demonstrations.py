"""
Expert demonstrations: the canonical validated form (:class:`Episode`, :class:`Demonstrations`), recording them
from an expert (:func:`record_demonstrations`) and reading or writing them (:func:`save_demonstrations`,
:func:`load_demonstrations`).

Sources read by :func:`load_demonstrations`, detected from the content:

- our ``.npz`` (written by :func:`save_demonstrations`, loads with ``allow_pickle=False``, as every ``.npz`` here; frame
  stacks recorded through ``VecFrameStack`` are stored one frame per step and stacked again, see :class:`FrameStack`);
- a Stable-Baselines2 ``ExpertDataset`` ``.npz`` (keys ``obs``, ``actions``, ``rewards``, ``episode_starts`` and,
  optional, ``episode_returns``). It holds no observation after the last step of an episode, and does not say
  whether the episode terminated or was truncated. Each end is decided in this order:

  1. an episode whose rewards do not add up to its ``episode_returns`` entry (up to float rounding) lost steps at
     its end: truncated;
  2. with ``sb2_episode_end="terminated"`` or ``"truncated"``, as it says;
  3. otherwise (``"auto"``), truncated if the ``env`` given has a time limit (``env.spec.max_episode_steps``) and the
     episode lasted exactly that many steps, terminated if not (so also when no env, or no time limit, is known).

  A one-line warning says how many episodes were taken each way and why (none when ``sb2_episode_end`` decided
  every end and nothing was dropped);
- a D4RL dataset: a mapping of flat arrays, one row per step (what ``env.get_dataset()`` returns), or an ``.npz`` of
  them: ``observations``, ``actions``, ``rewards``, ``terminals``, ``timeouts`` (flags, bool or 0/1) and, optional,
  ``next_observations``. An episode ends on a row flagged ``terminals`` (terminated; also when ``timeouts`` is set
  too) or ``timeouts`` (truncated); the rows after the last flag are an episode the recording stopped (truncated).
  Inside an episode the next observation of a row is the following row; after its last row it is that row's
  ``next_observations`` if the dataset has them, else it is missing (below);
- a Minari dataset (a ``minari.MinariDataset`` or the id of a dataset stored locally; nothing is downloaded);
- a sequence of imitation ``Trajectory``/``TrajectoryWithRew`` (duck-typed: ``obs``, ``acts``, ``rews``,
  ``infos``, ``terminal``);
- a sequence of episode dicts with the keys ``observations`` ``[T + 1, ...]``, ``actions`` ``[T, ...]``,
  ``rewards`` ``[T]`` and either ``terminated``, ``truncated`` (one bool per episode) or, Minari's ``EpisodeData``
  layout, ``terminations``, ``truncations`` (one bool per step, only the last step may be flagged);
- a sequence of :class:`Episode`, or a :class:`Demonstrations`;
- the string ``"expert:N"``: N episodes recorded with the built-in expert of ``env`` (:mod:`sb3_dqfd.common.experts`).

In Minari's layout (datasets and episode dicts) an episode whose last step is flagged in ``terminations`` is
terminated; any other end (a truncation, or no flag: a recording cut short) is truncated, and bootstraps.

When the observation after an episode's last step is missing (Stable-Baselines2, D4RL without
``next_observations``): a terminated episode keeps every step and repeats its last observation as the final one,
which is never read (no target bootstraps from a terminal transition); a truncated episode drops its last step, whose
next observation is unknown, and bootstraps from the observation of that step, which is exact. A one-step truncated
episode is then dropped entirely.

Only array spaces are supported (``Box``, ``Discrete``, ``MultiDiscrete``, ``MultiBinary``), and for observations a flat
``Dict`` of them (each key one of those; nested ``Dict``/``Tuple`` spaces are refused): dict observations are held as a
dict of arrays, one per key (see :class:`Episode`), by our ``.npz``, Minari datasets, episode dicts, :class:`Episode`
and :func:`record_demonstrations`; the Stable-Baselines2, D4RL and imitation sources hold array observations only.
Every warning of this module is one line of text and points at the caller's line outside this package.
"""

import inspect
import itertools
import json
import os
import sys
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple, SupportsFloat, cast, overload

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecFrameStack, VecTransposeImage, unwrap_vec_normalize
from stable_baselines3.common.vec_env.stacked_observations import StackedObservations

from sb3_dqfd.common.experts import EXPERTS, get_expert

#: Value of the ``format`` entry of the ``.npz`` files written by :func:`save_demonstrations`.
NPZ_FORMAT = "sb3_dqfd.demonstrations"
#: Newest version of that layout; :func:`load_demonstrations` reads this version and older ones. Version 2 added dict
#: observations, version 3 frame-stacked observations stored one frame per step (see :class:`FrameStack`);
#: :func:`save_demonstrations` writes the oldest version that holds the demonstrations (1 for one array of observations,
#: which older releases read, 2 for dict observations, 3 with frame stacking).
NPZ_FORMAT_VERSION = 3

_SB2_KEYS = ("obs", "actions", "rewards", "episode_starts", "episode_returns")
_SB2_EPISODE_ENDS = ("auto", "terminated", "truncated")
_D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
_EPISODE_DICT_KEYS = ("observations", "actions", "rewards", "terminated", "truncated")
_MINARI_EPISODE_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")
_EXPERT_PREFIX = "expert:"
_NUMERIC_KINDS = "biuf"  # bool, signed int, unsigned int, float
_ARRAY_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
_CHANNELS_ORDERS = ("first", "last")  # the stacking axes of VecFrameStack: first or last axis of an observation

#: The observations of an episode or of transitions: one array ``[steps, *obs_shape]``, or, for a ``Dict`` observation
#: space, a dict with one array ``[steps, *shape_k]`` per key (the same number of steps under every key).
ObservationArrays = np.ndarray | dict[str, np.ndarray]


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
        the last one the observation the episode ended on (needed to bootstrap a truncated end; a terminated end is
        never bootstrapped from, so sources that lack it repeat the one before, see :func:`load_demonstrations`).
        For a ``Dict`` observation space, a dict of arrays, one per key, each ``[T + 1, *shape_k]`` (stored as a plain
        ``dict``); a list of ``T + 1`` per-step dicts is stacked into that form
    :param actions: actions taken, shape ``[T, *action_shape]``
    :param rewards: rewards received, shape ``[T]``
    :param terminated: the episode ended in a terminal state: its last transition does not bootstrap
    :param truncated: the episode was cut (time limit or end of recording): its last transition bootstraps
        from ``observations[-1]``
    """

    observations: ObservationArrays
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool
    truncated: bool

    def __post_init__(self) -> None:
        # Accept array-likes (lists of per-step observations, ...): store them as arrays, dtypes untouched.
        object.__setattr__(self, "observations", _observation_arrays(self.observations))
        for name, note in (("actions", " (dict and tuple actions are not supported)"), ("rewards", "")):
            object.__setattr__(self, name, _numeric_array(getattr(self, name), name, note))
        for name in ("terminated", "truncated"):
            if np.ndim(getattr(self, name)) != 0:
                raise ValueError(f"{name} must be a single bool for the whole episode, got {getattr(self, name)!r}")
            object.__setattr__(self, name, bool(getattr(self, name)))
        n_steps = len(self.actions)
        if n_steps == 0:
            raise ValueError("An episode must hold at least one transition (got 0 actions)")
        for name, values in _named_observations(self.observations):
            if len(values) != n_steps + 1:
                where = "" if name == "observations" else f" in {name}"
                raise ValueError(
                    f"An episode of {n_steps} actions needs {n_steps + 1} observations (T + 1), got {len(values)}{where}"
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


def _numeric_array(value: Any, name: str, note: str = "") -> np.ndarray:
    """
    :param value: an array-like with one entry per step
    :param name: what it is (``"actions"``, ``"observations['image']"``), for messages
    :param note: appended to the message of a non-numeric dtype
    :return: ``value`` as a numeric array of at least one dimension, dtype untouched
    """
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged lists
        raise ValueError(f"{name} cannot be stacked into one array (steps of different shapes?): {error}") from None
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}{note}")
    if array.ndim == 0:
        raise ValueError(f"{name} must have one entry per step, got a scalar")
    return array


def _observation_arrays(observations: Any) -> ObservationArrays:
    """
    The observations of an episode in their stored form (see :class:`Episode`).

    :param observations: an array-like ``[T + 1, *obs_shape]``, a mapping of them (one per key of a ``Dict`` space)
        or a sequence of per-step mappings (stacked key by key)
    :return: one numeric array, or a plain dict of them in the mapping's key order
    """
    if isinstance(observations, list | tuple) and len(observations) > 0 and isinstance(observations[0], Mapping):
        observations = _stack_step_dicts(observations)
    if not isinstance(observations, Mapping):
        return _numeric_array(observations, "observations", " (one array, or a dict of arrays for a Dict space)")
    if len(observations) == 0:
        raise ValueError("observations is a dict without any key: a Dict observation needs at least one key")
    arrays = {}
    for key, values in observations.items():
        if not isinstance(key, str):
            raise TypeError(f"observation keys must be strings, got {key!r} ({type(key).__name__})")
        if isinstance(values, Mapping) or (isinstance(values, list | tuple) and values and isinstance(values[0], Mapping)):
            raise TypeError(
                f"observations[{key!r}] is a dict: nested dict observations are not supported (each key of a Dict "
                "observation must hold one numeric array)"
            )
        arrays[key] = _numeric_array(values, f"observations[{key!r}]")
    return arrays


def _stack_step_dicts(steps: Sequence[Any]) -> dict[str, Any]:
    """Stack per-step observation dicts (what a ``Dict``-space env returns) into one list of values per key."""
    keys = list(steps[0])
    for index, step in enumerate(steps):
        if not isinstance(step, Mapping):
            raise TypeError(f"observations: step {index} is a {type(step).__name__}, expected a dict like step 0")
        if set(step) != set(keys):
            raise ValueError(f"observations: step {index}: {_key_mismatch(list(step), keys, 'step 0')}")
    return {key: [step[key] for step in steps] for key in keys}


def _named_observations(observations: ObservationArrays) -> list[tuple[str, np.ndarray]]:
    """Each array of ``observations`` with its name for messages: ``observations``, or ``observations['key']``."""
    if isinstance(observations, dict):
        return [(f"observations[{key!r}]", values) for key, values in observations.items()]
    return [("observations", observations)]


def _describe_observations(observations: ObservationArrays) -> str:
    """How ``observations`` are laid out, for messages: ``one array of shape (4,) per step``, ``a dict of arrays ...``."""
    if isinstance(observations, dict):
        return f"a dict of arrays with the keys {list(observations)}"
    return f"one array of shape {observations.shape[1:]} per step"


def _key_mismatch(found: list[str], expected: list[str], expected_name: str) -> str:
    """
    :param found: the keys found
    :param expected: the keys expected
    :param expected_name: whose keys they are, e.g. ``"the observation space"``
    :return: the message: ``observation keys [...] do not match <expected_name>'s keys [...] (missing 'x', unexpected 'y')``
    """
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    details = [
        f"{label} {', '.join(map(repr, keys))}" for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys
    ]
    return f"observation keys {found} do not match {expected_name}'s keys {expected} ({', '.join(details)})"


def _map_observations(observations: ObservationArrays, function: Callable[[np.ndarray], np.ndarray]) -> ObservationArrays:
    """Apply ``function`` to the array, or to each array of a dict (same keys, same order)."""
    if isinstance(observations, dict):
        return {key: function(values) for key, values in observations.items()}
    return function(observations)


def _concatenate_observations(parts: Sequence[ObservationArrays]) -> ObservationArrays:
    """
    Lay observations end to end along their first axis.

    :param parts: all arrays, or all dicts with the keys of the first one (checked by :class:`Demonstrations`)
    :return: one array, or one array per key in the first part's key order
    """
    first = parts[0]
    if isinstance(first, dict):
        dicts = cast(Sequence[dict[str, np.ndarray]], parts)
        return {key: np.concatenate([part[key] for part in dicts]) for key in first}
    return np.concatenate(cast(Sequence[np.ndarray], parts))


class Transitions(NamedTuple):
    """
    All transitions of a :class:`Demonstrations`, episodes laid end to end (flat, in episode order).

    ``N`` is the number of transitions. ``terminations[i]`` is True only on the last step of an episode that ended by
    termination (no bootstrap); ``episode_ends[i]`` is True on the last step of every episode (terminated or not), so
    an n-step window starting in one episode never reads into the next. With dict observations (``Dict`` observation
    space), ``observations`` and ``next_observations`` are dicts with one array ``[N, *shape_k]`` per key, in the key
    order of the observation space (of the first episode when no space is known).
    """

    observations: ObservationArrays  # [N, *obs_shape], or {key: [N, *shape_k]}
    next_observations: ObservationArrays  # [N, *obs_shape], or {key: [N, *shape_k]}
    actions: np.ndarray  # [N, *action_shape]
    rewards: np.ndarray  # [N], float32
    terminations: np.ndarray  # [N], bool
    episode_ends: np.ndarray  # [N], bool


@dataclass(frozen=True)
class FrameStack:
    """
    How SB3's ``VecFrameStack`` (its ``StackedObservations``) stacked the observations of :class:`Demonstrations`.

    Each observation is the ``n_stack`` newest frames of its episode laid end to end along one axis, the oldest first,
    with zeros for the frames before the episode's first one (``VecFrameStack`` zero-fills the stack at a reset); the
    final observation of an episode continues its stacks. Along that axis an observation is ``n_stack`` times one frame.
    :func:`save_demonstrations` writes such demonstrations one frame per step (format version 3) and
    :func:`load_demonstrations` stacks them again; :func:`frame_stack_demonstrations` and
    :func:`unstack_demonstrations` convert between frames and stacks.

    :param n_stack: frames per observation, at least 1 (``VecFrameStack``'s ``n_stack``)
    :param channels_order: the axis of an observation the frames are laid along: ``"first"`` (axis 0) or ``"last"``
        (its last axis), as ``VecFrameStack`` takes it but resolved (``None``, detected from the frames' space, is not
        accepted). For a ``Dict`` observation space, one order for every key, or a dict with one per key (every key is
        stacked, as ``VecFrameStack`` does)
    """

    n_stack: int
    channels_order: str | dict[str, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_stack", _checked_n_stack(self.n_stack, "FrameStack"))
        if not isinstance(self.channels_order, Mapping):
            if self.channels_order not in _CHANNELS_ORDERS:
                raise ValueError(
                    "FrameStack: channels_order must be 'first' or 'last' (or a dict of them by key), "
                    f"got {self.channels_order!r}"
                )
            object.__setattr__(self, "channels_order", str(self.channels_order))
            return
        if len(self.channels_order) == 0:
            raise ValueError("FrameStack: channels_order is a dict without any key: give one order per key of the Dict space")
        for key, order in self.channels_order.items():
            if not isinstance(key, str) or order not in _CHANNELS_ORDERS:
                raise ValueError(
                    f"FrameStack: channels_order[{key!r}] must be 'first' or 'last' (keys are strings), got {order!r}"
                )
        object.__setattr__(self, "channels_order", {key: str(order) for key, order in self.channels_order.items()})

    @classmethod
    def from_stacked_observations(cls, stacked_obs: StackedObservations) -> "FrameStack":
        """
        The stacking of a ``VecFrameStack``, from its ``stacked_obs``; for a ``Dict`` space, one order per key.

        :param stacked_obs: ``VecFrameStack(...).stacked_obs``
        :return: its stacking, orders resolved as it resolved them
        """
        if isinstance(stacked_obs.observation_space, spaces.Dict):
            return cls(
                stacked_obs.n_stack,
                {key: "first" if sub.channels_first else "last" for key, sub in stacked_obs.sub_stacked_observations.items()},
            )
        return cls(stacked_obs.n_stack, "first" if stacked_obs.channels_first else "last")

    def to_json(self) -> str:
        """:return: the stacking as the JSON object ``{"n_stack": ..., "channels_order": ...}`` (the .npz entry)"""
        return json.dumps({"n_stack": self.n_stack, "channels_order": self.channels_order})


def _checked_n_stack(n_stack: Any, where: str) -> int:
    """:return: ``n_stack`` as an int, a whole number >= 1 (a ValueError naming ``where`` otherwise)"""
    if isinstance(n_stack, bool) or not isinstance(n_stack, int | np.integer) or n_stack < 1:
        raise ValueError(f"{where}: n_stack must be a whole number >= 1, got {n_stack!r}")
    return int(n_stack)


class Demonstrations(Sequence[Episode]):
    """
    A validated collection of expert episodes.

    Build one with :func:`sb3_dqfd.load_demonstrations` (any supported format) or
    :func:`sb3_dqfd.record_demonstrations`. On construction every episode is checked (no NaN or inf in
    observations, actions or rewards; the same observation and action shape in every episode, and for dict
    observations the same keys with the same shape each) and, when the spaces are given, conformed to them (see
    :meth:`validate`): Discrete actions become ``int64`` of shape ``[T]`` (an ``[T, 1]`` column is accepted), Box
    actions ``float32``, observations take the space's dtype (for a ``Dict`` space, each key its subspace's, and the
    dict takes the space's key order), rewards stay ``float32``/``float64`` (other dtypes become ``float64``).

    Observations recorded through ``VecFrameStack`` are its stacks, and carry how they were stacked in
    ``frame_stack`` (see :class:`FrameStack`), which is checked: the observation space must be the stacked space of
    ``VecFrameStack`` (``n_stack`` frames along the axis) and every observation the previous one shifted by one frame,
    starting from zeros.

    :param episodes: the episodes, at least one
    :param observation_space: the observation space the episodes were recorded in, if known
    :param action_space: the action space the episodes were recorded in, if known
    :param frame_stack: how the observations are frame-stacked, if they are ``VecFrameStack``'s stacks; it needs the
        (stacked) observation space
    """

    def __init__(
        self,
        episodes: Sequence[Episode],
        observation_space: spaces.Space | None = None,
        action_space: spaces.Space | None = None,
        frame_stack: FrameStack | None = None,
    ) -> None:
        episodes = tuple(episodes)
        if len(episodes) == 0:
            raise ValueError("Demonstrations must hold at least one episode (got none)")
        checked = []
        for index, episode in enumerate(episodes):
            if not isinstance(episode, Episode):
                raise TypeError(f"episode {index}: expected an Episode, got {type(episode).__name__}")
            checked.append(_conform_episode(episode, index, episodes[0], observation_space, action_space))
        if frame_stack is not None:
            if not isinstance(frame_stack, FrameStack):
                raise TypeError(f"frame_stack must be a FrameStack or None, got {type(frame_stack).__name__}")
            _frame_space(frame_stack, observation_space)  # the space must be a stacked one
            problem = _stacking_problem(frame_stack, observation_space, checked)
            if problem is not None:
                raise ValueError(f"frame_stack={frame_stack}: the observations are not VecFrameStack's stacks: {problem}")
        self.episodes: tuple[Episode, ...] = tuple(checked)
        self.observation_space = observation_space
        self.action_space = action_space
        self.frame_stack = frame_stack

    def validate(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        """
        Check that every episode fits the given spaces; raise otherwise.

        Observations must have the space's shape and a dtype that converts to the space's dtype without changing
        kind (float data for an integer space is refused; integer observations must lie in the space's bounds). For a
        ``Dict`` observation space (flat: no ``Dict`` or ``Tuple`` inside), the observations must be a dict with
        exactly the space's keys, each checked against its subspace that way.
        Actions must have the space's shape (a trailing axis of size 1 is accepted for Discrete), be integers for
        Discrete/MultiDiscrete/MultiBinary and lie inside the space (bounds included for Box). Float observation
        values are not checked against Box bounds. To get a copy conformed to the spaces (dtypes normalized), use
        ``Demonstrations(demos.episodes, observation_space, action_space)`` or
        ``load_demonstrations(demos, env=...)``.

        :param observation_space: the observation space the episodes must fit
        :param action_space: the action space the episodes must fit
        :raises TypeError: a space type is not supported, a dtype does not fit, or one array of observations meets a
            ``Dict`` space (a dict of them a non-``Dict`` one)
        :raises ValueError: a shape, a value or the observation keys do not fit; the message names the episode and step
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
            return Demonstrations(self.episodes[index], self.observation_space, self.action_space, self.frame_stack)
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
            observations=_concatenate_observations(
                [_map_observations(episode.observations, lambda values: values[:-1]) for episode in self.episodes]
            ),
            next_observations=_concatenate_observations(
                [_map_observations(episode.observations, lambda values: values[1:]) for episode in self.episodes]
            ),
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
        if self.frame_stack is not None:
            lines.append(
                f"  frame stack: {self.frame_stack.n_stack} frames, channels_order {self.frame_stack.channels_order!r}"
            )
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
    for name, values in [
        *_named_observations(episode.observations),
        ("actions", episode.actions),
        ("rewards", episode.rewards),
    ]:
        _check_finite(values, name, where)
    actions = episode.actions
    rewards = episode.rewards if episode.rewards.dtype in (np.float32, np.float64) else episode.rewards.astype(np.float64)
    if observation_space is not None:
        observations = _conform_observations(episode.observations, observation_space, where)
    else:
        observations = _match_reference(episode.observations, reference.observations, where)
    if action_space is not None:
        actions = _conform_values(actions, action_space, "actions", where)
    elif actions.shape[1:] != reference.actions.shape[1:]:
        raise ValueError(
            f"{where}: actions have shape {actions.shape[1:]} per step, episode 0 has {reference.actions.shape[1:]}"
        )
    return replace(episode, observations=observations, actions=actions, rewards=rewards)


def _dict_subspaces(space: spaces.Dict, name: str) -> dict[str, spaces.Space]:
    """
    The subspaces of a flat ``Dict`` space, in its key order; raise if one is not an array space.

    :param space: the ``Dict`` space
    :param name: whose space it is, for messages (``"observation"``)
    :return: the subspace of each key
    """
    if len(space.spaces) == 0:
        raise ValueError(f"the {name} space is a Dict without any key: it needs at least one")
    for key, subspace in space.spaces.items():
        if not isinstance(subspace, _ARRAY_SPACES):
            raise TypeError(
                f"the {name} space's key {key!r} is a {type(subspace).__name__} space: nested Dict and Tuple spaces are "
                f"not supported (each key of a Dict {name} space must be a Box, Discrete, MultiDiscrete or MultiBinary)"
            )
    return dict(space.spaces)


def _conform_observations(observations: ObservationArrays, space: spaces.Space, where: str) -> ObservationArrays:
    """
    Check the observations of one episode against the observation space and convert them to its dtypes.

    :param observations: one array, or a dict of arrays for a ``Dict`` space
    :param space: the observation space
    :param where: the episode, for messages
    :return: the converted observations; a dict in the space's key order
    """
    if isinstance(space, spaces.Dict):
        subspaces = _dict_subspaces(space, "observation")
        if not isinstance(observations, dict):
            raise TypeError(
                f"{where}: observations are {_describe_observations(observations)}, but {space} needs a dict of "
                f"arrays with the keys {list(subspaces)} (one array is not supported for a Dict observation space)"
            )
        if set(observations) != set(subspaces):
            raise ValueError(f"{where}: {_key_mismatch(list(observations), list(subspaces), 'the observation space')}")
        return {
            key: _conform_values(observations[key], subspace, "observations", where, key)
            for key, subspace in subspaces.items()
        }
    if isinstance(observations, dict):
        raise TypeError(
            f"{where}: observations are {_describe_observations(observations)}, but {space} needs one array "
            "(dict observations need a Dict observation space)"
        )
    return _conform_values(observations, space, "observations", where)


def _match_reference(observations: ObservationArrays, reference: ObservationArrays, where: str) -> ObservationArrays:
    """
    Without an observation space: check that an episode's observations are laid out as those of episode 0.

    :param observations: the episode's observations
    :param reference: those of episode 0
    :param where: the episode, for messages
    :return: the observations; a dict in the key order of episode 0
    """
    if isinstance(observations, dict) and isinstance(reference, dict):
        if set(observations) != set(reference):
            raise ValueError(f"{where}: {_key_mismatch(list(observations), list(reference), 'episode 0')}")
        for key, values in reference.items():
            if observations[key].shape[1:] != values.shape[1:]:
                raise ValueError(
                    f"{where}: observations[{key!r}] have shape {observations[key].shape[1:]} per step, "
                    f"episode 0 has {values.shape[1:]}"
                )
        return {key: observations[key] for key in reference}
    if isinstance(observations, dict) or isinstance(reference, dict):
        raise TypeError(
            f"{where}: observations are {_describe_observations(observations)}, "
            f"episode 0 has {_describe_observations(reference)}"
        )
    if observations.shape[1:] != reference.shape[1:]:
        raise ValueError(
            f"{where}: observations have shape {observations.shape[1:]} per step, episode 0 has {reference.shape[1:]}"
        )
    return observations


def _conform_values(values: np.ndarray, space: spaces.Space, name: str, where: str, key: str | None = None) -> np.ndarray:
    """
    Check per-step ``values`` (shape ``[T, ...]``) against ``space`` and convert them to the canonical dtype.

    :param values: observations or actions of one episode (for a ``Dict`` space, those of one key)
    :param space: the space they must belong to
    :param name: ``"observations"`` or ``"actions"``
    :param where: the episode, for messages
    :param key: the key of a ``Dict`` observation space they belong to, for messages
    :return: the converted values
    """
    if not isinstance(space, _ARRAY_SPACES):
        raise TypeError(
            f"{type(space).__name__} {name[:-1]} spaces are not supported (only Box, Discrete, MultiDiscrete and MultiBinary"
            + (", and for observations a Dict of them)" if name == "observations" else ")")
        )
    label = name if key is None else f"{name}[{key!r}]"
    if isinstance(space, spaces.Discrete) and values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]  # SB2 and others store Discrete values as a [T, 1] column
    if values.shape[1:] != space.shape:
        raise ValueError(f"{where}: {label} have shape {values.shape[1:]} per step, but {space} expects {space.shape}")
    if isinstance(space, spaces.Box):
        return _conform_box(values, space, name, where, key)
    if values.dtype.kind not in "biu":
        raise TypeError(f"{where}: {label} must be integers for {space}, got dtype {values.dtype}")
    if isinstance(space, spaces.Discrete):
        low, high = np.asarray(space.start), np.asarray(space.start + space.n - 1)
    elif isinstance(space, spaces.MultiDiscrete):
        low, high = space.start, space.start + space.nvec - 1
    else:
        low, high = np.zeros(space.shape, dtype=np.int64), np.ones(space.shape, dtype=np.int64)
    _check_bounds(values, low, high, space, _singular(name, key), where)
    # Discrete spaces keep their values as int64 in gymnasium and in SB3's replay buffers
    return values.astype(np.int64 if isinstance(space, spaces.Discrete) else space.dtype)


def _conform_box(values: np.ndarray, space: spaces.Box, name: str, where: str, key: str | None) -> np.ndarray:
    target = np.dtype(space.dtype)
    if name == "actions" and target.kind == "f":
        target = np.dtype(np.float32)  # as SB3's replay buffers store them
    # Any numeric data fits a float space; only integers (bounds-checked below) fit an integer space
    if values.dtype.kind not in ("biuf" if target.kind == "f" else "biu"):
        label = name if key is None else f"{name}[{key!r}]"
        raise TypeError(f"{where}: {label} of dtype {values.dtype} do not fit {space} (dtype {space.dtype})")
    if values.dtype == np.bool_ and is_image_space(space, check_channels=False):
        # True would become 1 of 255: near-black images that pass every other check
        label = name if key is None else f"{name}[{key!r}]"
        raise TypeError(
            f"{where}: {label} are bool, but {space} is a uint8 image space (0..255): record them through the same "
            "wrappers as the env (e.g. sb3_dqfd.wrappers.MinAtarImage, which maps True to 255)"
        )
    # Actions must be inside the space; so must integer observations (a cast would wrap them around).
    # Float observations are not bounds-checked: nothing downstream relies on their bounds.
    if name == "actions" or target.kind in "iu":
        _check_bounds(values, space.low, space.high, space, _singular(name, key), where)
    return values.astype(target)


def _singular(name: str, key: str | None) -> str:
    """One step's name in messages: ``action``, ``observation``, ``observation['image']``."""
    return name[:-1] if key is None else f"{name[:-1]}[{key!r}]"


def _check_bounds(values: np.ndarray, low: np.ndarray, high: np.ndarray, space: spaces.Space, what: str, where: str) -> None:
    """:param what: one step's name (see :func:`_singular`), for messages"""
    bad = (values < low) | (values > high)
    if bad.any():
        step = _first_bad_step(bad)
        raise ValueError(f"{where}, step {step}: {what} {values[step].tolist()} is outside {space}")


# --------------------------------------------------------------------------------------------------------------------
# Frame stacking
# --------------------------------------------------------------------------------------------------------------------


def _stackable_subspaces(space: spaces.Space, prefix: str) -> list[tuple[str | None, spaces.Box]]:
    """
    :param space: an observation space to stack, or a stacked one
    :param prefix: starts the messages (``"frame_stack: "``)
    :return: the arrays ``VecFrameStack`` stacks: the ``Box`` space (key None), or each key of a ``Dict`` space
    :raises ValueError: a space (or a key) that is not a ``Box`` of at least one axis; the message names the key
    """
    subspaces = list(space.spaces.items()) if isinstance(space, spaces.Dict) else [(None, space)]
    for key, subspace in subspaces:
        if not isinstance(subspace, spaces.Box) or len(subspace.shape) == 0:
            what = "the observation space" if key is None else f"the observation space's key {key!r}"
            raise ValueError(f"{prefix}{what} is {subspace}: VecFrameStack stacks Box spaces of at least one axis only")
    return cast(list[tuple[str | None, spaces.Box]], subspaces)


def _check_order_keys(channels_order: Mapping[str, Any], space: spaces.Space, prefix: str) -> None:
    """Refuse orders by key for a space that is not a ``Dict`` of the same keys (messages start with ``prefix``)."""
    if not isinstance(space, spaces.Dict):
        raise ValueError(f"{prefix}channels_order is a dict by key, but the observation space {space} is not a Dict")
    if set(channels_order) != set(space.spaces):
        raise ValueError(
            f"{prefix}channels_order has the keys {list(channels_order)}, the observation space {list(space.spaces)}: "
            "VecFrameStack stacks every key of a Dict space"
        )


def _stacked_parts(frame_stack: FrameStack, space: spaces.Space | None) -> list[tuple[str | None, spaces.Box, str]]:
    """
    The arrays the frames are stacked in: the observations of a ``Box`` space, or each key of a ``Dict`` space.

    :param frame_stack: the stacking
    :param space: the stacked observation space
    :return: for each array its key (None for a ``Box`` space), its space and its channels order
    :raises ValueError: the stacking does not fit the space: no space, a space ``VecFrameStack`` does not stack, or
        orders by key that are not those of the space; the message names the key
    """
    if space is None:
        raise ValueError(f"frame_stack={frame_stack} needs the observation space of the stacks (got none)")
    orders = frame_stack.channels_order
    if isinstance(orders, dict):
        _check_order_keys(orders, space, "frame_stack: ")
    return [
        (key, subspace, orders if isinstance(orders, str) else orders[cast(str, key)])
        for key, subspace in _stackable_subspaces(space, "frame_stack: ")
    ]


def _frame_space(frame_stack: FrameStack, space: spaces.Space | None) -> spaces.Box | spaces.Dict:
    """
    The space of one frame of the stacked observation space ``space``.

    :param frame_stack: the stacking
    :param space: the stacked observation space, as ``VecFrameStack`` (``StackedObservations``) builds it
    :return: the space of one frame (the bounds of the stack's newest frame)
    :raises ValueError: ``space`` is not the stacked space of ``n_stack`` frames (see :func:`_stacked_parts`); the message
        names the key
    """
    n_stack = frame_stack.n_stack
    frames: list[tuple[str | None, spaces.Box]] = []
    for key, subspace, order in _stacked_parts(frame_stack, space):
        what = "the observation space" if key is None else f"the observation space's key {key!r}"
        axis = 0 if order == "first" else len(subspace.shape) - 1
        size = subspace.shape[axis]
        if size % n_stack != 0:
            raise ValueError(
                f"frame_stack: {what} {subspace} cannot hold {n_stack} frames along its {order} axis (of size {size})"
            )
        # StackedObservations repeats each bound n_stack times in a row (np.repeat): every n_stack-th is a frame's bound
        every = np.arange(0, size, n_stack)
        frame = spaces.Box(
            np.take(subspace.low, every, axis),
            np.take(subspace.high, every, axis),
            dtype=subspace.dtype,  # type: ignore[arg-type]
        )
        if StackedObservations(1, n_stack, frame, order).stacked_observation_space != subspace:
            raise ValueError(
                f"frame_stack: {what} {subspace} is not the space VecFrameStack stacks {n_stack} frames of {frame} in "
                f"along the {order} axis"
            )
        frames.append((key, frame))
    if isinstance(space, spaces.Dict):
        # Pairs keep the stacked space's key order (a dict would be sorted)
        return spaces.Dict(cast(list[tuple[str, spaces.Space]], frames))
    return frames[0][1]


def _observation_part(observations: ObservationArrays, key: str | None) -> np.ndarray:
    """The array of ``key`` in dict observations; the observations themselves (one array) when ``key`` is None."""
    if key is None:
        return cast(np.ndarray, observations)
    return cast(dict[str, np.ndarray], observations)[key]


def _along(values: np.ndarray, order: str, start: int | None, stop: int | None) -> np.ndarray:
    """``values[..., start:stop]`` on the stacking axis of per-step stacks ``[steps, *stacked_shape]`` (a view)."""
    return values[:, start:stop] if order == "first" else values[..., start:stop]


def _stacking_problem(frame_stack: FrameStack, space: spaces.Space | None, episodes: Sequence[Episode]) -> str | None:
    """
    Why the observations of ``episodes`` (conformed to ``space``) are not ``VecFrameStack``'s stacks, if they are not.

    Stacks start with zeros before the episode's first frame, and each next one is the previous one shifted by one frame
    (its older frames are the previous one's newer ones): then they are what stacking their newest frames gives.

    :param frame_stack: the stacking, fitting ``space`` (see :func:`_frame_space`)
    :param space: the stacked observation space
    :param episodes: the episodes
    :return: the first step that is not a stack, described; None when every observation is one
    """
    n_stack = frame_stack.n_stack
    for key, subspace, order in _stacked_parts(frame_stack, space):
        name = "observations" if key is None else f"observations[{key!r}]"
        width = subspace.shape[0 if order == "first" else -1] // n_stack  # of one frame
        for index, episode in enumerate(episodes):
            values = _observation_part(episode.observations, key)
            if _along(values[:1], order, None, -width).any():
                return f"episode {index}, step 0: {name} hold more than the episode's first frame (no zeros before it)"
            shifted = _along(values[1:], order, None, -width) != _along(values[:-1], order, width, None)
            if shifted.any():
                step = _first_bad_step(shifted) + 1
                return f"episode {index}, step {step}: {name} are not the previous step's shifted by one frame"
    return None


def _newest_frames(frame_stack: FrameStack, space: spaces.Space | None, observations: ObservationArrays) -> ObservationArrays:
    """
    :param frame_stack: the stacking, fitting ``space``
    :param space: the stacked observation space
    :param observations: stacks of one episode ``[T + 1, *stacked_shape]`` (key by key for a ``Dict`` space)
    :return: their newest frames ``[T + 1, *frame_shape]`` (views)
    """
    frames = {}
    for key, subspace, order in _stacked_parts(frame_stack, space):
        width = subspace.shape[0 if order == "first" else -1] // frame_stack.n_stack  # of one frame
        frames[key] = _along(_observation_part(observations, key), order, -width, None)
    return frames[None] if None in frames else cast(dict[str, np.ndarray], frames)


def _stacked_observations(stacking: StackedObservations, frames: ObservationArrays) -> ObservationArrays:
    """
    One episode's frames stacked as ``VecFrameStack`` stacks them: a reset on the first, then one update per frame.

    :param stacking: SB3's stacking of one env
    :param frames: the episode's frames ``[T + 1, *frame_shape]`` (key by key for a ``Dict`` space)
    :return: its stacks ``[T + 1, *stacked_shape]``
    """
    n_observations = len(_named_observations(frames)[0][1])
    no_done = np.zeros(1, dtype=bool)  # inside an episode: the stack goes on

    def step(index: int) -> ObservationArrays:
        return _map_observations(frames, lambda values: values[index : index + 1])  # a batch of one env

    # Each stack is copied into its row at once: StackedObservations returns its own buffer
    first = stacking.reset(step(0))
    stacks = _map_observations(first, lambda stack: np.empty((n_observations, *stack.shape[1:]), dtype=stack.dtype))
    for index in range(n_observations):
        stack = first if index == 0 else stacking.update(step(index), no_done, [{}])[0]
        if isinstance(stacks, dict):
            for key, values in stacks.items():
                values[index] = stack[key][0]
        else:
            stacks[index] = stack[0]
    return stacks


def _stacked_episodes(episodes: Sequence[Episode], frame_stack: FrameStack, frame_space: spaces.Space) -> list[Episode]:
    """
    :param episodes: episodes of single frames, conformed to ``frame_space``
    :param frame_stack: the stacking
    :param frame_space: the space of one frame, ``Box`` or ``Dict`` of them
    :return: the episodes with their observations stacked, one after the other as ``VecFrameStack`` stacks them
    """
    stacking = StackedObservations(1, frame_stack.n_stack, frame_space, frame_stack.channels_order)  # type: ignore[arg-type]
    return [replace(episode, observations=_stacked_observations(stacking, episode.observations)) for episode in episodes]


def _resolved_frame_stack(
    n_stack: int, channels_order: str | Mapping[str, str | None] | None, space: spaces.Space
) -> FrameStack:
    """
    The stacking ``VecFrameStack(venv, n_stack, channels_order)`` applies to frames of ``space``: ``None`` orders
    detected as it detects them (channels of an image space, else ``"last"``).

    :raises ValueError: ``space`` cannot be stacked (not a ``Box``, nor a ``Dict`` of them), an order is unknown or
        ``channels_order`` by key has other keys than the ``Dict`` space
    """
    # Checked here: StackedObservations asserts the orders and reads the keys of a dict unchecked
    orders = channels_order.values() if isinstance(channels_order, Mapping) else [channels_order]
    if any(order not in (*_CHANNELS_ORDERS, None) for order in orders):
        raise ValueError(
            f"channels_order must be 'first', 'last' or None (for a Dict space also a dict of them), got {channels_order!r}"
        )
    if isinstance(channels_order, Mapping):
        _check_order_keys(channels_order, space, "")
    _stackable_subspaces(space, "")
    stacking = StackedObservations(1, n_stack, cast(spaces.Box | spaces.Dict, space), channels_order)
    return FrameStack.from_stacked_observations(stacking)


def frame_stack_demonstrations(
    demonstrations: Demonstrations,
    n_stack: int | StackedObservations,
    channels_order: str | Mapping[str, str | None] | None = None,
) -> Demonstrations:
    """
    The demonstrations as ``VecFrameStack(venv, n_stack, channels_order)`` stacks the observations of a ``venv`` that
    returns theirs: each episode replayed through SB3's ``StackedObservations`` from a reset (zeros before the episode's
    first frame, the oldest frame first).

    :param demonstrations: single frames, with their observation space (a ``Box``, or a ``Dict`` of them)
    :param n_stack: frames per observation, at least 1; or the ``stacked_obs`` of a ``VecFrameStack`` built on frames of
        the demonstrations' space (``frame_stack_demonstrations(demos, vec_frame_stack.stacked_obs)``), whose stacking
        is taken, channels orders included
    :param channels_order: as for ``VecFrameStack``: ``"first"``, ``"last"`` or None (detected: the channel axis of an
        image space, else the last axis); for a ``Dict`` space also a dict of them by key. Only with ``n_stack`` a number
    :return: the stacked demonstrations, with the stacked observation space (``VecFrameStack``'s) and their
        :attr:`Demonstrations.frame_stack`; :func:`unstack_demonstrations` gives the frames back
    :raises ValueError: the demonstrations have no observation space, or one that cannot be stacked; a bad
        ``n_stack`` or ``channels_order``; a ``stacked_obs`` built on another space
    :raises TypeError: ``channels_order`` given with a ``stacked_obs``
    """
    space = demonstrations.observation_space
    if space is None:
        raise ValueError(
            "frame_stack_demonstrations needs the demonstrations' observation space: load them with env= (the env of "
            "single frames)"
        )
    if isinstance(n_stack, StackedObservations):
        if channels_order is not None:
            raise TypeError("frame_stack_demonstrations: channels_order is taken from the stacked_obs given: pass None")
        if n_stack.observation_space != space:
            raise ValueError(
                f"frame_stack_demonstrations: the stacked_obs stacks frames of {n_stack.observation_space}, the "
                f"demonstrations have {space}"
            )
        frame_stack = FrameStack.from_stacked_observations(n_stack)
    else:
        frame_stack = _resolved_frame_stack(_checked_n_stack(n_stack, "frame_stack_demonstrations"), channels_order, space)
    stacking = StackedObservations(1, frame_stack.n_stack, space, frame_stack.channels_order)  # type: ignore[arg-type]
    return Demonstrations(
        _stacked_episodes(demonstrations.episodes, frame_stack, space),
        stacking.stacked_observation_space,
        demonstrations.action_space,
        frame_stack,
    )


def unstack_demonstrations(demonstrations: Demonstrations) -> Demonstrations:
    """
    The newest frame of each observation of frame-stacked demonstrations: the inverse of
    :func:`frame_stack_demonstrations`.

    :param demonstrations: stacks that carry their stacking (:attr:`Demonstrations.frame_stack`): recorded through
        ``VecFrameStack``, loaded from a format version 3 file or stacked by :func:`frame_stack_demonstrations`. Stacks
        without it can be given it: ``Demonstrations(demos.episodes, demos.observation_space, demos.action_space,
        FrameStack(4, "last"))`` checks that they are stacked that way
    :return: the frames, with the space of one frame (the bounds of the stacks' newest frame) and no ``frame_stack``
    :raises ValueError: the demonstrations carry no stacking
    """
    frame_stack = demonstrations.frame_stack
    if frame_stack is None:
        raise ValueError(
            "unstack_demonstrations: the demonstrations carry no frame_stack: give them theirs with "
            "Demonstrations(demos.episodes, demos.observation_space, demos.action_space, FrameStack(n_stack, channels_order))"
        )
    space = cast(spaces.Space, demonstrations.observation_space)  # a frame_stack needs one
    episodes = [
        replace(episode, observations=_newest_frames(frame_stack, space, episode.observations))
        for episode in demonstrations.episodes
    ]
    return Demonstrations(episodes, _frame_space(frame_stack, space), demonstrations.action_space)


# --------------------------------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------------------------------


def _as_policy(expert: Any, deterministic: bool, vectorized: bool = False) -> Callable[[Any, Any], Any]:
    """
    Turn an expert into ``act(observation, episode_start) -> action``.

    :param expert: an object with ``predict`` (SB3 model), a callable ``obs -> action`` or a built-in expert's name
    :param deterministic: passed to ``predict``
    :param vectorized: ``act`` takes a batch, one row per env: observations ``[n_envs, *obs_shape]`` (for a ``Dict``
        space, a dict of them) and episode starts ``[n_envs]``, and returns actions ``[n_envs, *action_shape]``. SB3
        models predict the batch at once; a callable is called once per env, on that env's observation
    :return: the acting function
    """
    if isinstance(expert, str):
        expert = get_expert(expert)
    if hasattr(expert, "predict"):
        # Recurrent models (RecurrentPPO, TransformerA2C) need their state carried between steps
        if "state" in inspect.signature(expert.predict).parameters:
            state: Any = None

            def act(observation: Any, episode_start: Any) -> Any:
                nonlocal state
                action, state = expert.predict(
                    observation, state=state, episode_start=np.atleast_1d(episode_start), deterministic=deterministic
                )
                return action

            return act
        return lambda observation, episode_start: expert.predict(observation, deterministic=deterministic)[0]
    if callable(expert):
        if vectorized:
            return lambda observations, episode_starts: np.stack(
                [np.asarray(expert(_env_observation(observations, index))) for index in range(len(episode_starts))]
            )
        return lambda observation, episode_start: expert(observation)
    raise TypeError(
        f"expert must be an SB3 model (with .predict), a callable obs -> action or a built-in expert's name, "
        f"got {type(expert).__name__}"
    )


@contextmanager
def _progress(n_episodes: int, show: bool) -> Iterator[Callable[[], Any]]:
    """
    :param n_episodes: the episodes to record
    :param show: show a progress bar over them (tqdm + rich, as SB3's ``learn``)
    :return: (as a context manager) the function to call once per recorded episode
    """
    if not show:
        yield lambda: None
        return
    from tqdm import TqdmExperimentalWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=TqdmExperimentalWarning)
        from tqdm.rich import tqdm

        bar = tqdm(total=n_episodes, unit="episode")
    with bar:
        yield bar.update


def record_demonstrations(
    expert: Any,
    env: str | gym.Env | VecEnv,
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
    step, as SB3 does in its rollouts, so the stored action is the one the environment executed. With a ``Dict``
    observation space (flat: each key a Box, Discrete, MultiDiscrete or MultiBinary) the observations are recorded
    key by key (see :class:`Episode`); the expert gets them as the environment returns them (a dict, in a VecEnv a
    dict of ``[n_envs, ...]`` arrays).

    In a VecEnv (with its wrappers: ``VecFrameStack``, ``VecTransposeImage``, ...; ``make_atari_env`` pipelines) the
    observations, actions and rewards are recorded as its wrappers return them, so the demonstrations are what an
    agent trained in that VecEnv sees (frame-stacked observations with the zero-filled stack of an episode start,
    clipped Atari rewards). Behind a ``VecFrameStack`` (anywhere in the chain of wrappers; a ``VecTransposeImage`` above
    it makes the stacks channel-first stacks of transposed frames) the demonstrations carry its stacking,
    :attr:`Demonstrations.frame_stack`, once checked that the observations are its zero-padded stacks, so that
    :func:`save_demonstrations` writes each frame once; when wrappers above it make them something else (or move the
    stacking axis to a middle one), the stacks are kept without it, with a warning. Every env steps at once with the
    expert's actions for the batch; a finished episode ends on ``infos[i]["terminal_observation"]`` and is truncated
    when ``infos[i]["TimeLimit.truncated"]`` says so (SB3's conventions, which its VecEnv wrappers keep). As SB3's
    ``evaluate_policy`` does, env ``i`` records the first ``(n_episodes + i) // n_envs`` episodes it finishes, so that
    short episodes, which finish first, are not over-represented; the episodes are returned env by env, each env's in
    the order played, and the episodes still running at the end are dropped. ``VecNormalize`` is refused: its running
    statistics would make the stored observations drift, and DQfD stores demonstrations un-normalized (``VecNormalize``
    normalizes them when sampled), so record in the same VecEnv without it; an expert trained with ``VecNormalize`` can
    be passed as ``lambda obs: model.predict(vec_normalize.normalize_obs(obs), deterministic=True)[0]`` (its statistics
    frozen).

    Seeding: with ``seed`` given, episode ``i`` of a single environment starts from ``env.reset(seed=seed + i)``, so
    each episode is reproducible on its own and the first ``k`` episodes do not depend on ``n_episodes``. A VecEnv is
    seeded once, SB3's way (``venv.seed(seed)``: env ``i`` resets with ``seed + i`` at the first reset, its next
    episodes follow from its random state), so the recording is reproducible as a whole, but its episodes are not
    those of a single environment with the same seed. The expert's own randomness (``deterministic=False``) is not
    seeded here: seed the model (``model.set_random_seed``) yourself.

    :param expert: an SB3 model (anything with ``.predict(obs, deterministic=...)``, given a batch of observations in
        a VecEnv; recurrent models get their state and ``episode_start`` for every env), a callable ``obs -> action``
        (called on one observation at a time, once per env in a VecEnv), or the name of a built-in expert
        (see :func:`sb3_dqfd.common.experts.get_expert`)
    :param env: an environment id (made with ``gym.make`` and closed afterwards), a single ``gymnasium.Env`` or an SB3
        ``VecEnv`` of any number of envs, not ``VecNormalize``-wrapped (both left open)
    :param n_episodes: number of episodes to record, at least 1
    :param seed: seed of the first reset (see above); ``None`` leaves the environment unseeded
    :param deterministic: passed to the model's ``predict``
    :param progress_bar: show a progress bar over episodes (tqdm + rich, as SB3's ``learn``)
    :return: the recorded demonstrations, with the environment's spaces (a VecEnv's after its wrappers) and, through
        ``VecFrameStack``, its stacking
    """
    if not isinstance(env, str | gym.Env | VecEnv):
        raise _bad_env(env)
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int | np.integer) or n_episodes < 1:
        raise ValueError(f"n_episodes must be a positive integer, got {n_episodes!r}")
    if isinstance(env, VecEnv):
        _check_recordable(env)
        act = _as_policy(expert, deterministic, vectorized=True)
        with _progress(n_episodes, progress_bar) as advance:
            episodes = _record_vec_env(act, env, n_episodes, seed, advance)
        demonstrations = Demonstrations(episodes, env.observation_space, env.action_space)
        frame_stack = _recorded_frame_stack(env, demonstrations)
        if frame_stack is None:
            return demonstrations
        return Demonstrations(
            demonstrations.episodes, demonstrations.observation_space, demonstrations.action_space, frame_stack
        )
    act = _as_policy(expert, deterministic)
    environment = gym.make(env) if isinstance(env, str) else env
    try:
        with _progress(n_episodes, progress_bar) as advance:
            episodes = []
            for index in range(n_episodes):
                episodes.append(_record_episode(act, environment, index, None if seed is None else seed + index))
                advance()
    finally:
        if isinstance(env, str):
            environment.close()
    return Demonstrations(episodes, environment.observation_space, environment.action_space)


def _vec_frame_stack(venv: VecEnv) -> FrameStack | None:
    """
    The stacking of the outermost ``VecFrameStack`` among the wrappers of ``venv``, as the observations of ``venv`` show
    it: a ``VecTransposeImage`` above it (SB3 puts it there) moves a channel-last stack of frames ``[H, W, n * C]`` to
    the first axis, ``[n * C, H, W]``: the channel-first stack of the transposed frames.

    :return: the stacking; None without ``VecFrameStack``
    :raises ValueError: a ``VecTransposeImage`` above it moves a channel-first stack to a middle axis, which
        :class:`FrameStack` cannot describe
    """
    transposes = []
    while not isinstance(venv, VecFrameStack):
        if not isinstance(venv, VecEnvWrapper):
            return None
        if isinstance(venv, VecTransposeImage) and not venv.skip:
            transposes.append(venv)
        venv = venv.venv
    frame_stack = FrameStack.from_stacked_observations(venv.stacked_obs)
    channels_order = frame_stack.channels_order
    for transpose in reversed(transposes):  # innermost first
        # [H, W, C] -> [C, H, W]: the last axis comes first, the first one goes to the middle
        if isinstance(channels_order, dict):
            moved = [f"key {key!r}" for key in transpose.image_space_keys if channels_order[key] == "first"]
            channels_order = channels_order | dict.fromkeys(transpose.image_space_keys, "first")
        else:
            moved = ["the observations"] if channels_order == "first" else []
            channels_order = "first"
        if moved:
            raise ValueError(
                f"VecTransposeImage moves the stacking axis of {', '.join(moved)} from the first to a middle axis"
            )
    return FrameStack(frame_stack.n_stack, channels_order)


def _recorded_frame_stack(venv: VecEnv, demonstrations: Demonstrations) -> FrameStack | None:
    """
    The stacking of the observations recorded in ``venv``, checked on them.

    :param venv: the VecEnv recorded
    :param demonstrations: what was recorded
    :return: the stacking of its ``VecFrameStack`` (see :func:`_vec_frame_stack`) if the observations are its stacks;
        None without ``VecFrameStack``, and, with a warning, when the wrappers above it make them something else
    """
    try:
        frame_stack = _vec_frame_stack(venv)
        if frame_stack is None:
            return None
        _frame_space(frame_stack, demonstrations.observation_space)
    except ValueError as error:  # a wrapper above VecFrameStack changed the stacked observation space
        problem: str | None = str(error)
    else:
        problem = _stacking_problem(frame_stack, demonstrations.observation_space, demonstrations.episodes)
    if problem is None:
        return frame_stack
    _warn(
        f"record_demonstrations: the VecEnv stacks frames (VecFrameStack), but the wrappers above it make its "
        f"observations something else than stacks of frames ({problem}): the demonstrations hold them without "
        "frame_stack, and save_demonstrations writes them whole"
    )
    return None


def _record_episode(act: Callable[[Any, Any], Any], env: gym.Env, index: int, seed: int | None) -> Episode:
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
    # Per-step dicts of a Dict observation space are stacked key by key
    return Episode(
        _observation_arrays(observations), np.array(actions), np.array(rewards), terminated, truncated and not terminated
    )


def _check_recordable(venv: VecEnv) -> None:
    """Refuse, before any step, a VecEnv whose observations :func:`record_demonstrations` cannot record."""
    if unwrap_vec_normalize(venv) is not None:
        raise ValueError(
            "record_demonstrations: the VecEnv is wrapped in VecNormalize, whose running statistics would make the "
            "stored observations drift: record in the same VecEnv without VecNormalize (DQfD stores demonstrations "
            "un-normalized, and VecNormalize normalizes them when they are sampled)"
        )
    if isinstance(venv.observation_space, spaces.Dict):
        with _located("record_demonstrations: the VecEnv"):
            _dict_subspaces(venv.observation_space, "observation")
    for name in ("observation", "action"):
        space = getattr(venv, f"{name}_space")
        if not isinstance(space, _ARRAY_SPACES) and not (name == "observation" and isinstance(space, spaces.Dict)):
            raise TypeError(
                f"record_demonstrations: the VecEnv has a {type(space).__name__} {name} space, not supported "
                "(only Box, Discrete, MultiDiscrete and MultiBinary"
                + (", and a Dict of them)" if name == "observation" else ")")
            )


def _record_vec_env(
    act: Callable[[Any, Any], Any], venv: VecEnv, n_episodes: int, seed: int | None, advance: Callable[[], Any]
) -> list[Episode]:
    """
    Step every env of ``venv`` at once until env ``i`` has finished ``(n_episodes + i) // n_envs`` episodes.

    :param act: the expert, vectorized (see :func:`_as_policy`)
    :param venv: the environments
    :param n_episodes: number of episodes to record over all envs
    :param seed: seed of env 0 at the first reset (env ``i``: ``seed + i``)
    :param advance: called once per recorded episode
    :return: the recorded episodes, env by env, each env's in the order played
    """
    n_envs = venv.num_envs
    quotas = [(n_episodes + index) // n_envs for index in range(n_envs)]
    recorded: list[list[Episode]] = [[] for _ in range(n_envs)]
    if seed is not None:
        venv.seed(seed)  # used at the next reset only
    observations = _batch_observations(venv.reset())  # [n_envs, *obs_shape], or {key: [n_envs, *shape_k]}
    # Each env's running episode. Observations are copied: a VecEnv may reuse its buffers (SB3's buffers copy too)
    steps = [_Steps([_env_observation(observations, index)]) for index in range(n_envs)]
    episode_starts = np.ones(n_envs, dtype=bool)  # [n_envs]
    n_steps = 0
    while any(len(episodes) < quota for episodes, quota in zip(recorded, quotas, strict=True)):
        actions = act(observations, episode_starts)  # [n_envs, *action_shape]
        if isinstance(venv.action_space, spaces.Box):
            actions = np.clip(actions, venv.action_space.low, venv.action_space.high)  # as SB3's rollouts
        try:
            next_observations, rewards, dones, infos = venv.step(actions)
        except AssertionError as error:  # gymnasium's classic-control envs assert that the action is valid
            raise ValueError(f"step {n_steps}: the VecEnv rejected the expert's actions {actions!r}: {error}") from error
        observations = _batch_observations(next_observations)  # after a done: the first observation of the next episode
        for index in range(n_envs):
            steps[index].actions.append(actions[index])
            steps[index].rewards.append(rewards[index])
            if not dones[index]:
                steps[index].observations.append(_env_observation(observations, index))
                continue
            if len(recorded[index]) < quotas[index]:
                recorded[index].append(steps[index].finish(infos[index], index))
                advance()
            steps[index] = _Steps([_env_observation(observations, index)])
        episode_starts = dones
        n_steps += 1
    return [episode for episodes in recorded for episode in episodes]


def _batch_observations(observations: Any) -> ObservationArrays:
    """A VecEnv's observations as arrays ``[n_envs, ...]``: one, or a dict of them for a ``Dict`` space (SB3's layout)."""
    if isinstance(observations, Mapping):
        return {key: np.asarray(values) for key, values in observations.items()}
    return np.asarray(observations)


def _env_observation(observations: ObservationArrays, index: int) -> ObservationArrays:
    """A copy of the observation of env ``index`` in a batch (see :func:`_batch_observations`)."""
    if isinstance(observations, dict):
        return {key: np.array(values[index]) for key, values in observations.items()}
    return np.array(observations[index])


@dataclass
class _Steps:
    """The steps so far of one env's running episode, while a VecEnv is recorded."""

    observations: list[ObservationArrays]
    actions: list[Any] = field(default_factory=list)
    rewards: list[Any] = field(default_factory=list)

    def finish(self, info: dict[str, Any], env_index: int) -> Episode:
        """
        :param info: the info of the episode's last step: its final observation and whether it was truncated
        :param env_index: the env it ran in, for messages
        :return: the finished episode
        """
        if "terminal_observation" not in info:
            raise ValueError(
                f"env {env_index} of the VecEnv ended an episode without infos[{env_index}]['terminal_observation'] "
                "(SB3's VecEnvs and wrappers keep the final observation there)"
            )
        truncated = bool(info.get("TimeLimit.truncated", False))
        # A dict for a Dict observation space: the per-step dicts are stacked key by key
        observations = [*self.observations, info["terminal_observation"]]
        return Episode(
            _observation_arrays(observations), np.array(self.actions), np.array(self.rewards), not truncated, truncated
        )


# --------------------------------------------------------------------------------------------------------------------
# Our .npz format
# --------------------------------------------------------------------------------------------------------------------


def _space_to_arrays(space: spaces.Space, prefix: str) -> dict[str, np.ndarray]:
    """
    Describe a space with plain arrays: a JSON string (type, dtype, n, ...) under ``prefix`` and the array attributes
    under ``<prefix>_low``, .... A flat ``Dict`` lists its keys in its JSON (``{"type": "Dict", "keys": [...]}``) and
    describes each subspace the same way under ``<prefix>.<key>``.
    """
    if isinstance(space, spaces.Dict):
        arrays = {prefix: np.array(json.dumps({"type": "Dict", "keys": list(space.spaces)}))}
        writers: dict[str, str] = {}  # the key that wrote each array
        for key, subspace in _dict_subspaces(space, prefix.removesuffix("_space")).items():
            described = _space_to_arrays(subspace, f"{prefix}.{key}")
            for name in described:
                if name in writers:  # keys "x" (a Box) and "x_low" would both write "<prefix>.x_low"
                    raise ValueError(
                        f"cannot save the Dict space: its keys {writers[name]!r} and {key!r} would both write the array "
                        f"{name!r}; rename one of them"
                    )
                writers[name] = key
            arrays |= described
        return arrays
    description: dict[str, Any] = {"type": type(space).__name__, "dtype": str(space.dtype)}
    arrays = {}
    if isinstance(space, spaces.Box):
        arrays = {f"{prefix}_low": space.low, f"{prefix}_high": space.high}
    elif isinstance(space, spaces.Discrete):
        description |= {"n": int(space.n), "start": int(space.start)}
    elif isinstance(space, spaces.MultiDiscrete):
        arrays = {f"{prefix}_nvec": space.nvec, f"{prefix}_start": space.start}
    elif isinstance(space, spaces.MultiBinary):
        description["n"] = np.asarray(space.n).tolist()
    else:
        raise TypeError(
            f"cannot save a {type(space).__name__} space (only Box, Discrete, MultiDiscrete and MultiBinary, "
            "and a Dict of them for observations)"
        )
    return {prefix: np.array(json.dumps(description)), **arrays}


def _space_from_arrays(data: Mapping[str, np.ndarray], prefix: str, where: str, nested: bool = False) -> spaces.Space | None:
    """
    Read back a space written by :func:`_space_to_arrays`.

    :param data: the arrays of the file
    :param prefix: the key of its JSON description
    :param where: the file, for messages
    :param nested: it is a subspace of a ``Dict``, which cannot be a ``Dict`` itself
    :return: the space; None if the file has none under ``prefix``
    """
    if prefix not in data:
        return None
    try:
        description = json.loads(str(data[prefix]))
        kind = description["type"]
        if kind == "Dict" and not nested:
            keys = description["keys"]
            if (
                not isinstance(keys, list)
                or not keys
                or not all(isinstance(key, str) for key in keys)
                or len(set(keys)) < len(keys)
            ):
                raise ValueError(f"'keys' must be a non-empty list of distinct strings, got {keys!r}")
        elif kind == "Box":
            return spaces.Box(data[f"{prefix}_low"], data[f"{prefix}_high"], dtype=description["dtype"])
        elif kind == "Discrete":
            return spaces.Discrete(description["n"], start=description["start"])
        elif kind == "MultiDiscrete":
            return spaces.MultiDiscrete(data[f"{prefix}_nvec"], dtype=description["dtype"], start=data[f"{prefix}_start"])
        elif kind == "MultiBinary":
            return spaces.MultiBinary(description["n"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{where}: key {prefix!r}: the space description cannot be read ({error!r})") from None
    if kind != "Dict":
        raise ValueError(f"{where}: key {prefix!r}: unknown space type {kind!r}")
    if nested:
        raise ValueError(f"{where}: key {prefix!r}: a Dict inside a Dict space: nested Dict spaces are not supported")
    subspaces = []
    for key in keys:
        subspace = _space_from_arrays(data, f"{prefix}.{key}", where, nested=True)
        if subspace is None:
            raise ValueError(f"{where}: key {prefix!r} lists the key {key!r}, but the file has no {f'{prefix}.{key}'!r}")
        subspaces.append((key, subspace))
    space = spaces.Dict(subspaces)  # in the order of the file (a sequence of pairs is not sorted)
    # An entry of a key the description does not list: the file was not written by save_demonstrations
    written = _space_to_arrays(space, prefix)
    unlisted = [name for name in data if name.startswith(f"{prefix}.") and name not in written]
    if unlisted:
        raise ValueError(f"{where}: key(s) {unlisted} belong to no key listed in {prefix!r} {keys}")
    return space


def save_demonstrations(demos: Demonstrations, path: str | os.PathLike) -> None:
    """
    Write demonstrations to a compressed ``.npz`` file that loads with ``np.load(path, allow_pickle=False)``.

    The file is written at ``path`` exactly (no suffix added); missing parent folders are created, as SB3's
    ``save`` does. Layout: ``format`` and ``format_version`` (markers); ``observations`` ``[sum(T + 1), *obs_shape]``,
    ``actions`` ``[sum(T), ...]`` and ``rewards`` ``[sum(T)]``, episodes end to end; ``episode_lengths`` (``T`` of
    each episode), ``terminated`` and ``truncated`` (one flag per episode); the spaces, when known, as a JSON string
    under ``observation_space``/``action_space`` plus their arrays (``<space>_low``, ``<space>_high`` for Box,
    ``<space>_nvec``, ``<space>_start`` for MultiDiscrete). That is format version 1, written when the observations
    are one array.

    Dict observations (a ``Dict`` observation space) are written as format version 2, which differs in two ways:

    - instead of ``observations``, ``observation_keys`` (the keys, a 1-D string array, in the order of the
      observations) and one array per key, ``observations.<key>`` ``[sum(T + 1), *shape_k]``, episodes end to end;
    - the ``Dict`` space's JSON under ``observation_space`` is ``{"type": "Dict", "keys": [...]}``, and each subspace
      is described as a space above under ``observation_space.<key>`` (with ``observation_space.<key>_low``, ...).

    Frame-stacked demonstrations (recorded through ``VecFrameStack``: :attr:`Demonstrations.frame_stack` is set) are
    written as format version 3, each frame once: the layout of version 1 (one array) or 2 (dict observations) where
    ``observations`` (each ``observations.<key>``) holds the newest frame of each observation, ``[sum(T + 1),
    *frame_shape]`` (its older frames are those of the steps before, zeros before an episode's first), plus
    ``frame_stack``, the stacking as a JSON string ``{"n_stack": 4, "channels_order": "last"}`` (for dict observations
    ``"channels_order"`` may be a JSON object of one order per key). ``observation_space`` is the stacked space, as the
    demonstrations carry it; :func:`load_demonstrations` stacks the frames again as ``VecFrameStack`` does.

    :param demos: the demonstrations to write
    :param path: where to write them
    :raises ValueError: two keys of a ``Dict`` space would write the same array (keys ``"x"`` and ``"x_low"``)
    """
    if not isinstance(demos, Demonstrations):
        raise TypeError(f"save_demonstrations takes a Demonstrations, got {type(demos).__name__}")
    frame_stack = demos.frame_stack
    if frame_stack is None:
        observations = _concatenate_observations([episode.observations for episode in demos])
    else:
        # The older frames of a stack are the newer ones of the stack before: each step's newest frame holds them all
        observations = _concatenate_observations(
            [_newest_frames(frame_stack, demos.observation_space, episode.observations) for episode in demos]
        )
    if isinstance(observations, dict):
        # Plain string arrays load without pickle; the keys are listed so that a missing one is noticed
        observation_arrays = {"observation_keys": np.array(list(observations), dtype=str)}
        observation_arrays |= {f"observations.{key}": values for key, values in observations.items()}
    else:
        observation_arrays = {"observations": observations}
    arrays: dict[str, np.ndarray] = {
        "format": np.array(NPZ_FORMAT),
        # Version 1 still describes files of array observations: releases that read only version 1 read them
        "format_version": np.array(3 if frame_stack is not None else 2 if isinstance(observations, dict) else 1),
        **observation_arrays,
        "actions": np.concatenate([episode.actions for episode in demos]),
        "rewards": np.concatenate([episode.rewards for episode in demos]),
        "episode_lengths": demos.episode_lengths,
        "terminated": np.array([episode.terminated for episode in demos]),
        "truncated": np.array([episode.truncated for episode in demos]),
    }
    if frame_stack is not None:
        arrays["frame_stack"] = np.array(frame_stack.to_json())
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


def _require(data: Mapping[str, Any], keys: Sequence[str], where: str, layout: str, note: str = "") -> None:
    """
    Raise a ValueError naming the keys of ``keys`` that ``data`` lacks, if any.

    :param data: the arrays read
    :param keys: the keys the layout needs
    :param where: the source (and episode), for the message
    :param layout: the layout's name, for the message
    :param note: appended to the message (the other layouts, optional keys)
    """
    missing = [key for key in keys if key not in data]
    if missing:
        raise ValueError(
            f"{where}: missing key(s) {missing} for the {layout} layout "
            f"(expected {list(keys)}, found {sorted(map(str, data))}){note}"
        )


def _split_points(lengths: np.ndarray) -> np.ndarray:
    """Where to cut a flat array into consecutive parts of the given lengths."""
    return np.cumsum(lengths)[:-1]


def _npz_observation_keys(data: Mapping[str, np.ndarray], where: str) -> list[str] | None:
    """
    The observation keys of our ``.npz`` (dict observations, format version 2), checked against its arrays.

    :return: the keys; None for a file of one ``observations`` array
    """
    stored = [name for name in data if name.startswith("observations.")]
    if "observation_keys" not in data:
        if stored:
            raise ValueError(f"{where}: key(s) {stored} need the key 'observation_keys' listing the observation keys")
        return None
    listed = data["observation_keys"]
    if listed.ndim != 1 or listed.dtype.kind != "U" or len(listed) == 0 or len(set(listed.tolist())) != len(listed):
        raise ValueError(f"{where}: key 'observation_keys' must be a non-empty 1-D array of distinct strings, got {listed!r}")
    keys = [str(key) for key in listed]
    if "observations" in data:
        raise ValueError(f"{where}: the file has both 'observations' and 'observation_keys': expected one of them")
    unlisted = [name for name in stored if name.removeprefix("observations.") not in keys]
    if unlisted:
        raise ValueError(f"{where}: key(s) {unlisted} are not listed in 'observation_keys' {keys}")
    return keys


def _episodes_from_npz(data: Mapping[str, np.ndarray], where: str) -> list[Episode]:
    observation_keys = _npz_observation_keys(data, where)
    observation_names = ["observations"] if observation_keys is None else [f"observations.{key}" for key in observation_keys]
    keys = ("format_version", *observation_names, "actions", "rewards", "episode_lengths", "terminated", "truncated")
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
        **{name: int(lengths.sum()) + n_episodes for name in observation_names},
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
    # Each observation array [sum(T + 1), ...] cut into episodes [T + 1, ...]
    points = _split_points(lengths + 1)
    if observation_keys is None:
        observations: list[Any] = np.split(data["observations"], points)
    else:
        per_key = {key: np.split(data[f"observations.{key}"], points) for key in observation_keys}
        observations = [{key: per_key[key][index] for key in observation_keys} for index in range(n_episodes)]
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

# Warnings skip the frames of this package, so that they point at the user's line also through DQfD(...)
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_EPISODE_DICT_NOTE = (
    f"; episode dicts have either the keys {list(_EPISODE_DICT_KEYS)} (one end flag per episode) "
    f"or Minari's EpisodeData keys {list(_MINARI_EPISODE_KEYS)} (one end flag per step)"
)
_D4RL_NOTE = (
    "; 'next_observations' is optional. d4rl.qlearning_dataset drops the timeouts: pass env.get_dataset() instead. "
    "For one episode dict, pass a list of episode dicts"
)


def _warn(message: str) -> None:
    """
    Warn (``UserWarning``), pointing at the first caller outside this package.

    A fixed ``stacklevel`` cannot: the same loader is called by the user directly and through ``DQfD(...)``.

    :param message: one line of text
    """
    level, frame = 2, sys._getframe(1)
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


def _rows(data: Mapping[str, Any], keys: Sequence[str], where: str) -> dict[str, np.ndarray]:
    """The numeric arrays under ``keys``, one row per step, checked to have as many rows as the first one (>= 1)."""
    with _located(where):  # ragged lists cannot be stacked
        arrays = {key: np.asarray(data[key]) for key in keys}
    for key, array in arrays.items():
        if array.ndim == 0:
            raise ValueError(f"{where}: key {key!r} holds a single value, expected one entry per step")
        if array.dtype.kind not in _NUMERIC_KINDS:
            raise TypeError(f"{where}: key {key!r} must hold numbers, got dtype {array.dtype}")
    n_rows = len(arrays[keys[0]])
    for key, array in arrays.items():
        if len(array) != n_rows:
            raise ValueError(f"{where}: key {key!r} has {len(array)} entries but {keys[0]!r} has {n_rows}")
    if n_rows == 0:
        raise ValueError(f"{where}: the dataset is empty (0 steps)")
    return arrays


def _step_flags(values: Any, name: str, where: str, unit: str) -> np.ndarray:
    """
    Per-step end flags as a bool array.

    :param values: bools, or the numbers 0 and 1 (D4RL stores floats)
    :param name: the key, for messages
    :param where: the source (and episode), for messages
    :param unit: ``"step"`` or ``"row"``, for messages
    :return: the flags
    """
    flags = np.asarray(values)
    if flags.ndim != 1:
        raise ValueError(f"{where}: {name} must be a 1-D array of flags, got shape {flags.shape}")
    if flags.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(f"{where}: {name} must hold booleans (0/1), got dtype {flags.dtype}")
    bad = (flags != 0) & (flags != 1)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(f"{where}, {unit} {index}: {name} must hold booleans (0/1), got {flags[index].item()!r}")
    return flags.astype(bool)


def _episode_from_steps(
    where: str, index: int, observations: Any, actions: Any, rewards: Any, terminations: Any, truncations: Any
) -> Episode:
    """Build an Episode from Minari's per-step end flags (its datasets, and episode dicts in its layout)."""
    location = f"{where}: episode {index}"
    episode = _episode(where, index, observations, actions, rewards, False, True)  # the end is read below
    flags = {
        "terminations": _step_flags(terminations, "terminations", location, "step"),
        "truncations": _step_flags(truncations, "truncations", location, "step"),
    }
    for name, steps in flags.items():
        if len(steps) != len(episode):
            raise ValueError(f"{location}: {name} has {len(steps)} entries, expected one per step ({len(episode)})")
        if steps[:-1].any():
            raise ValueError(f"{location}, step {int(np.argmax(steps))}: {name} is set before the last step")
    # A step both terminated and truncated is a termination (no bootstrap); an end flagged neither way is a
    # recording cut short: like a truncation, it bootstraps
    terminated = bool(flags["terminations"][-1])
    return replace(episode, terminated=terminated, truncated=not terminated)


def _episode_without_final_observation(
    where: str, index: int, observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: bool
) -> Episode | None:
    """
    Build an Episode from ``T`` steps that lack the observation after the last one (rule in the module docstring).

    :return: the episode; None for a truncated episode of one step (nothing is left once its step is dropped)
    """
    if terminated:
        # Never read: nothing bootstraps from a terminal transition
        final_observation = observations[-1:]
        return _episode(where, index, np.concatenate([observations, final_observation]), actions, rewards, True, False)
    if len(actions) < 2:
        return None
    return _episode(where, index, observations, actions[:-1], rewards[:-1], False, True)


def _adds_up(rewards: np.ndarray, recorded_return: float) -> bool:
    """Whether ``rewards`` sum to ``recorded_return``, up to rounding (float32 rewards, another summation order)."""
    total, size = float(rewards.sum(dtype=np.float64)), float(np.abs(rewards).sum(dtype=np.float64))
    return abs(total - recorded_return) <= 1e-5 * (size + abs(recorded_return)) + 1e-6


def _some(indices: list[int]) -> str:
    """The first few indices, for a message."""
    shown = ", ".join(str(index) for index in indices[:5])
    return f"[{shown}{', ...' if len(indices) > 5 else ''}]"


def _sb2_returns(data: Mapping[str, np.ndarray], n_episodes: int, where: str) -> np.ndarray | None:
    """The ``episode_returns`` of an SB2 archive, checked (one number per episode), if it has them."""
    if "episode_returns" not in data:
        return None
    returns = np.atleast_1d(data["episode_returns"])
    if returns.ndim != 1 or returns.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(f"{where}: key 'episode_returns' must be a 1-D array of numbers, got {returns.dtype} {returns.shape}")
    if len(returns) != n_episodes:
        raise ValueError(
            f"{where}: key 'episode_returns' has {len(returns)} entries but 'episode_starts' marks {n_episodes} episodes"
        )
    return returns


def _sb2_end(rewards: np.ndarray, recorded_return: float | None, episode_end: str, time_limit: int | None) -> str:
    """How an SB2 episode ended (rule in the module docstring): ``"cut"`` (truncated), ``"terminated"`` or ``"truncated"``."""
    if recorded_return is not None and not _adds_up(rewards, recorded_return):
        return "cut"
    if episode_end != "auto":
        return episode_end
    return "truncated" if len(rewards) == time_limit else "terminated"


def _sb2_warning(ends: dict[str, list[int]], n_dropped: int, episode_end: str, env: Any, time_limit: int | None) -> str | None:
    """
    The one-line warning of an SB2 load: how many ends were taken each way, and why.

    :param ends: the episode indices by kind of end (see :func:`_sb2_end`)
    :param n_dropped: number of one-step truncated episodes dropped entirely
    :param episode_end: the ``sb2_episode_end`` argument
    :param env: the ``env`` argument
    :param time_limit: the env's time limit, if known and used
    :return: the message; None when ``sb2_episode_end`` decided every end and nothing was dropped
    """
    if episode_end != "auto" and not ends["cut"] and not n_dropped:
        return None
    if episode_end != "auto":
        why_terminated = why_truncated = f"as sb2_episode_end={episode_end!r} says"
    elif time_limit is not None:
        why_terminated = f"their length is not the env's time limit {time_limit}"
        why_truncated = f"at the env's time limit {time_limit}"
    else:
        why_terminated = "no env given, so no time limit known" if env is None else "the env has no time limit"
        why_truncated = ""  # no evidence of a time limit: nothing is taken as truncated
    parts = []
    if ends["terminated"]:
        parts.append(f"{len(ends['terminated'])} taken as terminated ({why_terminated}: every step kept)")
    if ends["truncated"]:
        parts.append(f"{len(ends['truncated'])} taken as truncated {why_truncated} (last step dropped)")
    if ends["cut"]:
        parts.append(
            f"{len(ends['cut'])} taken as cut short, so truncated (last step dropped), as their rewards do not add up to "
            f"their episode_returns (episodes {_some(ends['cut'])})"
        )
    n_episodes = sum(len(indices) for indices in ends.values())
    message = (
        "Stable-Baselines2 datasets hold no observation after an episode's last step and do not say how it ended; "
        f"of the {n_episodes} episodes, " + ", ".join(parts)
    )
    if n_dropped:
        message += f"; {n_dropped} one-step episodes were dropped entirely (no step left)"
    if episode_end == "auto":
        message += "; sb2_episode_end='terminated' or 'truncated' decides every end instead"
    return message


def _episodes_from_sb2(
    data: Mapping[str, np.ndarray], where: str, env: str | gym.Env | VecEnv | None, episode_end: str
) -> list[Episode]:
    """
    Rebuild episodes from a Stable-Baselines2 ``ExpertDataset`` archive.

    SB2 stores ``obs[i]`` the observation acted on at step ``i``, and ``episode_starts[i]`` True on the first step
    of each episode. Inside an episode the next observation of step ``i`` is ``obs[i + 1]``; after the last step of
    an episode SB2 kept nothing (the environment was reset), and its ``done`` did not tell termination from a time
    limit: how each episode ended is decided by :func:`_sb2_end`.

    :param data: the arrays of the archive
    :param where: the file, for messages
    :param env: the env given to :func:`load_demonstrations`: its time limit tells truncations
    :param episode_end: the ``sb2_episode_end`` argument of :func:`load_demonstrations`
    :return: the episodes
    """
    _require(data, _SB2_KEYS[:4], where, "Stable-Baselines2 ExpertDataset")
    obs, actions, rewards, starts = _rows(data, _SB2_KEYS[:4], where).values()
    if starts.ndim != 1 or not starts[0]:
        raise ValueError(f"{where}: key 'episode_starts' must be 1-D and True on step 0")
    if actions.dtype.kind in "iu" and actions.ndim == 2 and actions.shape[1] == 1:
        actions = actions[:, 0]  # SB2 wrote Discrete actions as an [N, 1] column
    bounds = [*np.flatnonzero(starts), len(obs)]
    returns = _sb2_returns(data, len(bounds) - 1, where)
    time_limit = _time_limit(env) if episode_end == "auto" else None
    ends: dict[str, list[int]] = {"terminated": [], "truncated": [], "cut": []}
    episodes, n_dropped = [], 0
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        kind = _sb2_end(rewards[start:end], None if returns is None else float(returns[index]), episode_end, time_limit)
        ends[kind].append(index)
        steps = slice(start, end)
        episode = _episode_without_final_observation(
            where, index, obs[steps], actions[steps], rewards[steps], terminated=kind == "terminated"
        )
        if episode is None:
            n_dropped += 1
        else:
            episodes.append(episode)
    message = _sb2_warning(ends, n_dropped, episode_end, env, time_limit)
    if message is not None:
        _warn(f"{where}: {message}")
    if not episodes:
        raise ValueError(f"{where}: no episode of at least 2 steps: nothing left once the last steps are dropped")
    return episodes


def _episode_rows(ends: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` rows of each episode, given the rows where episodes end; rows after the last end are one more."""
    stops = (np.flatnonzero(ends) + 1).tolist()
    if not stops or stops[-1] != len(ends):
        stops.append(len(ends))  # the recording stopped inside an episode
    return list(itertools.pairwise([0, *stops]))


def _episodes_from_d4rl(data: Mapping[str, Any], where: str) -> list[Episode]:
    """
    Split the flat arrays of a D4RL dataset into episodes (rule in the module docstring).

    :param data: the arrays, one row per step
    :param where: the source, for messages
    :return: the episodes
    """
    _require(data, _D4RL_KEYS, where, "D4RL", _D4RL_NOTE)
    rows = _rows(data, [*_D4RL_KEYS, *(["next_observations"] if "next_observations" in data else [])], where)
    terminals, timeouts = (_step_flags(rows[key], key, where, "row") for key in ("terminals", "timeouts"))
    episodes, n_truncated, n_dropped = [], 0, 0
    for index, (start, stop) in enumerate(_episode_rows(terminals | timeouts)):
        terminated = bool(terminals[stop - 1])  # a row both terminal and timeout is a termination
        observations, actions, rewards = (rows[key][start:stop] for key in ("observations", "actions", "rewards"))
        if "next_observations" in rows:
            observations = np.concatenate([observations, rows["next_observations"][stop - 1 : stop]])
            episodes.append(_episode(where, index, observations, actions, rewards, terminated, not terminated))
            continue
        n_truncated += not terminated
        episode = _episode_without_final_observation(where, index, observations, actions, rewards, terminated)
        if episode is None:
            n_dropped += 1
        else:
            episodes.append(episode)
    if n_truncated:
        _warn(
            f"{where}: without 'next_observations', a D4RL dataset holds no observation after an episode's last step: "
            f"the last step of the {n_truncated} episodes that ended by a timeout or unfinished was dropped (they "
            "bootstrap from the observation of that step); episodes that ended on a terminal keep every step"
            + (f"; {n_dropped} one-step episodes were dropped entirely (no step left)" if n_dropped else "")
        )
    if not episodes:
        raise ValueError(f"{where}: no episode left once the last step of each timeout or unfinished episode is dropped")
    return episodes


def _episodes_from_minari(dataset: Any, where: str) -> list[Episode]:
    """Read a Minari dataset; it stores the observations of a ``Dict`` space as a dict of arrays ``[T + 1, ...]``."""
    episodes = []
    for index, data in enumerate(dataset.iterate_episodes()):
        if isinstance(data.observations, tuple) or isinstance(data.actions, dict | tuple):
            raise TypeError(
                f"{where}: episode {index}: tuple observations, and dict or tuple actions, are not supported "
                "(observations may be one array or a dict of arrays)"
            )
        episodes.append(
            _episode_from_steps(
                where, index, data.observations, data.actions, data.rewards, data.terminations, data.truncations
            )
        )
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
        _warn(
            f"{where}: imitation trajectories mark every end as terminal; {n_unknown} of {len(episodes)} had no "
            "'TimeLimit.truncated' or 'truncated' entry in their last info and were taken as terminated: if they ended "
            "by a time limit, that truncation is lost and their last transition will not bootstrap"
        )
    return episodes


def _episodes_from_dicts(episode_dicts: Sequence[Any], where: str) -> list[Episode]:
    episodes = []
    for index, episode in enumerate(episode_dicts):
        if not isinstance(episode, Mapping):
            raise TypeError(f"{where}: item {index} is a {type(episode).__name__}, expected an episode dict like item 0")
        if any(key in episode for key in _MINARI_EPISODE_KEYS[3:]):  # Minari's per-step flags
            _require(episode, _MINARI_EPISODE_KEYS, f"{where}: episode {index}", "Minari EpisodeData", _EPISODE_DICT_NOTE)
            episodes.append(_episode_from_steps(where, index, *(episode[key] for key in _MINARI_EPISODE_KEYS)))
        else:
            _require(episode, _EPISODE_DICT_KEYS, f"{where}: episode {index}", "episode dict", _EPISODE_DICT_NOTE)
            episodes.append(_episode(where, index, *(episode[key] for key in _EPISODE_DICT_KEYS)))
    return episodes


def _read_sequence(source: Sequence[Any]) -> tuple[str, list[Episode]]:
    """Read a sequence of episode dicts, imitation trajectories or :class:`Episode`: where it is and its episodes."""
    if len(source) == 0:
        raise ValueError("load_demonstrations: the sequence is empty: demonstrations need at least one episode")
    first = source[0]
    if isinstance(first, Mapping):
        return "episode dicts", _episodes_from_dicts(source, "episode dicts")
    if hasattr(first, "obs") and hasattr(first, "acts"):
        return "imitation trajectories", _episodes_from_trajectories(source, "imitation trajectories")
    if isinstance(first, Episode):
        return type(source).__name__, list(source)
    raise TypeError(
        f"load_demonstrations: unknown sequence item {type(first).__name__}: expected episode dicts, imitation "
        "trajectories or Episode"
    )


# --------------------------------------------------------------------------------------------------------------------
# Environments and built-in experts
# --------------------------------------------------------------------------------------------------------------------


def _bad_env(env: Any) -> TypeError:
    return TypeError(f"env must be an environment id, a gymnasium.Env or a VecEnv, got {type(env).__name__}")


def _env_spaces(env: str | gym.Env | VecEnv) -> tuple[spaces.Space, spaces.Space]:
    if isinstance(env, str):
        environment = gym.make(env)
        environment.close()
        return environment.observation_space, environment.action_space
    if isinstance(env, gym.Env | VecEnv):
        return env.observation_space, env.action_space
    raise _bad_env(env)


def _env_spec(env: str | gym.Env | VecEnv) -> EnvSpec | None:
    """The registration of ``env`` (id, time limit); None for an environment not made by ``gym.make``."""
    if isinstance(env, str):
        return gym.spec(env)
    if isinstance(env, VecEnv):
        return env.get_attr("spec", indices=[0])[0]
    if isinstance(env, gym.Env):
        return env.spec
    raise _bad_env(env)


def _time_limit(env: str | gym.Env | VecEnv | None) -> int | None:
    """The number of steps after which ``env`` truncates an episode, if it is known."""
    spec = None if env is None else _env_spec(env)
    return None if spec is None else spec.max_episode_steps


def _record_expert(source: str, env: str | gym.Env | VecEnv | None, seed: int | None) -> Demonstrations:
    """
    Record the episodes ``source`` (``"expert:N"``) asks for with the built-in expert of ``env``.

    :param source: ``"expert:N"``, N a positive whole number
    :param env: the environment whose id names the expert; the recording runs in a fresh copy (its registered time
        limit), so that the given environment is not stepped: ``gym.make(env.spec)`` with the wrappers that record
        their arguments (e.g. :class:`sb3_dqfd.wrappers.MinAtarImage`; SB3's ``Monitor`` does not, and changes no
        observation), else ``gym.make(id)``
    :param seed: seed of the first reset (episode ``i`` is reset with ``seed + i``)
    :return: the recorded demonstrations
    """
    count = source.removeprefix(_EXPERT_PREFIX)
    if not (count.isascii() and count.isdigit()) or int(count) < 1:
        raise ValueError(f"{source!r}: expected expert:N with N a positive whole number of episodes")
    if env is None:
        raise ValueError(
            f"{source!r} records the built-in expert of an environment: pass env= (an environment id, a gymnasium.Env "
            "or a VecEnv)"
        )
    spec = _env_spec(env)
    if spec is None:
        raise ValueError(f"{source!r}: the env has no id (env.spec is None): make it with gym.make, or pass its id")
    if spec.id not in EXPERTS:
        raise ValueError(f"{source!r}: no built-in expert for {spec.id!r} (known: {sorted(EXPERTS)})")
    return record_demonstrations(spec.id, _fresh_copy(spec), n_episodes=int(count), seed=seed)


def _fresh_copy(spec: EnvSpec) -> gym.Env:
    """
    A new env made from ``spec`` with the wrappers it lists that record their constructor arguments (the others cannot
    be rebuilt); the bare registered env if those do not build on their own (a skipped wrapper was needed).
    """
    rebuildable = replace(
        spec, additional_wrappers=tuple(wrapper for wrapper in spec.additional_wrappers if wrapper.kwargs is not None)
    )
    try:
        return gym.make(rebuildable)
    except Exception:  # any wrapper's own error: record in the bare env, where validation names a mismatch
        return gym.make(spec.id)


# --------------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------------


def _minari_not_found(dataset_id: str) -> DemonstrationsNotFoundError:
    """The error for a path that is neither a file nor a local Minari dataset (Minari's own says ``download=True``)."""
    from minari.storage import get_dataset_path

    origin = "MINARI_DATASETS_PATH" if "MINARI_DATASETS_PATH" in os.environ else "Minari's default root"
    return DemonstrationsNotFoundError(
        f"{dataset_id}: no such file, nor a local Minari dataset in {get_dataset_path()} ({origin}); this package never "
        f"downloads: get the dataset first with `minari download {dataset_id}` "
        f"(or minari.download_dataset({dataset_id!r}))"
    )


def _read_minari_id(path: Path, where: str) -> tuple[list[Episode], spaces.Space, spaces.Space]:
    try:
        import minari
    except ImportError:
        raise DemonstrationsNotFoundError(
            f"{where}: no such file (minari is not installed, so it was not tried as a Minari dataset id)"
        ) from None
    try:
        dataset = minari.load_dataset(str(path), download=False)
    except FileNotFoundError:
        raise _minari_not_found(where) from None
    except ValueError as error:
        raise ValueError(f"{where}: not a file, and the local Minari dataset of that id cannot be read ({error})") from None
    return _episodes_from_minari(dataset, where), dataset.observation_space, dataset.action_space


def _npz_frame_stack(data: Mapping[str, np.ndarray], where: str) -> FrameStack | None:
    """
    The stacking of our ``.npz`` (format version 3, key ``frame_stack``), checked against its format version.

    :return: the stacking; None for a file of whole observations (versions 1 and 2)
    """
    version = int(data["format_version"])
    if "frame_stack" not in data:
        if version == 3:
            raise ValueError(f"{where}: format_version 3 needs the key 'frame_stack' (how its frames are stacked)")
        return None
    if version != 3:
        raise ValueError(f"{where}: key 'frame_stack' needs format_version 3, the file has format_version {version}")
    try:
        description = json.loads(str(data["frame_stack"]))
        return FrameStack(description["n_stack"], description["channels_order"])
    except (KeyError, TypeError, ValueError) as error:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{where}: key 'frame_stack': the stacking cannot be read ({error!r})") from None


def _stacked_npz_episodes(
    frames: list[Episode], frame_stack: FrameStack, observation_space: spaces.Space | None, where: str
) -> list[Episode]:
    """
    :param frames: the episodes of a format version 3 file: one frame per step
    :param frame_stack: its stacking
    :param observation_space: its (stacked) observation space
    :param where: the file, for messages
    :return: the episodes with the stacks ``VecFrameStack`` makes of their frames
    """
    with _located(f"{where}: key 'frame_stack' {frame_stack.to_json()}"):
        frame_space = _frame_space(frame_stack, observation_space)
    with _located(f"{where}: the frames must fit one frame of the stacked observation space, {frame_space}"):
        conformed = Demonstrations(frames, frame_space).episodes
    return _stacked_episodes(conformed, frame_stack, frame_space)


def _read_npz_layout(
    data: Mapping[str, np.ndarray], where: str, env: str | gym.Env | VecEnv | None, sb2_episode_end: str
) -> tuple[list[Episode], spaces.Space | None, spaces.Space | None, FrameStack | None]:
    """Read an ``.npz`` in any layout, recognised from its keys; the stacking is that of a format version 3 file."""
    if "format" in data:
        if str(data["format"]) != NPZ_FORMAT:
            raise ValueError(f"{where}: unknown format marker {str(data['format'])!r} (expected {NPZ_FORMAT!r})")
        episodes = _episodes_from_npz(data, where)
        observation_space = _space_from_arrays(data, "observation_space", where)
        frame_stack = _npz_frame_stack(data, where)
        if frame_stack is not None:
            episodes = _stacked_npz_episodes(episodes, frame_stack, observation_space, where)
        return episodes, observation_space, _space_from_arrays(data, "action_space", where), frame_stack
    # Each layout by the keys only it has (SB2 and D4RL share 'actions' and 'rewards')
    if any(key in data for key in ("obs", "episode_starts", "episode_returns")):
        return _episodes_from_sb2(data, where, env, sb2_episode_end), None, None, None
    if "terminals" in data or "timeouts" in data:
        return _episodes_from_d4rl(data, where), None, None, None
    raise ValueError(
        f"{where}: unknown .npz layout with keys {sorted(data)}: expected an sb3_dqfd file (key 'format'), "
        f"a Stable-Baselines2 ExpertDataset (keys {list(_SB2_KEYS)}) or a D4RL dataset (keys {list(_D4RL_KEYS)}, "
        "optionally 'next_observations')"
    )


def _read_path(
    path: Path, where: str, env: str | gym.Env | VecEnv | None, sb2_episode_end: str
) -> tuple[list[Episode], spaces.Space | None, spaces.Space | None, FrameStack | None]:
    if path.is_file():
        return _read_npz_layout(_read_npz(path), where, env, sb2_episode_end)
    if path.exists():
        raise ValueError(f"{where}: not a file (a directory?): expected a .npz file or a local Minari dataset id")
    if path.suffix.lower() == ".npz":
        raise DemonstrationsNotFoundError(f"{where}: no such file")
    return (*_read_minari_id(path, where), None)


def _read_source(
    source: Any, env: str | gym.Env | VecEnv | None, seed: int | None, sb2_episode_end: str
) -> tuple[str, list[Episode], spaces.Space | None, spaces.Space | None, FrameStack | None]:
    """
    Read any supported source.

    :return: where it is (for messages), its episodes, the observation and action spaces it stores, if any, and the
        frame stacking of its observations, if it stores one (:class:`Demonstrations`, our format version 3 ``.npz``)
    """
    if isinstance(source, Demonstrations):
        return type(source).__name__, list(source.episodes), source.observation_space, source.action_space, source.frame_stack
    if isinstance(source, str) and source.startswith(_EXPERT_PREFIX):
        demos = _record_expert(source, env, seed)
        return source, list(demos.episodes), demos.observation_space, demos.action_space, demos.frame_stack
    if isinstance(source, str | os.PathLike):
        where = str(source)
        return (where, *_read_path(Path(source), where, env, sb2_episode_end))
    if hasattr(source, "iterate_episodes"):
        where = type(source).__name__
        return where, _episodes_from_minari(source, where), source.observation_space, source.action_space, None
    if isinstance(source, Mapping):
        return "D4RL dataset", _episodes_from_d4rl(source, "D4RL dataset"), None, None, None
    if isinstance(source, Sequence) and not isinstance(source, bytes):
        return (*_read_sequence(source), None, None, None)
    raise TypeError(
        f"load_demonstrations: unsupported source {type(source).__name__}: expected a path, a Minari dataset or id, "
        "a D4RL mapping of flat arrays, 'expert:N', a sequence of episode dicts / imitation trajectories / Episode, "
        "or a Demonstrations"
    )


def load_demonstrations(
    source: Any,
    env: str | gym.Env | VecEnv | None = None,
    seed: int | None = 0,
    sb2_episode_end: str = "auto",
) -> Demonstrations:
    """
    Load demonstrations from any supported source (detected; details in the module docstring) and validate them.

    ``source`` may be:

    - a path to our ``.npz``, to a Stable-Baselines2 ``ExpertDataset`` ``.npz`` (how each episode ended is decided
      from its ``episode_returns``, ``env``'s time limit and ``sb2_episode_end``, with a one-line warning) or to a D4RL
      ``.npz``;
    - the id of a Minari dataset stored locally (``MINARI_DATASETS_PATH``; never downloaded: get it with
      ``minari download <id>`` first), or a ``minari.MinariDataset``;
    - a D4RL dataset: a mapping of flat arrays, one row per step (``env.get_dataset()``), with the keys
      ``observations``, ``actions``, ``rewards``, ``terminals``, ``timeouts`` and optionally ``next_observations``
      (``d4rl.qlearning_dataset`` has no ``timeouts``: it lost where time-limited episodes end);
    - a sequence of episode dicts with the keys ``observations`` ``[T + 1, ...]``, ``actions`` ``[T, ...]``,
      ``rewards`` ``[T]`` and either ``terminated``, ``truncated`` (bools) or Minari's per-step ``terminations``,
      ``truncations`` (``[T]``, only the last step may be set);
    - a sequence of imitation ``Trajectory``/``TrajectoryWithRew`` (or anything with ``obs``, ``acts``, ``rews``,
      ``infos``, ``terminal``), a sequence of :class:`Episode`, or a :class:`Demonstrations`;
    - ``"expert:N"``: N episodes recorded with the built-in expert of ``env`` (found by its id, run in a fresh
      ``gym.make(id)``), as ``sb3-dqfd train --demos expert:N`` does.

    Where a source lacks the observation after an episode's last step (SB2, D4RL without ``next_observations``), a
    terminated episode keeps every step and repeats its last observation as the final one (never read: nothing
    bootstraps from a terminal transition), and a truncated one drops its last step and bootstraps from the
    observation of that step.

    :param source: the demonstrations
    :param env: an environment id, ``gymnasium.Env`` or VecEnv: when given, the episodes are validated against its
        spaces and conformed to them (dtypes normalized), and the result carries them. Without it, the spaces stored
        in the source are used if it has any (our ``.npz``, Minari, :class:`Demonstrations`, ``expert:N``). The frame
        stacking of our format version 3 ``.npz`` or of a :class:`Demonstrations` is kept (and checked against
        ``env``'s space): a file of frames loads as the stacks that were saved. Its id
        names the expert of ``expert:N``, and its time limit (``env.spec.max_episode_steps``) tells which episodes of
        a Stable-Baselines2 file were truncated.
    :param seed: for ``expert:N`` only: episode ``i`` is reset with ``seed + i``; ``None`` leaves it unseeded
    :param sb2_episode_end: for Stable-Baselines2 files only: ``"auto"`` takes an episode as truncated if it lasted
        exactly ``env``'s time limit and as terminated otherwise; ``"terminated"`` or ``"truncated"`` takes every
        episode that way. Either way, an episode whose rewards do not add up to its ``episode_returns`` is truncated.
    :return: the validated demonstrations
    :raises DemonstrationsNotFoundError: ``source`` is a path that does not exist and no local Minari dataset has that id
    :raises ValueError: malformed data (missing key, lengths that disagree, NaN/inf, values outside the spaces,
        no episode or an empty one, unknown format, arrays that would need pickle), a malformed ``"expert:N"`` or no
        built-in expert for ``env``; the message says where
    :raises TypeError: a source or a dtype of the wrong kind
    """
    if sb2_episode_end not in _SB2_EPISODE_ENDS:
        raise ValueError(f"sb2_episode_end must be 'auto', 'terminated' or 'truncated', got {sb2_episode_end!r}")
    where, episodes, observation_space, action_space, frame_stack = _read_source(source, env, seed, sb2_episode_end)
    if env is not None:
        observation_space, action_space = _env_spaces(env)
    with _located(where):
        return Demonstrations(episodes, observation_space, action_space, frame_stack)
