"""The DQfD replay buffer: a permanent demonstration region, an agent ring, n-step windows and prioritized sampling."""

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.vec_env import VecNormalize
from stable_baselines3.common.vec_env.stacked_observations import StackedObservations

from sb3_dqfd.common.demonstrations import Demonstrations
from sb3_dqfd.common.sum_tree import SumTree

# Arrays of the flat storage; the agent region of each is also exposed under the same name with SB3's
# [buffer_size, n_envs, ...] layout (a view), so SB3 code that reads `replay_buffer.observations` keeps working.
_STORAGE_KEYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
_OBSERVATION_KEYS = ("observations", "next_observations")
# Subspaces a Dict observation space may have (SB3's get_obs_shape gives each a flat array shape)
_ARRAY_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)

#: Observations as the buffers hold them: one array, or for a ``Dict`` space one array per key (SB3's layout)
ObsArray = np.ndarray | dict[str, np.ndarray]


def _map_obs(function: Callable[..., Any], *values: Any) -> Any:
    """
    ``function`` applied to arrays, or key by key to dicts of arrays (then a dict in the first one's key order).

    :param function: called with one array of each value
    :param values: arrays, or dicts of arrays with the same keys
    """
    if isinstance(values[0], dict):
        return {key: function(*(value[key] for value in values)) for key in values[0]}
    return function(*values)


def _leaves(value: ObsArray) -> Iterator[np.ndarray]:
    """The array, or each array of a dict."""
    if isinstance(value, dict):
        yield from value.values()
    else:
        yield value


def _first(value: ObsArray) -> np.ndarray:
    """The array, or the first array of a dict (the arrays of a dict have the same length)."""
    return next(iter(value.values())) if isinstance(value, dict) else value


def _check_observation_space(observation_space: spaces.Space, name: str) -> None:
    """Raise a ValueError for a Dict observation space that is not flat (every subspace an array space)."""
    if not isinstance(observation_space, spaces.Dict):
        return
    if len(observation_space.spaces) == 0:
        raise ValueError(f"{name}: the Dict observation space has no keys")
    for key, subspace in observation_space.spaces.items():
        if not isinstance(subspace, _ARRAY_SPACES):
            raise ValueError(
                f"{name}: observation key {key!r} is a {type(subspace).__name__} space ({subspace}): a Dict observation "
                "space must be flat, each key a Box, Discrete, MultiDiscrete or MultiBinary space (nested Dict and Tuple "
                "spaces are not supported: flatten that key into one Box, e.g. with gymnasium.spaces.flatten_space)"
            )


def _key_mismatch(got: Mapping[str, Any], expected: tuple[str, ...]) -> str | None:
    """:return: None if ``got`` has exactly the ``expected`` keys, else what is missing and what is unexpected."""
    missing = [key for key in expected if key not in got]
    unexpected = [key for key in got if key not in expected]
    if not missing and not unexpected:
        return None
    return f"missing {missing}, unexpected {unexpected}"


class DQfDReplayBufferSamples(NamedTuple):
    """
    A batch from :class:`DQfDReplayBuffer`: row ``i`` of every field belongs to the transition at ``indices[i]``.

    ``B`` is the batch size; "the k kept steps" are the steps of the n-step window (``1 <= k <= n``). For a ``Dict``
    observation space the three observation fields are dicts of ``[B, *shape_k]`` tensors (as SB3's
    ``DictReplayBufferSamples``), in the space's key order.
    """

    observations: PyTorchObs  # [B, *obs_shape]
    actions: th.Tensor  # [B, action_dim] (int64 [B, 1] for Discrete)
    next_observations: PyTorchObs  # [B, *obs_shape], 1-step next observation
    dones: th.Tensor  # [B, 1], 1.0 if the 1-step transition terminated (a timeout is not terminal)
    rewards: th.Tensor  # [B, 1], r_t
    n_step_next_observations: PyTorchObs  # [B, *obs_shape], observation after the k kept steps
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
    With a ``Dict`` observation space (flat: Box, Discrete, MultiDiscrete or MultiBinary keys) each key has its own
    flat arrays, and ``observations`` / ``next_observations`` are dicts of ``[buffer_size, n_envs, *shape_k]`` views,
    as in SB3's ``DictReplayBuffer``; :meth:`add` takes and :meth:`sample` returns dicts.
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
    :param observation_space: observation space; a ``Dict`` space must be flat (no nested ``Dict`` or ``Tuple``)
    :param action_space: the space of the stored actions (SAC and TD3 store them scaled to ``[-1, 1]``: pass that
        space). Demonstration actions must lie in it: Discrete indices in range, Box actions within the bounds
        (refused otherwise, never clipped)
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

    observations: ObsArray  # type: ignore[assignment]
    next_observations: ObsArray  # type: ignore[assignment]
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    timeouts: np.ndarray
    # The flat storage arrays (each also exposed as an agent view, see _make_agent_views)
    _storage_keys: tuple[str, ...] = _STORAGE_KEYS
    # Flat arrays by storage key; for a Dict observation space the observation entries are dicts of arrays (ObsArray)
    _storage: dict[str, Any]

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
        if isinstance(observation_space, spaces.Dict):
            # SB3's ReplayBuffer.__init__ allocates one array for the whole observation, impossible for a Dict: set
            # what it sets without allocating, as SB3's DictReplayBuffer does (_allocate makes the arrays)
            super(ReplayBuffer, self).__init__(buffer_size, observation_space, action_space, device=device, n_envs=n_envs)
            self.buffer_size = max(buffer_size // n_envs, 1)
            self.optimize_memory_usage = False
            self.handle_timeout_termination = handle_timeout_termination
        else:
            super().__init__(
                self._sb3_buffer_size(buffer_size, n_envs),
                observation_space,
                action_space,
                device=device,
                n_envs=n_envs,
                optimize_memory_usage=False,
                handle_timeout_termination=handle_timeout_termination,
            )
        # Keys of a Dict observation space, in its order (None: one array per observation)
        self._obs_keys: tuple[str, ...] | None = (
            tuple(observation_space.spaces) if isinstance(observation_space, spaces.Dict) else None
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
        _check_observation_space(observation_space, "DQfDReplayBuffer")
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

    @staticmethod
    def _sb3_buffer_size(buffer_size: int, n_envs: int) -> int:
        """The ``buffer_size`` passed to SB3's ``ReplayBuffer.__init__`` (its arrays are replaced by :meth:`_allocate`)."""
        return buffer_size

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
        layout = {
            "actions": ((self.action_dim,), self._maybe_cast_dtype(self.action_space.dtype)),
            "rewards": ((), np.float32),
            "dones": ((), np.float32),
            "timeouts": ((), np.float32),
        }
        self._storage = {}
        for key in self._storage_keys:
            if key in _OBSERVATION_KEYS:
                self._storage[key] = self._zero_observations(length)
            else:
                shape, dtype = layout[key]
                self._storage[key] = np.zeros((length, *shape), dtype=dtype)
        self._tree = SumTree(length) if self.prioritized else None
        self._make_agent_views()

    def _zero_observations(self, length: int) -> ObsArray:
        """:return: ``length`` zero observations, ``[length, *obs_shape]`` (a dict of ``[length, *shape_k]`` for Dict)"""
        space = self.observation_space
        if not isinstance(space, spaces.Dict):
            return np.zeros((length, *self.obs_shape), dtype=space.dtype)
        return {key: np.zeros((length, *self._key_shapes[key]), dtype=space[key].dtype) for key in space.spaces}

    @property
    def _key_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of each key of a Dict observation space (SB3's ``obs_shape``, a dict for a Dict space)."""
        return self.obs_shape  # type: ignore[return-value]

    def _is_discrete_key(self, key: str) -> bool:
        """Whether a key of a Dict observation space is Discrete (SB3 stores it with shape (1,), VecEnvs give scalars)."""
        space = self.observation_space
        return isinstance(space, spaces.Dict) and isinstance(space[key], spaces.Discrete)

    def _make_agent_views(self) -> None:
        """Expose the agent region of each flat array under SB3's name and ``[buffer_size, n_envs, ...]`` layout."""
        n_demos, rows, n_envs = self._n_demonstrations, self.buffer_size, self.n_envs
        for key in self._storage_keys:
            view = _map_obs(lambda array: array[n_demos:].reshape(rows, n_envs, *array.shape[1:]), self._storage[key])
            setattr(self, key, view)

    def __getstate__(self) -> dict[str, Any]:
        # Views would be pickled as copies (doubling the file and detaching them from the storage): rebuild them instead
        state = self.__dict__.copy()
        for key in self._storage_keys:
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
        old = {key: _map_obs(lambda array: array[:n_old].copy(), self._storage[key]) for key in self._storage_keys}
        old_priorities = self._tree[np.arange(n_old)] if self._tree is not None else None
        self._allocate(n_total)

        def store(array: np.ndarray, old_part: np.ndarray, new_part: np.ndarray) -> None:
            array[:n_old] = old_part
            array[n_old:n_total] = new_part

        for key in self._storage_keys:
            _map_obs(store, self._storage[key], old[key], new[key])
        if self._tree is not None and old_priorities is not None:
            self._tree.update(np.arange(n_old), old_priorities)
            self._tree.update(np.arange(n_old, n_total), self.max_priority)

    def _demonstration_arrays(self, demonstrations: Demonstrations) -> dict[str, Any]:
        """
        Flat storage arrays for the demonstrations, checked against the buffer's spaces (observation entries are
        dicts of arrays for a Dict observation space).
        """
        transitions = demonstrations.to_transitions()
        n_transitions = len(transitions.rewards)
        observations: ObsArray
        next_observations: ObsArray
        if self._obs_keys is None:
            observations = np.asarray(transitions.observations)
            next_observations = np.asarray(transitions.next_observations)
            # A Discrete observation is stored with shape (1,) by SB3; accept scalars per step
            scalar_obs = isinstance(self.observation_space, spaces.Discrete) and observations.ndim == 1
            if observations.shape[1:] != self.obs_shape and not scalar_obs:
                raise ValueError(
                    f"Demonstration observations have shape {observations.shape[1:]} per step, the buffer's observation "
                    f"space {self.observation_space} needs {self.obs_shape}"
                )
            observations = observations.reshape(n_transitions, *self.obs_shape)
            next_observations = next_observations.reshape(n_transitions, *self.obs_shape)
        else:
            observations = self._demonstration_dict(transitions.observations, n_transitions, "observations")
            next_observations = self._demonstration_dict(transitions.next_observations, n_transitions, "next_observations")
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
        elif isinstance(self.action_space, spaces.Box):
            # Refused, not clipped: a silently clipped action is not the one the expert chose (NaN fails both tests)
            low, high = self.action_space.low.reshape(-1), self.action_space.high.reshape(-1)  # [action_dim]
            if not np.all((actions >= low) & (actions <= high)):
                raise ValueError(
                    f"Demonstration actions must lie within the bounds of {self.action_space} (they are not clipped: "
                    f"clip them yourself if the env clips them too), got min {actions.min(axis=0)} and max "
                    f"{actions.max(axis=0)} per dimension"
                )
        ends = transitions.episode_ends
        return {
            "observations": observations,
            "next_observations": next_observations,
            "actions": actions,
            "rewards": transitions.rewards,
            "dones": ends.astype(np.float32),
            # A truncated episode end bootstraps from its last observation: stored as a timeout
            "timeouts": (ends & ~transitions.terminations).astype(np.float32),
        }

    def _demonstration_dict(self, value: Any, n_transitions: int, name: str) -> dict[str, np.ndarray]:
        """
        :param value: the demonstrations' (next) observations of a Dict observation space, ``[N, *shape_k]`` per key
        :param n_transitions: ``N``
        :param name: the field, for messages
        :return: them in the space's key order, each ``[N, *obs_shape[k]]``
        """
        keys = self._obs_keys or ()  # only called for Dict spaces
        if not isinstance(value, Mapping):
            raise ValueError(
                f"Demonstration {name} are a single {type(value).__name__}, the buffer's observation space is a Dict with "
                f"keys {list(keys)}: the demonstrations must hold one array per key (record them in the Dict env)"
            )
        mismatch = _key_mismatch(value, keys)
        if mismatch is not None:
            raise ValueError(
                f"Demonstration {name} have keys {list(value)}, the buffer's observation space has keys {list(keys)} "
                f"({mismatch})"
            )
        arrays, wrong = {}, []
        for key in keys:
            array = np.asarray(value[key])
            shape = self._key_shapes[key]
            # A Discrete key is stored with shape (1,) by SB3; accept scalars per step
            scalar = self._is_discrete_key(key) and array.ndim == 1
            if array.ndim == 0 or len(array) != n_transitions:
                wrong.append(f"{key!r} has shape {array.shape}, {n_transitions} steps expected")
            elif array.shape[1:] != shape and not scalar:
                wrong.append(f"{key!r} has shape {array.shape[1:]} per step, the space needs {shape}")
            else:
                arrays[key] = array.reshape(n_transitions, *shape)
        if wrong:
            raise ValueError(
                f"Demonstration {name} do not fit the buffer's observation space {self.observation_space} "
                f"({n_transitions} transitions): " + "; ".join(wrong)
            )
        return arrays

    def _agent_dict(self, value: Any, name: str) -> dict[str, np.ndarray]:
        """
        :param value: (next) observations of every env for a Dict observation space, ``[n_envs, *shape_k]`` per key
            (``[n_envs]`` accepted for a Discrete key, as SB3's VecEnv gives them)
        :param name: the argument, for messages
        :return: them in the space's key order, each ``[n_envs, *obs_shape[k]]``
        """
        keys = self._obs_keys or ()  # only called for Dict spaces
        if not isinstance(value, Mapping):
            raise ValueError(
                f"{type(self).__name__}.add: {name} is a single {type(value).__name__}, the observation space is a Dict "
                f"with keys {list(keys)}: pass a dict with one array per key, as SB3's VecEnvs return them"
            )
        mismatch = _key_mismatch(value, keys)
        if mismatch is not None:
            raise ValueError(
                f"{type(self).__name__}.add: {name} has keys {list(value)}, the observation space has keys {list(keys)} "
                f"({mismatch})"
            )
        arrays = {}
        for key in keys:
            array = np.asarray(value[key])
            shape = (self.n_envs, *self._key_shapes[key])
            scalar = self._is_discrete_key(key) and array.shape == (self.n_envs,)
            if array.shape != shape and not scalar:
                raise ValueError(
                    f"{type(self).__name__}.add: {name}[{key!r}] has shape {array.shape}, the observation space needs "
                    f"{shape} ([n_envs, *shape] with n_envs={self.n_envs})"
                )
            arrays[key] = array.reshape(shape)
        return arrays

    def add(  # type: ignore[override]
        self,
        obs: ObsArray,
        next_obs: ObsArray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """
        Append one step of every env to the agent ring (overwriting the oldest row when full), at the largest priority.

        :param obs: observations, shape ``[n_envs, *obs_shape]``; for a Dict space a dict with every key of the space,
            ``[n_envs, *shape_k]`` each (a ValueError names a missing or unexpected key, or a wrong shape, and nothing
            is stored)
        :param next_obs: next observations; on a done step the episode's final observation
            (``infos[i]["terminal_observation"]``, as SB3's ``_store_transition`` passes it)
        :param action: actions, shape ``[n_envs, *action_shape]``
        :param reward: rewards, shape ``[n_envs]``
        :param done: episode ended (terminated or truncated), shape ``[n_envs]``
        :param infos: one info dict per env; ``"TimeLimit.truncated"`` marks a timeout
        """
        if self._obs_keys is None:
            row = self.pos
            super().add(obs, next_obs, action, reward, done, infos)  # type: ignore[arg-type]
            self._prioritize_new_row(row)
            return
        # Everything converted and checked before anything is written
        obs, next_obs = self._agent_dict(obs, "obs"), self._agent_dict(next_obs, "next_obs")
        fields = self._row_fields(action, reward, done, infos)
        for key in self._obs_keys:
            self.observations[key][self.pos] = obs[key]  # type: ignore[index]
            self.next_observations[key][self.pos] = next_obs[key]  # type: ignore[index]
        self._write_row(fields)

    def _row_fields(
        self, action: np.ndarray, reward: np.ndarray, done: np.ndarray, infos: list[dict[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """
        :return: the actions ``[n_envs, action_dim]``, rewards, dones and timeouts (None when not handled) ``[n_envs]``
            of one :meth:`add`, shaped as a row of the agent views (a bad shape raises here, before anything is stored)
        """
        n_envs = self.n_envs
        timeouts = None
        if self.handle_timeout_termination:
            timeouts = np.array([info.get("TimeLimit.truncated", False) for info in infos]).reshape(n_envs)
        action = np.asarray(action).reshape(n_envs, self.action_dim)
        return action, np.asarray(reward).reshape(n_envs), np.asarray(done).reshape(n_envs), timeouts

    def _write_row(self, fields: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]) -> None:
        """Store :meth:`_row_fields` at the write position, advance it (as SB3) and give the row the largest priority."""
        row = self.pos
        self.actions[row], self.rewards[row], self.dones[row], timeouts = fields
        if timeouts is not None:
            self.timeouts[row] = timeouts
        self.pos = (row + 1) % self.buffer_size
        self.full = self.full or self.pos == 0
        self._prioritize_new_row(row)

    def _prioritize_new_row(self, row: int) -> None:
        """Give the transitions of agent row ``row`` (every env) the largest priority set so far."""
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
        for key in self._storage_keys:
            for array in _leaves(self._storage[key]):
                array[self._n_demonstrations :] = 0
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

        def observations(array: ObsArray) -> PyTorchObs:
            # SB3's VecNormalize normalizes a dict key by key (its norm_obs_keys)
            return _map_obs(lambda normalized: self.to_torch(normalized, copy=False), self._normalize_obs(array, env))

        obs, next_obs, n_step_next_obs = self._gather_observations(indices, last)
        return DQfDReplayBufferSamples(
            observations=observations(obs),
            actions=self.to_torch(storage["actions"][indices], copy=False),
            next_observations=observations(next_obs),
            dones=column(dones),
            rewards=column(rewards[:, 0]),
            n_step_next_observations=observations(n_step_next_obs),
            n_step_returns=column(n_step_returns),
            n_step_dones=column(n_step_dones),
            n_step_discounts=column(self._gamma_powers[last_step + 1]),
            is_demo=column(is_demo),
            weights=column(weights),
            indices=indices,
        )

    def _gather_observations(self, indices: np.ndarray, last: np.ndarray) -> tuple[ObsArray, ObsArray, ObsArray]:
        """
        :param indices: flat indices of the sampled transitions, shape ``[B]``
        :param last: flat indices of the last kept step of their n-step windows, shape ``[B]``
        :return: the observations and next observations of ``indices``, and the next observations of ``last``,
            each ``[B, *obs_shape]`` (dicts of ``[B, *shape_k]`` for a Dict space)
        """
        observations, next_observations = self._storage["observations"], self._storage["next_observations"]
        if self._obs_keys is None:
            return observations[indices], next_observations[indices], next_observations[last]
        return (
            {key: array[indices] for key, array in observations.items()},
            {key: array[indices] for key, array in next_observations.items()},
            {key: array[last] for key, array in next_observations.items()},
        )


class _FrameLayout(NamedTuple):
    """How :class:`CompactDQfDReplayBuffer` cuts one stacked observation (or one key of a Dict observation) into frames."""

    key: str | None  # the key in a Dict observation space; None for a Box observation space
    stack_axis: int  # axis of the stack within one observation (SB3 concatenates the frames oldest first along it)
    frame_shape: tuple[int, ...]  # one frame: obs_shape with obs_shape[stack_axis] // n_stack along the stack axis
    obs_shape: tuple[int, ...]  # the stacked observation
    dtype: np.dtype

    @property
    def where(self) -> str:
        """The key, for messages ("" for a Box observation space)."""
        return "" if self.key is None else f" (observation key {self.key!r})"


class CompactDQfDReplayBuffer(DQfDReplayBuffer):
    """
    :class:`DQfDReplayBuffer` that stores each observation frame once: same sampling, priorities, fields and
    semantics, but no second copy for the next observations and, behind frame stacking (SB3's ``VecFrameStack``), no
    ``n_stack`` copies of a frame. For 84x84 Atari frames stacked by 4 this is ~7 KB per transition instead of ~56 KB.

    The buffer receives the stacked observation space and stacked observations, as SB3 passes them; the stacking axis
    follows ``StackedObservations.compute_stacking`` (channels first or last, detected for images as ``VecFrameStack``
    does, the last axis otherwise). A *frame* is one slice of ``observation_space.shape[axis] // n_stack`` along it;
    with ``n_stack=1`` the frame is the whole observation ("observation stored once").

    A ``Dict`` observation space is stacked key by key, as ``VecFrameStack`` stacks it: every key must be a ``Box``,
    has its own stacking axis (``channels_order`` may be a dict by key, as for ``VecFrameStack``) and is stored as
    frames in the same way, with the shared ``n_stack`` (so non-image keys are stored once too); the stacking checks
    below apply to every key. ``frame_shape`` and ``stack_axis`` are then dicts by key, :meth:`add` takes and
    :meth:`sample` returns dicts, as for :class:`DQfDReplayBuffer`.

    Storage, one frame array per region (each ends with a zero frame, the padding), per key for a Dict space:

    * demonstrations: the ``T + 1`` newest frames of each episode (its observations and its final observation);
    * agent ring: the newest frame of each stored row, in a frame ring ``n_stack - 1`` rows longer than the
      transition ring (so that the oldest rows keep their whole stack: every stored transition can be sampled), the
      pending next frame of each env's newest row (its next observation, before the next ``add``), and in a separate,
      growing FIFO the final frame of each episode end (terminal or truncated next observation, or a row cut by
      :meth:`truncate_running_episodes`), released when its row is overwritten.

    Stacks are rebuilt at sample time, vectorized over ``[B, n_stack]`` frame indices (computed once for every key):
    the observation of step ``t`` is the frames of steps ``t - n_stack + 1 .. t`` of its episode (env column), zero
    frames before the episode's first step, as ``VecFrameStack`` pads after a reset; its next observation is that stack
    shifted by one frame plus the next frame (step ``t + 1``'s, or the final or pending frame). Every :meth:`add` checks
    that its observations are stacked this way (``VecFrameStack`` with the same ``n_stack``, and ``obs`` continuing the
    previous next observation of its env unless that step ended the episode) and raises a ValueError before storing
    anything otherwise; the demonstrations are checked the same way, episode by episode. So a
    ``learn(reset_num_timesteps=False)`` after replacing the buffer mid-episode (``load_replay_buffer``) is refused:
    start with ``reset_num_timesteps=True``.

    Unlike :class:`DQfDReplayBuffer` there are no ``observations`` / ``next_observations`` attributes (SB3 code that
    reads them, e.g. ``optimize_memory_usage`` or HER, does not apply); ``actions``, ``rewards``, ``dones`` and
    ``timeouts`` are the same agent views, and sampled batches are identical to those of a ``DQfDReplayBuffer`` fed the
    same transitions.

    :param n_stack: number of stacked frames per observation (``VecFrameStack``'s ``n_stack``; 1: no stacking)
    :param channels_order: ``"first"``, ``"last"`` or None (detected), as for ``VecFrameStack``; for a Dict space also
        a dict with one of these per key
    :param kwargs: see :class:`DQfDReplayBuffer` (``observation_space`` must be a ``Box``, or a ``Dict`` of ``Box``)
    """

    _storage_keys = ("actions", "rewards", "dones", "timeouts")
    frame_shape: tuple[int, ...] | dict[str, tuple[int, ...]]
    stack_axis: int | dict[str, int]

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
        n_stack: int = 1,
        channels_order: str | Mapping[str, str | None] | None = None,
    ) -> None:
        _check_observation_space(observation_space, "CompactDQfDReplayBuffer")
        if not isinstance(observation_space, (spaces.Box, spaces.Dict)):
            raise TypeError(
                "CompactDQfDReplayBuffer needs a Box observation space (frames of an array), or a Dict space of them, "
                f"got {observation_space}"
            )
        if isinstance(n_stack, bool) or not isinstance(n_stack, (int, np.integer)) or n_stack < 1:
            raise ValueError(f"CompactDQfDReplayBuffer: n_stack must be an integer >= 1, got {n_stack!r}")
        self._dict_obs = isinstance(observation_space, spaces.Dict)
        self._layouts = self._frame_layouts(observation_space, int(n_stack), channels_order)
        self.n_stack = int(n_stack)
        self.channels_order = channels_order
        if self._dict_obs:
            self.frame_shape = {key: layout.frame_shape for key, layout in self._layouts.items() if key is not None}
            self.stack_axis = {key: layout.stack_axis for key, layout in self._layouts.items() if key is not None}
        else:
            self.frame_shape, self.stack_axis = self._layouts[None].frame_shape, self._layouts[None].stack_axis
        # Position j of a stack holds the frame `_back[j]` steps before the newest one
        self._back = np.arange(n_stack - 1, -1, -1, dtype=np.int64)  # [n_stack]
        # The zero frame only
        self._demo_frames: ObsArray = self._per_key(lambda layout: np.zeros((1, *layout.frame_shape), dtype=layout.dtype))
        self._demo_frame_index = np.zeros(0, dtype=np.int64)  # [n_demonstrations], frame of each observation
        self._demo_ages = np.zeros(0, dtype=np.int64)  # [n_demonstrations], steps since the episode start (clipped)
        self._new_demonstration_frames: tuple[ObsArray, np.ndarray, np.ndarray] | None = None
        super().__init__(
            buffer_size,
            observation_space,
            action_space,
            device=device,
            n_envs=n_envs,
            optimize_memory_usage=optimize_memory_usage,
            handle_timeout_termination=handle_timeout_termination,
            n_steps=n_steps,
            gamma=gamma,
            prioritized=prioritized,
            alpha=alpha,
            beta=beta,
            agent_eps=agent_eps,
            demo_eps=demo_eps,
            demo_ratio=demo_ratio,
        )
        if not self._dict_obs:
            # SB3's ReplayBuffer allocated these (one row, see _sb3_buffer_size): the frames replace them
            del self.observations, self.next_observations

    @staticmethod
    def _frame_layouts(
        observation_space: spaces.Box | spaces.Dict, n_stack: int, channels_order: str | Mapping[str, str | None] | None
    ) -> dict[str | None, _FrameLayout]:
        """
        :return: the frame layout of the observation (key None), or of each key of a Dict space (in its order), with
            the stacking axis ``VecFrameStack`` (``StackedObservations``) uses for it
        """
        entries: list[tuple[str | None, spaces.Space, Any]]  # key, subspace, channels order
        if isinstance(observation_space, spaces.Dict):
            # As StackedObservations: one order for every key, or one per key
            if isinstance(channels_order, Mapping):
                missing = [key for key in observation_space.spaces if key not in channels_order]
                if missing:
                    raise ValueError(
                        f"CompactDQfDReplayBuffer: channels_order {dict(channels_order)} has no entry for the observation "
                        f"keys {missing}: give one order per key of the Dict space (as for VecFrameStack), or one for all"
                    )
                entries = [(key, subspace, channels_order[key]) for key, subspace in observation_space.spaces.items()]
            else:
                entries = [(key, subspace, channels_order) for key, subspace in observation_space.spaces.items()]
        else:
            entries = [(None, observation_space, channels_order)]
        layouts = {}
        for key, subspace, order in entries:
            where = "" if key is None else f" (observation key {key!r})"
            if order not in (None, "first", "last"):
                raise ValueError(
                    f"CompactDQfDReplayBuffer: channels_order must be 'first', 'last' or None{where}, got {order!r} "
                    "(a dict by key only for a Dict observation space)"
                )
            if not isinstance(subspace, spaces.Box):
                raise TypeError(
                    f"CompactDQfDReplayBuffer needs a Box observation space (frames of an array){where}, got {subspace}: "
                    "VecFrameStack stacks every key of a Dict space and supports Box keys only"
                )
            shape = subspace.shape
            # compute_stacking cannot stack a scalar observation (no axis)
            channels_first = len(shape) > 0 and StackedObservations.compute_stacking(n_stack, subspace, order)[0]
            stack_axis = 0 if channels_first else len(shape) - 1
            if len(shape) == 0 or shape[stack_axis] % n_stack != 0:
                raise ValueError(
                    f"CompactDQfDReplayBuffer: the observation shape {shape}{where} cannot hold n_stack={n_stack} frames "
                    f"along axis {stack_axis} (the stacked observation space of VecFrameStack(env, n_stack) is expected)"
                )
            frame_shape = list(shape)
            frame_shape[stack_axis] //= n_stack
            layouts[key] = _FrameLayout(key, stack_axis, tuple(frame_shape), shape, subspace.dtype)
        return layouts

    def _per_key(self, function: Callable[..., Any], *values: Any) -> Any:
        """
        ``function(layout, *arrays)`` with the observation's frame layout and the ``values``, or for a Dict space
        with each key's layout and each value's array of that key (then a dict of the results, in the space's order).
        """
        if not self._dict_obs:
            return function(self._layouts[None], *values)
        return {key: function(layout, *(value[key] for value in values)) for key, layout in self._layouts.items()}

    @staticmethod
    def _sb3_buffer_size(buffer_size: int, n_envs: int) -> int:
        # One row: SB3 would allocate full-size observation arrays (refused by the OS at Atari scale, even untouched)
        return n_envs

    def _allocate(self, n_demonstrations: int) -> None:
        super()._allocate(n_demonstrations)
        n_envs = self.n_envs
        self._frame_rows = self.buffer_size + self.n_stack - 1
        # [frame_rows * n_envs] newest frames of the rows (frame row, env), [n_envs] pending next frames, 1 zero frame
        self._pending_start = self._frame_rows * n_envs
        n_frames, n_finals = self._pending_start + n_envs + 1, max(n_envs, 8)
        self._frames: ObsArray = self._per_key(lambda layout: np.zeros((n_frames, *layout.frame_shape), dtype=layout.dtype))
        self._ages = np.zeros((self.buffer_size, n_envs), dtype=np.int32)  # steps since the episode start, clipped
        self._final_seq = np.zeros((self.buffer_size, n_envs), dtype=np.int64)  # final frame of an episode-end row
        self._finals: ObsArray = self._per_key(lambda layout: np.zeros((n_finals, *layout.frame_shape), dtype=layout.dtype))
        # Final frames live at sequence numbers [tail, head), slot seq % _n_final_slots; appended and released in row order
        self._final_head = self._final_tail = 0
        self._n_adds = 0  # rows written since the ring was (re)allocated or reset: row of add g is frame row g % rows

    @property
    def _n_final_slots(self) -> int:
        """Length of the final-frame FIFO (the same for every key)."""
        return len(_first(self._finals))

    def reset(self) -> None:
        """Drop the agent transitions (and their priorities); the demonstrations stay. Old frames become unreachable."""
        super().reset()
        self._final_head = self._final_tail = 0
        self._n_adds = 0

    # ----------------------------------------------------------------------------------------------------------------
    # Stacks <-> frames
    # ----------------------------------------------------------------------------------------------------------------
    @staticmethod
    def _frame_slice(stacked: np.ndarray, start: int, stop: int, layout: _FrameLayout) -> np.ndarray:
        """
        Frames ``start .. stop - 1`` (oldest first) of ``[N, *obs_shape]`` stacked observations, a view in the stacked
        layout; with ``stop = start + 1`` it has the shape ``[N, *frame_shape]`` of one frame each.
        """
        size = layout.frame_shape[layout.stack_axis]
        return stacked[(slice(None),) * (1 + layout.stack_axis) + (slice(start * size, stop * size),)]

    @staticmethod
    def _assemble(frames: np.ndarray, layout: _FrameLayout) -> np.ndarray:
        """Stack ``[N, n_stack, *frame_shape]`` frames (oldest first) into ``[N, *obs_shape]`` observations."""
        return np.moveaxis(frames, 1, 1 + layout.stack_axis).reshape(len(frames), *layout.obs_shape)

    def _demo_stack_indices(self, indices: np.ndarray, next_obs: bool) -> np.ndarray:
        """
        :param indices: demonstration indices, shape ``[B]``
        :param next_obs: index the next observations instead of the observations
        :return: indices into ``_demo_frames`` of their stacks, ``[B, n_stack]``
        """
        # The T + 1 frames of an episode are consecutive: the next observation is the same stack one frame later
        newest = self._demo_frame_index[indices] + next_obs  # [B]
        ages = self._demo_ages[indices] + next_obs  # [B]
        stack = newest[:, None] - self._back  # [B, n_stack]
        zero_frame = len(_first(self._demo_frames)) - 1
        return np.where(self._back <= ages[:, None], stack, zero_frame)

    def _agent_stack_indices(
        self, offsets: np.ndarray, next_obs: bool
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """
        :param offsets: agent offsets ``row * n_envs + env`` of stored transitions, shape ``[B]``
        :param next_obs: index the next observations instead of the observations
        :return: indices into ``_frames`` of their stacks ``[B, n_stack]``; and, for next observations of episode ends,
            the batch positions ``[n_ended]`` whose newest frame is a final frame instead with their slots in ``_finals``
            ``[n_ended]`` (None when there are none)
        """
        n_envs = self.n_envs
        rows, envs = np.divmod(offsets, n_envs)  # [B]
        # Add count of each row: the newest row was written by add n_adds - 1, the one before by n_adds - 2, ...
        rows_back = (self.pos - 1 - rows) % self.buffer_size  # [B], 0 for the newest row
        adds = self._n_adds - 1 - rows_back  # [B]
        back = self._back - 1 if next_obs else self._back  # [n_stack], frames before the newest of the stack
        ages = self._ages[rows, envs].astype(np.int64)  # [B]
        stack = ((adds[:, None] - back) % self._frame_rows) * n_envs + envs[:, None]  # [B, n_stack]
        # Before the episode start: the zero frame (back < 0 is the next frame, never padding)
        stack = np.where(back <= ages[:, None], stack, self._pending_start + n_envs)
        if not next_obs:
            return stack, None
        # The next frame of the newest row is still pending (the next add brings it as an observation)
        stack[:, -1] = np.where(rows_back == 0, self._pending_start + envs, stack[:, -1])
        ended = np.flatnonzero(self.dones[rows, envs] > 0)  # [n_ended], positions in the batch
        if not ended.size:
            return stack, None
        return stack, (ended, self._final_seq[rows[ended], envs[ended]] % self._n_final_slots)

    def _agent_frames(self, offsets: np.ndarray, next_obs: bool) -> ObsArray:
        """
        :param offsets: agent offsets ``row * n_envs + env`` of stored transitions, shape ``[B]``
        :param next_obs: rebuild the next observations instead of the observations
        :return: their stacks as frames, ``[B, n_stack, *frame_shape]`` (per key for a Dict space)
        """
        stack, final_slots = self._agent_stack_indices(offsets, next_obs)

        def gather(layout: _FrameLayout, frames: np.ndarray, finals: np.ndarray) -> np.ndarray:
            stacks = frames[stack]
            if final_slots is not None:
                ended, slots = final_slots
                stacks[ended, -1] = finals[slots]
            return stacks

        return self._per_key(gather, self._frames, self._finals)

    def _stacks(self, indices: np.ndarray, next_obs: bool) -> ObsArray:
        """
        :param indices: flat buffer indices, shape ``[B]``
        :param next_obs: rebuild the next observations instead of the observations
        :return: the (next) observations, ``[B, *obs_shape]`` (per key for a Dict space)
        """
        n_demos, n_stack = self._n_demonstrations, self.n_stack
        is_demo = indices < n_demos
        if is_demo.all():
            demo_stack = self._demo_stack_indices(indices, next_obs)
            return self._per_key(lambda layout, frames: self._assemble(frames[demo_stack], layout), self._demo_frames)
        if not is_demo.any():
            agent = self._agent_frames(indices - n_demos, next_obs)
            return self._per_key(lambda layout, frames: self._assemble(frames, layout), agent)
        # Both regions: the frame index arrays are computed once, for every key
        demo_stack = self._demo_stack_indices(indices[is_demo], next_obs)
        agent = self._agent_frames(indices[~is_demo] - n_demos, next_obs)

        def merge(layout: _FrameLayout, demo_frames: np.ndarray, agent_frames: np.ndarray) -> np.ndarray:
            frames = np.empty((len(indices), n_stack, *layout.frame_shape), dtype=layout.dtype)
            frames[is_demo] = demo_frames[demo_stack]
            frames[~is_demo] = agent_frames
            return self._assemble(frames, layout)

        return self._per_key(merge, self._demo_frames, agent)

    def _gather_observations(self, indices: np.ndarray, last: np.ndarray) -> tuple[ObsArray, ObsArray, ObsArray]:
        return self._stacks(indices, False), self._stacks(indices, True), self._stacks(last, True)

    # ----------------------------------------------------------------------------------------------------------------
    # Writing
    # ----------------------------------------------------------------------------------------------------------------
    def _check_stacking(self, obs: ObsArray, next_obs: ObsArray, ages: np.ndarray, where: str) -> None:
        """
        Raise a ValueError unless every ``next_obs`` is its ``obs`` shifted by one frame and every ``obs`` is zero
        before its episode start (``ages``: steps since the start, ``[N]``), as ``VecFrameStack`` stacks them; key by
        key for a Dict space.
        """
        n_stack = self.n_stack
        n_padding = n_stack - 1 - ages  # [N], frames before the episode start

        def check(layout: _FrameLayout, observations: np.ndarray, next_observations: np.ndarray) -> None:
            # Compared in the stacked layout: views of the [N, n_stack, *frame] layout iterate slowly (channels innermost)
            shifted = self._frame_slice(observations, 1, n_stack, layout)
            if not np.array_equal(shifted, self._frame_slice(next_observations, 0, n_stack - 1, layout)):
                raise ValueError(
                    f"CompactDQfDReplayBuffer: {where}{layout.where}: a next observation is not its observation shifted "
                    f"by one frame (observations must be stacked by VecFrameStack with n_stack={n_stack} along axis "
                    f"{layout.stack_axis})"
                )
            for i in np.flatnonzero(n_padding):
                if self._frame_slice(observations[i : i + 1], 0, n_padding[i], layout).any():
                    raise ValueError(
                        f"CompactDQfDReplayBuffer: {where}{layout.where}: an observation has non-zero frames before its "
                        f"episode start (VecFrameStack pads with zeros after a reset; n_stack={n_stack})"
                    )

        self._per_key(check, obs, next_obs)

    def _demonstration_arrays(self, demonstrations: Demonstrations) -> dict[str, Any]:
        arrays = super()._demonstration_arrays(demonstrations)
        observations, next_observations = arrays["observations"], arrays["next_observations"]
        ends = arrays["dones"] > 0  # [N], True on the last step of each episode
        n_transitions = len(ends)
        n_stack = self.n_stack
        steps = np.arange(n_transitions)
        # Frame layout: each episode's T observation frames, then its final frame
        frame_index = steps + np.cumsum(ends) - ends  # [N]
        is_start = np.concatenate([[True], ends[:-1]])
        ages = np.minimum(steps - np.maximum.accumulate(np.where(is_start, steps, 0)), n_stack - 1)
        # Within an episode obs[t + 1] is next_obs[t] (both are its observation t + 1): with these two checks every
        # stack equals the one rebuilt from the frames
        self._check_stacking(observations, next_observations, ages, "demonstrations")
        n_frames = n_transitions + int(ends.sum()) + 1

        def episode_frames(layout: _FrameLayout, obs: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
            frames = np.empty((n_frames, *layout.frame_shape), dtype=layout.dtype)
            frames[frame_index] = self._frame_slice(obs, n_stack - 1, n_stack, layout)
            frames[frame_index[ends] + 1] = self._frame_slice(next_obs[ends], n_stack - 1, n_stack, layout)
            frames[-1] = 0
            return frames

        frames = self._per_key(episode_frames, observations, next_observations)
        self._new_demonstration_frames = (frames, frame_index, ages)
        return arrays

    def add_demonstrations(self, demonstrations: Demonstrations) -> None:
        """
        Store demonstrations in the permanent region (appended after any already there), at the largest priority.

        Their observations must be stacked as ``VecFrameStack`` stacks them (zero frames before the episode start).

        :param demonstrations: the expert episodes; their observations and actions must fit the buffer's spaces
        """
        old_frames = self._per_key(lambda layout, frames: frames[:-1], self._demo_frames)  # without the zero frame
        n_old_frames = len(_first(old_frames))
        super().add_demonstrations(demonstrations)
        # Set by _demonstration_arrays, which the parent calls before storing anything
        frames, frame_index, ages = self._new_demonstration_frames  # type: ignore[misc]
        self._new_demonstration_frames = None
        self._demo_frame_index = np.concatenate([self._demo_frame_index, frame_index + n_old_frames])
        self._demo_ages = np.concatenate([self._demo_ages, ages])
        self._demo_frames = self._per_key(lambda layout, old, new: np.concatenate([old, new]), old_frames, frames)

    def _new_row_ages(self) -> tuple[np.ndarray, np.ndarray]:
        """
        :return: for the row the next :meth:`add` writes, which envs continue the episode of their newest row
            ``[n_envs]`` (bool), and the steps since the episode start, clipped to ``n_stack - 1``, ``[n_envs]``
        """
        if self._n_adds == 0:
            return np.zeros(self.n_envs, dtype=bool), np.zeros(self.n_envs, dtype=np.int64)
        previous = (self.pos - 1) % self.buffer_size
        continued = self.dones[previous] == 0
        return continued, np.where(continued, np.minimum(self._ages[previous].astype(np.int64) + 1, self.n_stack - 1), 0)

    def _append_finals(self, row: int, envs: np.ndarray, frames: ObsArray) -> None:
        """Keep the final frames ``[n, *frame_shape]`` (per key for a Dict space) of the episodes ended at ``(row, envs)``."""
        n_slots = self._n_final_slots
        n_live = self._final_head - self._final_tail + len(envs)
        if n_live > n_slots:
            # Grow (doubling) and move every live frame to its slot seq % new length
            capacity = n_slots
            while capacity < n_live:
                capacity *= 2
            live = np.arange(self._final_tail, self._final_head)

            def grow(layout: _FrameLayout, finals: np.ndarray) -> np.ndarray:
                grown = np.zeros((capacity, *layout.frame_shape), dtype=layout.dtype)
                grown[live % capacity] = finals[live % n_slots]
                return grown

            self._finals = self._per_key(grow, self._finals)
            n_slots = capacity
        seqs = np.arange(self._final_head, self._final_head + len(envs))

        def put(layout: _FrameLayout, finals: np.ndarray, new: np.ndarray) -> None:
            finals[seqs % n_slots] = new

        self._per_key(put, self._finals, frames)
        self._final_seq[row, envs] = seqs
        self._final_head += len(envs)

    def add(  # type: ignore[override]
        self,
        obs: ObsArray,
        next_obs: ObsArray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """
        Append one step of every env to the agent ring (overwriting the oldest row when full), at the largest priority.

        Stores the newest frame of ``obs``, and of ``next_obs`` (until the next add brings it, or for good on a done
        step); raises a ValueError, storing nothing, if the stacks do not continue the stored ones.

        :param obs: stacked observations, shape ``[n_envs, *obs_shape]``; for a Dict space a dict with every key of the
            space, ``[n_envs, *shape_k]`` each
        :param next_obs: stacked next observations; on a done step the episode's final observation
            (``infos[i]["terminal_observation"]``, as SB3's ``_store_transition`` passes it)
        :param action: actions, shape ``[n_envs, *action_shape]``
        :param reward: rewards, shape ``[n_envs]``
        :param done: episode ended (terminated or truncated), shape ``[n_envs]``
        :param infos: one info dict per env; ``"TimeLimit.truncated"`` marks a timeout
        """
        n_envs, n_stack, row = self.n_envs, self.n_stack, self.pos
        if self._dict_obs:
            obs, next_obs = self._agent_dict(obs, "obs"), self._agent_dict(next_obs, "next_obs")
        else:
            obs = np.asarray(obs).reshape(n_envs, *self.obs_shape)
            next_obs = np.asarray(next_obs).reshape(n_envs, *self.obs_shape)
        fields = self._row_fields(action, reward, done, infos)
        continued_mask, ages = self._new_row_ages()  # [n_envs]
        self._check_stacking(obs, next_obs, ages, "add")
        continued = np.flatnonzero(continued_mask)
        if continued.size:
            previous = (row - 1) % self.buffer_size * n_envs + continued

            def check_continues(layout: _FrameLayout, stored: np.ndarray, observations: np.ndarray) -> None:
                if not np.array_equal(self._assemble(stored, layout), observations[continued]):
                    raise ValueError(
                        f"CompactDQfDReplayBuffer: add{layout.where}: an observation does not continue its env's previous "
                        "next observation although that step did not end the episode (the env was reset without "
                        "truncate_running_episodes, or the buffer was replaced mid-episode: learn with "
                        "reset_num_timesteps=True)"
                    )

            self._per_key(check_continues, self._agent_frames(previous, next_obs=True), obs)
        if self.full:
            # The oldest row is overwritten: its final frames (the oldest kept) are released
            self._final_tail += int(np.count_nonzero(self.dones[row]))
        frame_row, pending = self._n_adds % self._frame_rows, self._pending_start

        def write(layout: _FrameLayout, frames: np.ndarray, observations: np.ndarray, next_observations: np.ndarray) -> None:
            frames[frame_row * n_envs : (frame_row + 1) * n_envs] = self._frame_slice(
                observations, n_stack - 1, n_stack, layout
            )
            frames[pending : pending + n_envs] = self._frame_slice(next_observations, n_stack - 1, n_stack, layout)

        self._per_key(write, self._frames, obs, next_obs)
        ended = np.flatnonzero(fields[2])
        if ended.size:
            # The newest next frames, just written to the pending slots
            self._append_finals(row, ended, _map_obs(lambda frames: frames[pending + ended], self._frames))
        self._ages[row] = ages
        self._n_adds += 1
        self._write_row(fields)

    def truncate_running_episodes(self) -> np.ndarray:
        running = super().truncate_running_episodes()
        if running.size:
            # The pending next frames of the cut rows become their episodes' final frames
            newest = (self.pos - 1) % self.buffer_size
            self._append_finals(newest, running, _map_obs(lambda frames: frames[self._pending_start + running], self._frames))
        return running

    truncate_running_episodes.__doc__ = DQfDReplayBuffer.truncate_running_episodes.__doc__
