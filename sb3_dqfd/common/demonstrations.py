"""The canonical, validated in-memory form of expert demonstrations (:class:`Episode`, :class:`Demonstrations`)."""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, overload

import numpy as np
from gymnasium import spaces


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
    :func:`sb3_dqfd.record_demonstrations`.

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
        self.episodes: tuple[Episode, ...] = tuple(episodes)
        if len(self.episodes) == 0:
            raise ValueError("Demonstrations must hold at least one episode (got none)")
        self.observation_space = observation_space
        self.action_space = action_space

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
