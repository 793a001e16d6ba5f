"""The DQfD replay buffer: a permanent demonstration region, an agent ring, n-step windows and prioritized sampling."""

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize

from sb3_dqfd.common.demonstrations import Demonstrations
from sb3_dqfd.common.sum_tree import SumTree

# Arrays of the flat storage; the agent region of each is also exposed under the same name with SB3's
# [buffer_size, n_envs, ...] layout (a view), so SB3 code that reads `replay_buffer.observations` keeps working.
_STORAGE_KEYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


class DQfDReplayBufferSamples(NamedTuple):
    """
    A batch from :class:`DQfDReplayBuffer`: row ``i`` of every field belongs to the transition at ``indices[i]``.

    ``B`` is the batch size; "the k kept steps" are the steps of the n-step window (``1 <= k <= n``).
    """

    observations: th.Tensor  # [B, *obs_shape]
    actions: th.Tensor  # [B, action_dim] (int64 [B, 1] for Discrete)
    next_observations: th.Tensor  # [B, *obs_shape], 1-step next observation
    dones: th.Tensor  # [B, 1], 1.0 if the 1-step transition terminated (a timeout is not terminal)
    rewards: th.Tensor  # [B, 1], r_t
    n_step_next_observations: th.Tensor  # [B, *obs_shape], observation after the k kept steps
    n_step_returns: th.Tensor  # [B, 1], sum_{i<k} gamma^i r_{t+i}
    n_step_dones: th.Tensor  # [B, 1], 1.0 if the window ended by termination (no bootstrap)
    n_step_discounts: th.Tensor  # [B, 1], gamma^k
    is_demo: th.Tensor  # [B, 1], 1.0 for demonstration transitions
    weights: th.Tensor  # [B, 1], importance-sampling weights (ones when sampling uniformly)
    indices: np.ndarray  # [B], buffer indices to pass back to update_priorities


class DQfDReplayBuffer(ReplayBuffer):
    """
    Replay buffer for DQfD (Hester et al., 2018, https://arxiv.org/abs/1704.03732): demonstrations kept permanently,
    agent transitions in a FIFO ring, 1-step and n-step targets from the same sampled rows, proportional prioritized
    replay (Schaul et al., 2016, https://arxiv.org/abs/1511.05952) over both with a priority bonus for demonstrations.

    Layout: one flat storage of (at most) ``buffer_size`` transitions. Indices ``[0, n_demonstrations)``
    hold the demonstrations, laid end to end in episode order; the rest is the agent ring with SB3's layout
    ``[row, env]``: agent transition ``(row, env)`` has index ``n_demonstrations + row * n_envs + env``. The SB3
    attributes ``observations``, ``next_observations``, ``actions``, ``rewards``, ``dones``, ``timeouts`` are views of
    the agent region with shape ``[buffer_size, n_envs, ...]``; ``pos``, ``full`` and ``buffer_size`` (rows per env)
    describe the agent ring exactly as in SB3. Each observation is stored twice (obs and next obs), as SB3 does.
    :meth:`size` counts transitions (demonstrations and every env column). The demonstrations must leave the agent
    at least ``n_steps + 1`` rows: ``buffer_size >= n_demonstrations + n_envs * (n_steps + 1)``.

    n-step windows are computed at sample time (as SB3's ``NStepReplayBuffer``), vectorized over ``[B, n]`` index
    arrays. A window starting at ``t`` keeps steps ``t .. t+k-1`` and stops after the first step that
    (a) terminated: no bootstrap (``n_step_dones = 1``); (b) was truncated (SB3 timeout, or the end of a truncated
    demonstration episode): bootstrap from that step's stored next observation, the true final observation;
    (c) is the most recent agent row (the ring's write position is never crossed): bootstrap; or (d) is the ``n``-th.
    A window never leaves its env column, and demonstration windows never leave their episode.

    Priorities (proportional, keyed by buffer index): ``p_i = (|delta_i| + eps_i)^alpha`` with
    ``eps_i = demo_eps`` when index ``i`` holds a demonstration and ``agent_eps`` otherwise; new transitions get the
    largest priority set so far (1.0 at first). Sampling is stratified: the priority mass is cut into ``B`` equal
    segments and one transition drawn from each. Importance-sampling weights
    ``w_i = (N * P(i))^-beta / max_j (N * P(j))^-beta = (p_i / p_min)^-beta`` are normalized by the largest weight over
    the sampled population (the whole buffer; each part separately with ``demo_ratio``), as in Schaul et al.

    :param buffer_size: total number of transitions, demonstrations included; the agent ring gets what the
        demonstrations leave (``(buffer_size - n_demonstrations) // n_envs`` rows)
    :param observation_space: observation space (``Dict`` spaces are not supported)
    :param action_space: action space
    :param device: PyTorch device of the sampled tensors
    :param n_envs: number of parallel environments (one ring column each)
    :param optimize_memory_usage: not supported (must be False): n-step windows need the stored next observations
    :param handle_timeout_termination: treat SB3 timeouts (``infos[i]["TimeLimit.truncated"]``) as truncations that
        bootstrap, not as terminations. Demonstration episode ends always follow their own ``terminated`` flag.
    :param n_steps: ``n`` of the n-step returns
    :param gamma: discount factor of the n-step returns
    :param prioritized: sample proportionally to priorities; otherwise uniformly, with weights 1
    :param alpha: priority exponent (0: uniform)
    :param beta: importance-sampling exponent (0: no correction); the algorithm anneals it to 1
    :param agent_eps: ``eps_a`` added to ``|delta|`` for agent transitions
    :param demo_eps: ``eps_d`` added to ``|delta|`` for demonstration transitions (the demonstration bonus)
    :param demo_ratio: if set, each batch holds exactly ``round(demo_ratio * batch_size)`` (Python's ``round``)
        demonstration rows and the rest agent rows (Ape-X DQfD, R2D3), each part sampled by its own priorities (or
        uniformly); all rows come from one part while the other is empty. If ``None``, one distribution over all
        transitions, and the priorities set the mix (the paper)
    """

    observations: np.ndarray
    next_observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    timeouts: np.ndarray

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        n_steps: int = 10,
        gamma: float = 0.99,
        prioritized: bool = True,
        alpha: float = 0.4,
        beta: float = 0.6,
        agent_eps: float = 1e-3,
        demo_eps: float = 1.0,
        demo_ratio: float | None = None,
    ) -> None:
        self._check_arguments(observation_space, optimize_memory_usage, n_steps, gamma, alpha, agent_eps, demo_eps, demo_ratio)
        if n_envs < 1 or buffer_size < n_envs * (n_steps + 1):
            raise ValueError(
                f"DQfDReplayBuffer: buffer_size={buffer_size} is too small for n_envs={n_envs} and n_steps={n_steps}: "
                f"it must be at least n_envs * (n_steps + 1) = {max(n_envs, 1) * (n_steps + 1)}"
            )
        super().__init__(
            buffer_size,
            observation_space,
            action_space,
            device=device,
            n_envs=n_envs,
            optimize_memory_usage=False,
            handle_timeout_termination=handle_timeout_termination,
        )
        self.capacity = buffer_size
        self.n_steps = n_steps
        self.gamma = gamma
        self.prioritized = prioritized
        self.alpha = alpha
        self.beta = beta
        self.agent_eps = agent_eps
        self.demo_eps = demo_eps
        self.demo_ratio = demo_ratio
        # Largest priority set so far: the priority of new transitions (Schaul et al., Algorithm 1)
        self.max_priority = 1.0
        # gamma^j for j = 0..n, float64 so that gamma^k is exact to float32 precision
        self._gamma_powers = gamma ** np.arange(n_steps + 1, dtype=np.float64)
        self._steps = np.arange(n_steps, dtype=np.int64)
        self._n_demonstrations = 0
        self._allocate(n_demonstrations=0)

    @staticmethod
    def _check_arguments(
        observation_space: spaces.Space,
        optimize_memory_usage: bool,
        n_steps: int,
        gamma: float,
        alpha: float,
        agent_eps: float,
        demo_eps: float,
        demo_ratio: float | None,
    ) -> None:
        if isinstance(observation_space, spaces.Dict):
            raise ValueError(
                "DQfDReplayBuffer does not support Dict observation spaces (n-step windows over a demonstration region "
                "are implemented for array observations only): flatten the observations, e.g. with "
                "gymnasium.wrappers.FlattenObservation"
            )
        if optimize_memory_usage:
            raise ValueError(
                "DQfDReplayBuffer does not support optimize_memory_usage=True: n-step windows and timeouts need the "
                "stored next observations"
            )
        if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
            raise ValueError(f"DQfDReplayBuffer: n_steps must be an integer >= 1, got {n_steps!r}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"DQfDReplayBuffer: gamma must be in [0, 1], got {gamma}")
        if not alpha >= 0.0:
            raise ValueError(f"DQfDReplayBuffer: alpha must be >= 0, got {alpha}")
        if not agent_eps >= 0.0 or not demo_eps >= 0.0:
            raise ValueError(f"DQfDReplayBuffer: agent_eps and demo_eps must be >= 0, got {agent_eps} and {demo_eps}")
        if demo_ratio is not None and not 0.0 <= demo_ratio <= 1.0:
            raise ValueError(f"DQfDReplayBuffer: demo_ratio must be None or in [0, 1], got {demo_ratio}")

    @property
    def beta(self) -> float:
        """Importance-sampling exponent, ``>= 0``; the algorithm anneals it from 0.6 to 1."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        if not value >= 0.0:
            raise ValueError(f"DQfDReplayBuffer: beta must be >= 0, got {value}")
        self._beta = float(value)

    @property
    def n_demonstrations(self) -> int:
        """Number of demonstration transitions held (permanently)."""
        return self._n_demonstrations

    @property
    def n_agent_transitions(self) -> int:
        """Number of agent transitions held, over all env columns."""
        return (self.buffer_size if self.full else self.pos) * self.n_envs

    def size(self) -> int:
        """
        :return: the number of transitions that can be sampled, demonstrations included. Unlike SB3's
            ``ReplayBuffer.size()`` (rows of the ring) it counts every env column, as ``buffer_size`` did in the
            constructor; both agree for ``n_envs=1`` and no demonstrations.
        """
        return self._n_demonstrations + self.n_agent_transitions

    def _allocate(self, n_demonstrations: int) -> None:
        """(Re)allocate an empty flat storage with ``n_demonstrations`` demonstration slots and an empty agent ring."""
        self._n_demonstrations = n_demonstrations
        self.buffer_size = (self.capacity - n_demonstrations) // self.n_envs
        self.pos = 0
        self.full = False
        length = n_demonstrations + self.buffer_size * self.n_envs
        self._storage = {
            "observations": np.zeros((length, *self.obs_shape), dtype=self.observation_space.dtype),
            "next_observations": np.zeros((length, *self.obs_shape), dtype=self.observation_space.dtype),
            "actions": np.zeros((length, self.action_dim), dtype=self._maybe_cast_dtype(self.action_space.dtype)),
            "rewards": np.zeros(length, dtype=np.float32),
            "dones": np.zeros(length, dtype=np.float32),
            "timeouts": np.zeros(length, dtype=np.float32),
        }
        self._tree = SumTree(length) if self.prioritized else None
        self._make_agent_views()

    def _make_agent_views(self) -> None:
        """Expose the agent region of each flat array under SB3's name and ``[buffer_size, n_envs, ...]`` layout."""
        for key in _STORAGE_KEYS:
            array = self._storage[key]
            setattr(self, key, array[self._n_demonstrations :].reshape(self.buffer_size, self.n_envs, *array.shape[1:]))

    def __getstate__(self) -> dict[str, Any]:
        # Views would be pickled as copies (doubling the file and detaching them from the storage): rebuild them instead
        state = self.__dict__.copy()
        for key in _STORAGE_KEYS:
            del state[key]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._make_agent_views()

    def add_demonstrations(self, demonstrations: Demonstrations) -> None:
        """
        Store demonstrations in the permanent region (appended after any already there), at the largest priority.

        Must be called while the agent ring is empty (before the first :meth:`add`, or after :meth:`reset`), because
        the agent ring shrinks by the room the demonstrations take.

        :param demonstrations: the expert episodes; their observations and actions must fit the buffer's spaces
        """
        if not isinstance(demonstrations, Demonstrations):
            raise TypeError(f"add_demonstrations expects a Demonstrations, got {type(demonstrations).__name__}")
        if self.n_agent_transitions > 0:
            raise ValueError(
                f"add_demonstrations must be called before agent transitions are added (the buffer holds "
                f"{self.n_agent_transitions}); call reset() first to drop them"
            )
        new = self._demonstration_arrays(demonstrations)
        n_old = self._n_demonstrations
        n_total = n_old + len(new["rewards"])
        required = n_total + self.n_envs * (self.n_steps + 1)
        if self.capacity < required:
            raise ValueError(
                f"buffer_size={self.capacity} cannot hold {n_total} demonstration transitions plus room for the agent: "
                f"it must be at least n_demonstrations + n_envs * (n_steps + 1) = {required}"
            )
        old = {key: self._storage[key][:n_old].copy() for key in _STORAGE_KEYS}
        old_priorities = self._tree[np.arange(n_old)] if self._tree is not None else None
        self._allocate(n_total)
        for key in _STORAGE_KEYS:
            self._storage[key][:n_old] = old[key]
            self._storage[key][n_old:n_total] = new[key]
        if self._tree is not None and old_priorities is not None:
            self._tree.update(np.arange(n_old), old_priorities)
            self._tree.update(np.arange(n_old, n_total), self.max_priority)

    def _demonstration_arrays(self, demonstrations: Demonstrations) -> dict[str, np.ndarray]:
        """Flat storage arrays for the demonstrations, checked against the buffer's spaces."""
        transitions = demonstrations.to_transitions()
        n_transitions = len(transitions.rewards)
        observations = np.asarray(transitions.observations)
        next_observations = np.asarray(transitions.next_observations)
        # A Discrete observation is stored with shape (1,) by SB3; accept scalars per step
        scalar_obs = isinstance(self.observation_space, spaces.Discrete) and observations.ndim == 1
        if observations.shape[1:] != self.obs_shape and not scalar_obs:
            raise ValueError(
                f"Demonstration observations have shape {observations.shape[1:]} per step, the buffer's observation "
                f"space {self.observation_space} needs {self.obs_shape}"
            )
        actions = np.asarray(transitions.actions)
        if actions.size != n_transitions * self.action_dim:
            raise ValueError(
                f"Demonstration actions have shape {actions.shape[1:]} per step, the buffer's action space "
                f"{self.action_space} needs {self.action_dim} value(s) per step"
            )
        actions = actions.reshape(n_transitions, self.action_dim)
        if isinstance(self.action_space, spaces.Discrete):
            low, high = self.action_space.start, self.action_space.start + self.action_space.n
            if actions.min() < low or actions.max() >= high:
                raise ValueError(
                    f"Demonstration actions must lie in [{low}, {high}) for {self.action_space}, "
                    f"got min {actions.min()} and max {actions.max()}"
                )
        ends = transitions.episode_ends
        return {
            "observations": observations.reshape(n_transitions, *self.obs_shape),
            "next_observations": next_observations.reshape(n_transitions, *self.obs_shape),
            "actions": actions,
            "rewards": transitions.rewards,
            "dones": ends.astype(np.float32),
            # A truncated episode end bootstraps from its last observation: stored as a timeout
            "timeouts": (ends & ~transitions.terminations).astype(np.float32),
        }

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """
        Append one step of every env to the agent ring (overwriting the oldest row when full), at the largest priority.

        :param obs: observations, shape ``[n_envs, *obs_shape]``
        :param next_obs: next observations; on a done step the episode's final observation
            (``infos[i]["terminal_observation"]``, as SB3's ``_store_transition`` passes it)
        :param action: actions, shape ``[n_envs, *action_shape]``
        :param reward: rewards, shape ``[n_envs]``
        :param done: episode ended (terminated or truncated), shape ``[n_envs]``
        :param infos: one info dict per env; ``"TimeLimit.truncated"`` marks a timeout
        """
        row = self.pos
        super().add(obs, next_obs, action, reward, done, infos)
        if self._tree is not None:
            start = self._n_demonstrations + row * self.n_envs
            # Known-valid indices: skip SumTree.update's argument checks (this runs on every env step)
            self._tree._set(np.arange(start, start + self.n_envs), np.full(self.n_envs, self.max_priority))

    def set_demonstration_rewards(self, rewards: np.ndarray) -> None:
        """
        Replace the stored demonstration rewards (e.g. rescaled for a new env's reward transform); the rest stays.

        :param rewards: one reward per demonstration transition, in the order they were added, shape ``[n_demonstrations]``
        """
        rewards = np.asarray(rewards, dtype=np.float32)
        if rewards.shape != (self._n_demonstrations,):
            raise ValueError(
                f"set_demonstration_rewards: expected {self._n_demonstrations} rewards (one per demonstration "
                f"transition), got shape {rewards.shape}"
            )
        self._storage["rewards"][: self._n_demonstrations] = rewards

    def truncate_running_episodes(self) -> np.ndarray:
        """
        End every env's unfinished episode at its newest stored row, as a truncation (a timeout).

        The algorithm calls this when it resets the env mid-episode (a new ``learn()`` with ``reset_num_timesteps=True``,
        the first ``learn()`` after ``load`` or ``set_env``): the stored episode is cut there, so no n-step window
        runs on into the next episode's rewards and observations. A truncated row bootstraps from its stored next
        observation, which is the true one. Rows that already end an episode (terminated or truncated) are untouched.
        SB3 does the same in ``OffPolicyAlgorithm._setup_learn`` but only with ``optimize_memory_usage``.

        :return: the env columns that were truncated, shape ``[n_truncated]``
        """
        if self.n_agent_transitions == 0:
            return np.zeros(0, dtype=np.int64)
        newest = (self.pos - 1) % self.buffer_size
        running = np.flatnonzero(self.dones[newest] == 0)  # [n_running], env columns
        self.dones[newest, running] = 1.0
        self.timeouts[newest, running] = 1.0
        return running

    def reset(self) -> None:
        """Drop the agent transitions (and their priorities); the demonstrations stay."""
        super().reset()
        for key in _STORAGE_KEYS:
            self._storage[key][self._n_demonstrations :] = 0
        if self._tree is not None:
            self._tree.update(np.arange(self._n_demonstrations, len(self._storage["rewards"])), 0.0)

    def sample(  # type: ignore[override]
        self, batch_size: int, env: VecNormalize | None = None, demo_only: bool = False
    ) -> DQfDReplayBufferSamples:
        """
        Sample a batch, proportionally to priorities (``prioritized=True``) or uniformly.

        :param batch_size: number of rows
        :param env: the ``VecNormalize`` env, if any, to normalize observations and rewards
        :param demo_only: sample demonstrations only (pre-training)
        :return: the batch, rows aligned across fields (in sampling order, not shuffled)
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"DQfDReplayBuffer.sample: batch_size must be a positive integer, got {batch_size!r}")
        n_demos, n_agent = self._n_demonstrations, self.n_agent_transitions
        demo_part, agent_part = (0, n_demos), (n_demos, n_demos + n_agent)
        if demo_only:
            if n_demos == 0:
                raise ValueError("DQfDReplayBuffer.sample(demo_only=True): the buffer holds no demonstrations")
            parts = [(demo_part, batch_size)]
        elif n_demos + n_agent == 0:
            raise ValueError("DQfDReplayBuffer.sample: the buffer is empty")
        elif self.demo_ratio is None or n_agent == 0 or n_demos == 0:
            # One distribution over everything stored (demonstrations then agent data are contiguous)
            parts = [((0, n_demos + n_agent), batch_size)]
        else:
            n_demo_rows = round(self.demo_ratio * batch_size)
            parts = [(demo_part, n_demo_rows), (agent_part, batch_size - n_demo_rows)]
        parts = [(part, count) for part, count in parts if count > 0]
        if self._tree is None:
            indices = np.concatenate([np.random.randint(start, stop, size=count) for (start, stop), count in parts])
            return self._get_samples(indices, env=env)
        indices, weights = self._sample_prioritized(self._tree, parts)
        return self._get_samples(indices, env=env, weights=weights)

    def _sample_prioritized(self, tree: SumTree, parts: list[tuple[tuple[int, int], int]]) -> tuple[np.ndarray, np.ndarray]:
        """
        Stratified proportional sampling of ``count`` rows from each index range ``[start, stop)``.

        :param tree: the priorities
        :param parts: ``((start, stop), count)`` for each range
        :return: indices ``[B]`` and importance weights ``[B]``, normalized by the largest weight within each range
        """
        indices, weights = [], []
        for (start, stop), count in parts:
            # Leaves past size() (agent slots never written) have priority zero: the whole stored range is the tree
            whole = start == 0 and stop == self.size()
            mass = tree.total if whole else tree.range_sum(start, stop)
            if not mass > 0:
                # Every priority of the range is zero (eps = 0 and zero TD errors): no preference, sample uniformly
                indices.append(np.random.randint(start, stop, size=count))
                weights.append(np.ones(count))
                continue
            offset = tree.range_sum(0, start) if start > 0 else 0.0
            # Row r is drawn uniformly in the r-th of `count` equal segments of the range's priority mass
            prefix_sums = offset + (np.arange(count) + np.random.random_sample(count)) * (mass / count)
            # Float rounding at a range edge could step into the neighbouring range: clip (exact part counts)
            part_indices = np.clip(tree.find(prefix_sums), start, stop - 1)
            indices.append(part_indices)
            # w_i = (N P(i))^-beta / max_j (N P(j))^-beta = (p_i / p_min)^-beta, <= 1 since p_i >= p_min
            min_priority = tree.min if whole else tree.range_min(start, stop)
            weights.append(np.minimum((tree[part_indices] / min_priority) ** -self.beta, 1.0))
        if len(parts) == 1:
            return indices[0], weights[0]
        return np.concatenate(indices), np.concatenate(weights)

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """
        Set ``p_i = (|td_i| + eps_i)^alpha`` for the sampled transitions, with ``eps_i = demo_eps`` when buffer index
        ``i`` holds a demonstration and ``agent_eps`` otherwise. Does nothing when ``prioritized=False``.

        :param indices: buffer indices, as returned in :attr:`DQfDReplayBufferSamples.indices`, shape ``[B]``
        :param td_errors: TD errors of those rows, shape ``[B]`` or ``[B, 1]`` (numpy array or tensor)
        """
        if isinstance(td_errors, th.Tensor):
            td_errors = td_errors.detach().cpu().numpy()
        indices = np.asarray(indices).ravel()
        td_errors = np.asarray(td_errors, dtype=np.float64).ravel()
        if indices.size and not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"update_priorities: indices must be integers, got dtype {indices.dtype}")
        if indices.shape != td_errors.shape:
            raise ValueError(
                f"update_priorities got {indices.size} indices but {td_errors.size} TD errors (expected one per index)"
            )
        if indices.size and (indices.min() < 0 or indices.max() >= self.size()):
            raise ValueError(
                f"update_priorities: indices must lie in [0, {self.size()}) (the stored transitions), "
                f"got min {indices.min()} and max {indices.max()}"
            )
        if indices.size:
            self._set_priorities(indices, td_errors)

    def _set_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """
        :meth:`update_priorities` without its index checks, for the indices of a batch this buffer sampled.

        :param indices: buffer indices in ``[0, size())``, shape ``[B]``, ``B >= 1``
        :param td_errors: TD errors of those rows, shape ``[B]``
        """
        if not np.all(np.isfinite(td_errors)):
            # A diverged network: stop before a NaN priority poisons every sum above it in the tree
            raise ValueError(f"update_priorities: TD errors must be finite, got {td_errors[~np.isfinite(td_errors)]}")
        if self._tree is None:
            return
        # The bonus follows what the index holds, not the row's position in the batch
        eps = np.where(indices < self._n_demonstrations, self.demo_eps, self.agent_eps)
        priorities = (np.abs(td_errors) + eps) ** self.alpha
        self._tree._set(indices.astype(np.int64, copy=False), priorities)
        self.max_priority = max(self.max_priority, float(priorities.max()))

    def priorities(self, indices: np.ndarray) -> np.ndarray:
        """
        Current priorities ``p_i`` (before normalization into probabilities).

        :param indices: buffer indices
        :return: the priorities, float64, same shape as ``indices``
        """
        if self._tree is None:
            raise ValueError("DQfDReplayBuffer.priorities: the buffer samples uniformly (prioritized=False)")
        return self._tree[indices]

    def _windows(self, indices: np.ndarray, is_demo: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """
        Flat indices of the ``n`` steps starting at each transition, and where a step is the newest agent row.

        A demonstration steps +1 in the flat demonstration stream: the last demonstration transition ends an episode,
        so steps read past it (into the agent region, which always has ``n_steps + 1`` rows) are always masked.
        An agent transition steps +1 row in its own env column, wrapping around the ring.

        :param indices: flat buffer indices, shape ``[B]``
        :param is_demo: which of them are demonstrations, shape ``[B]``
        :return: the windows ``[B, n]``, and ``[B, n]`` True on the newest agent row (None if no agent row)
        """
        n_demos, n_envs = self._n_demonstrations, self.n_envs
        if is_demo.all():
            return indices[:, None] + self._steps, None
        # Step j of an agent transition is j rows later in the same env column: agent offset + j * n_envs, wrapped
        # once around the ring (offset < ring and j * n_envs < ring). Integer division on [B, n] is slow: none here.
        ring = self.buffer_size * n_envs
        offsets = (indices - n_demos)[:, None] + self._steps * n_envs  # [B, n]
        offsets -= ring * (offsets >= ring)
        newest_start = (self.pos - 1) % self.buffer_size * n_envs  # first agent offset of the newest row
        newest = (offsets >= newest_start) & (offsets < newest_start + n_envs)
        window = offsets + n_demos
        if is_demo.any():
            window = np.where(is_demo[:, None], indices[:, None] + self._steps, window)
            newest &= ~is_demo[:, None]
        return window, newest

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: VecNormalize | None = None, weights: np.ndarray | None = None
    ) -> DQfDReplayBufferSamples:
        """
        Gather the 1-step and n-step fields of the transitions at flat indices ``batch_inds``, vectorized over
        ``[B, n]`` window index arrays.

        :param batch_inds: flat buffer indices, shape ``[B]``
        :param env: the ``VecNormalize`` env, if any
        :param weights: importance-sampling weights ``[B]`` (ones if None)
        :return: the batch
        """
        storage = self._storage
        indices = np.asarray(batch_inds, dtype=np.int64)
        is_demo = indices < self._n_demonstrations  # [B]
        window, newest = self._windows(indices, is_demo)  # [B, n]

        # Step j ends the window if it is an episode end (termination or truncation) or the newest agent row
        ends = storage["dones"][window] > 0  # [B, n]
        if newest is not None:
            ends |= newest
        ends[:, -1] = True  # the n-th step ends every window that got that far
        last_step = ends.argmax(axis=1)  # [B], index of the k-th (last kept) step: the first end
        kept = self._steps <= last_step[:, None]  # [B, n]

        rewards = self._normalize_reward(storage["rewards"][window], env)  # [B, n]
        n_step_returns = (rewards * kept) @ self._gamma_powers[:-1]  # [B]
        last = np.take_along_axis(window, last_step[:, None], axis=1)[:, 0]  # [B]
        n_step_dones = storage["dones"][last] * (1.0 - storage["timeouts"][last])
        dones = storage["dones"][indices] * (1.0 - storage["timeouts"][indices])
        if weights is None:
            weights = np.ones(len(indices))

        def column(array: np.ndarray) -> th.Tensor:
            return self.to_torch(np.asarray(array, dtype=np.float32).reshape(-1, 1), copy=False)

        def observations(array: np.ndarray) -> th.Tensor:
            return self.to_torch(self._normalize_obs(array, env), copy=False)  # type: ignore[arg-type]

        return DQfDReplayBufferSamples(
            observations=observations(storage["observations"][indices]),
            actions=self.to_torch(storage["actions"][indices], copy=False),
            next_observations=observations(storage["next_observations"][indices]),
            dones=column(dones),
            rewards=column(rewards[:, 0]),
            n_step_next_observations=observations(storage["next_observations"][last]),
            n_step_returns=column(n_step_returns),
            n_step_dones=column(n_step_dones),
            n_step_discounts=column(self._gamma_powers[last_step + 1]),
            is_demo=column(is_demo),
            weights=column(weights),
            indices=indices,
        )
