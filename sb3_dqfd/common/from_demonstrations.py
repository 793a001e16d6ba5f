"""
What DQfD, SACfD and TD3fD share: demonstrations kept in a :class:`~sb3_dqfd.common.buffers.DQfDReplayBuffer`,
loaded against the env (layout wrappers included), checked, saved inside the model's zip as tensors, pre-training on
them, PER's beta annealing and the logs of the gradient steps.
"""

import dataclasses
import io
import pathlib
import time
import warnings
from collections.abc import Callable
from operator import itemgetter
from types import SimpleNamespace
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.save_util import load_from_pkl
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, TensorDict
from stable_baselines3.common.utils import configure_logger, update_learning_rate
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecFrameStack, VecTransposeImage
from tqdm.auto import tqdm

from sb3_dqfd.common.buffers import CompactDQfDReplayBuffer, DQfDReplayBuffer
from sb3_dqfd.common.demonstrations import (
    Demonstrations,
    Episode,
    ObservationArrays,
    _concatenate_observations,
    _map_observations,
    frame_stack_demonstrations,
    load_demonstrations,
)
from sb3_dqfd.common.utils import flush_denormal
from sb3_dqfd.wrappers.reward_scaling import demonstration_reward_transform

SelfFromDemonstrations = TypeVar("SelfFromDemonstrations", bound="FromDemonstrations")

# Names of the tensors that carry the demonstrations inside a saved model (``pytorch_variables.pth``, no pickle)
_DEMO_ARRAY_NAMES = ("observations", "actions", "rewards", "lengths", "terminated", "truncated")


def l2_penalty(parameters: list[th.Tensor]) -> th.Tensor:
    """
    J_L2: the squared L2 norm ``sum_i theta_i^2`` of the given parameters (not the norm: its gradient is ``2 theta``).

    :param parameters: the parameters to regularize
    :return: a scalar tensor
    """
    # One fused norm per parameter list instead of a pow + sum per tensor
    return th.stack(th._foreach_norm(parameters)).pow(2).sum()


def add_l2_gradient(parameters: list[th.Tensor], l2_coef: float) -> list[th.Tensor]:
    """
    Add the gradient ``2 * l2_coef * theta`` of ``l2_coef * ||theta||^2`` to the gradients of ``parameters``, in one
    fused op: the same update as back-propagating the term (and as Adam ``weight_decay = 2 * l2_coef``), without a
    graph over every parameter.

    :param parameters: the regularized parameters, after ``backward()``
    :param l2_coef: the weight of the squared L2 norm (0: nothing added)
    :return: the parameters that have a gradient (those the optimizer step moves)
    """
    with_grad: list[th.Tensor] = [parameter for parameter in parameters if parameter.grad is not None]
    grads = [parameter.grad for parameter in with_grad if parameter.grad is not None]
    if l2_coef > 0:
        th._foreach_add_(grads, with_grad, alpha=2.0 * l2_coef)
    return with_grad


def _observation_shapes(space: spaces.Space) -> tuple[int, ...] | dict[str, tuple[int, ...]]:
    """The shape of one observation of ``space`` (per key for a Dict space), as demonstrations hold it."""
    if isinstance(space, spaces.Dict):
        return {key: subspace.shape for key, subspace in space.spaces.items()}  # type: ignore[misc]
    return space.shape  # type: ignore[return-value]


def _demonstration_shapes(observations: ObservationArrays) -> tuple[int, ...] | dict[str, tuple[int, ...]]:
    """The shape of one observation of an episode's ``[T + 1, ...]`` observations (per key for Dict observations)."""
    if isinstance(observations, dict):
        return {key: value.shape[1:] for key, value in observations.items()}
    return observations.shape[1:]


def _stacking(env: VecFrameStack, transposed: set[str] | bool) -> str | dict[str, str]:
    """
    The stacking axis of ``env``'s stacks as the agent receives them, as a ``channels_order`` (per key for Dict):
    ``VecFrameStack``'s own, or channels first where a ``VecTransposeImage`` above it transposed the stacks (SB3 puts
    it outside ``VecFrameStack``).

    :param env: the frame-stacking wrapper
    :param transposed: True if the (Box) stacks were transposed, or the keys whose stacks were
    """

    def order(channels_first: bool, key: str | None = None) -> str:
        moved = transposed if key is None or isinstance(transposed, bool) else key in transposed
        return "first" if channels_first or moved else "last"

    stacked_obs = env.stacked_obs
    if isinstance(env.observation_space, spaces.Dict):
        return {key: order(sub.channels_first, key) for key, sub in stacked_obs.sub_stacked_observations.items()}
    return order(stacked_obs.channels_first)


def _concatenated(first: TensorDict | th.Tensor, second: TensorDict | th.Tensor) -> TensorDict | th.Tensor:
    """Two batches of observations as one (``[B1 + B2, ...]``; key by key for Dict observations)."""
    if isinstance(first, dict) and isinstance(second, dict):
        return {key: th.cat([first[key], second[key]]) for key in first}
    return th.cat([first, second])  # type: ignore[list-item]


def _transposed(demonstrations: Demonstrations, env: VecTransposeImage) -> Demonstrations:
    """The demonstrations with the channel-last to channel-first transpose ``env`` applies to (the image keys of) every
    observation."""

    def transposed(observations: ObservationArrays) -> ObservationArrays:
        if isinstance(observations, dict):
            return {
                key: VecTransposeImage.transpose_image(value) if key in env.image_space_keys else value  # type: ignore[operator]
                for key, value in observations.items()
            }
        return VecTransposeImage.transpose_image(observations)  # [T+1, C, H, W]

    episodes = [dataclasses.replace(episode, observations=transposed(episode.observations)) for episode in demonstrations]
    return Demonstrations(episodes, env.observation_space, env.action_space)


def _frame_stacked(demonstrations: Demonstrations, env: VecFrameStack) -> Demonstrations:
    """The demonstrations as ``env`` would have stacked them (see :func:`frame_stack_demonstrations`)."""
    return frame_stack_demonstrations(demonstrations, env.stacked_obs)


#: The VecEnv wrappers that change the observations' layout, each with the function that applies it to demonstrations
#: recorded without it and the hint for demonstrations that fit neither side
_LAYOUT_WRAPPERS: dict[type[VecEnvWrapper], tuple[Callable[[Demonstrations, Any], Demonstrations], Callable[[Any], str]]] = {
    VecTransposeImage: (
        _transposed,
        lambda env: (
            f"; nor do they fit the env's own channel-last layout {env.venv.observation_space} "
            "(SB3 transposes it to channel-first for the CNN)"
        ),
    ),
    VecFrameStack: (
        _frame_stacked,
        lambda env: (
            f". The env stacks {env.stacked_obs.n_stack} frames (VecFrameStack) and the demonstrations fit neither "
            "its stacked observations nor its single frames: record them through the same wrappers (record_demonstrations("
            "expert, <that VecEnv>, ...), or sb3-dqfd record --hyperparams with the entry's frame_stack)"
        ),
    ),
}


def _same_demonstrations(first: Demonstrations, second: Demonstrations) -> bool:
    """:return: whether both hold the same episodes (observations, actions, rewards and ends, in order)"""
    if len(first) != len(second):
        return False
    return all(
        a.terminated == b.terminated
        and a.truncated == b.truncated
        and _same_observations(a.observations, b.observations)
        and all(np.array_equal(getattr(a, name), getattr(b, name)) for name in ("actions", "rewards"))
        for a, b in zip(first, second, strict=True)
    )


def _same_observations(first: ObservationArrays, second: ObservationArrays) -> bool:
    if isinstance(first, dict) or isinstance(second, dict):
        return (
            isinstance(first, dict)
            and isinstance(second, dict)
            and first.keys() == second.keys()
            and all(np.array_equal(first[key], second[key]) for key in first)
        )
    return np.array_equal(first, second)


class StepStatistics(NamedTuple):
    """What one gradient step reports for the logs."""

    loss_terms: th.Tensor  # [len(_loss_keys)], detached, on the model's device until the logs are written
    batch: dict[str, float]  # demo_fraction, priority_demo, priority_agent: computed on the host


class FromDemonstrations(OffPolicyAlgorithm):
    """
    The demonstration layer of DQfD, SACfD and TD3fD, mixed in front of SB3's algorithm (``class DQfD(FromDemonstrations,
    DQN)``): the demonstrations and their permanent place in the replay buffer, saving and loading them, pre-training
    on them, beta annealing and the logs of the gradient steps.

    A subclass sets the attributes below in its constructor (before ``_setup_model``) and implements
    :meth:`_gradient_step` (one update on a sampled batch, returning :class:`StepStatistics` whose ``loss_terms``
    follow :attr:`_loss_keys`) and :meth:`_optimizers`; :meth:`_after_pretrain_update`,
    :meth:`_after_pretraining` and :meth:`_buffer_action_space` have defaults.
    """

    #: Names of the loss terms of a gradient step, in the order of :attr:`StepStatistics.loss_terms` (logged as
    #: ``train/<key>``)
    _loss_keys: ClassVar[tuple[str, ...]]
    replay_buffer: DQfDReplayBuffer  # type: ignore[assignment]
    demonstrations: Demonstrations | None
    demonstration_arrays: SimpleNamespace
    n_steps: int
    pretrain_steps: int
    demo_ratio: float | None
    prioritized_replay: bool
    alpha: float
    beta0: float
    beta_annealing_fraction: float
    agent_eps: float
    demo_eps: float
    pretrained: bool
    _n_pretrain_updates: int
    _logger_before_learn: bool
    _demonstration_reward_transform: Callable[[np.ndarray], np.ndarray] | None

    @classmethod
    def _check_demonstration_arguments(
        cls, n_steps: int, non_negative: dict[str, float], demo_ratio: float | None, beta0: float
    ) -> None:
        """
        Raise a ValueError for a hyperparameter out of its range.

        :param n_steps: the n of the n-step returns (>= 1)
        :param non_negative: hyperparameters that must be >= 0, by name, checked in this order
        :param demo_ratio: the fixed share of demonstrations in a batch, in [0, 1], or None
        :param beta0: the initial importance-sampling exponent, in [0, 1]
        """
        name = cls.__name__
        if n_steps < 1:
            raise ValueError(f"{name}: n_steps must be >= 1 (the n of the n-step return), got {n_steps}")
        for key, value in non_negative.items():
            if value < 0:
                raise ValueError(f"{name}: {key} must be >= 0, got {value}")
        if demo_ratio is not None and not 0.0 <= demo_ratio <= 1.0:
            raise ValueError(f"{name}: demo_ratio must be in [0, 1] or None (mix set by priorities), got {demo_ratio}")
        if not 0.0 <= beta0 <= 1.0:
            raise ValueError(f"{name}: beta0 must be in [0, 1], got {beta0}")

    @classmethod
    def _check_replay_buffer_class(cls, replay_buffer_class: type[ReplayBuffer] | None) -> None:
        """Raise a ValueError unless ``replay_buffer_class`` is None or a :class:`DQfDReplayBuffer` subclass."""
        if replay_buffer_class is not None and not issubclass(replay_buffer_class, DQfDReplayBuffer):
            raise ValueError(
                f"{cls.__name__} needs a DQfDReplayBuffer (or a subclass) as replay_buffer_class, got "
                f"{replay_buffer_class.__name__}"
            )

    def _init_demonstrations(self, demonstrations: Any, warn_without: str | None) -> None:
        """
        Load the demonstrations (before ``_setup_model``) and set the pre-training state.

        :param demonstrations: anything :func:`~sb3_dqfd.load_demonstrations` accepts, or None
        :param warn_without: what the algorithm runs as without demonstrations, for the warning (None: no warning)
        """
        # Pre-training runs once per model: the flag is saved, so a loaded model does not pre-train again
        self.pretrained = False
        self._n_pretrain_updates = 0
        self._logger_before_learn = False
        self.demonstrations = None
        if demonstrations is not None:
            # expert:N records with the model's seed, so seeds of a benchmark learn from different episodes
            self.demonstrations = self._load_demonstrations(demonstrations)
        elif warn_without is not None:
            warnings.warn(
                f"{type(self).__name__} got no demonstrations: it runs as {warn_without}. "
                "Pass demonstrations=... (see sb3_dqfd.record_demonstrations / load_demonstrations) to learn from an expert."
            )

    def _setup_model(self) -> None:
        self.replay_buffer_kwargs = {
            **self.replay_buffer_kwargs,
            "n_steps": self.n_steps,
            "gamma": self.gamma,
            "prioritized": self.prioritized_replay,
            "alpha": self.alpha,
            "beta": self.beta0,
            "agent_eps": self.agent_eps,
            "demo_eps": self.demo_eps,
            "demo_ratio": self.demo_ratio,
        }
        if self.replay_buffer_class is None:
            self.replay_buffer_class, stacking = self._default_replay_buffer()
            self.replay_buffer_kwargs = {**stacking, **self.replay_buffer_kwargs}
        # Built here rather than by OffPolicyAlgorithm: its action space is the space of the *stored* actions
        # (SAC and TD3 store them scaled to [-1, 1], see _buffer_action_space)
        self.replay_buffer = self.replay_buffer_class(  # type: ignore[assignment]
            self.buffer_size,
            self.observation_space,
            self._buffer_action_space(),
            device=self.device,
            n_envs=self.n_envs,
            optimize_memory_usage=self.optimize_memory_usage,
            **self.replay_buffer_kwargs,
        )
        # OffPolicyAlgorithm._setup_model reads self.n_steps to build SB3's NStepReplayBuffer, or to warn that it is
        # ignored with a custom buffer class; here the DQfD buffer gets n through replay_buffer_kwargs instead.
        n_steps, self.n_steps = self.n_steps, 1
        try:
            super()._setup_model()
        finally:
            self.n_steps = n_steps
        self.demonstration_arrays = self._demonstrations_to_arrays(self.demonstrations)
        # Checked with or without demonstrations: a running RewardScaling stores rewards that drift (README)
        self._demonstration_reward_transform = self._reward_transform()
        if self.demonstrations is not None:
            self.replay_buffer.add_demonstrations(self._scaled_demonstrations(self.demonstrations))

    def _buffer_action_space(self) -> spaces.Space:
        """The space of the actions stored in the replay buffer: the env's (SAC and TD3 store them scaled)."""
        return self.action_space

    def _optimizers(self) -> list[th.optim.Optimizer]:
        """The optimizers whose learning rate follows ``learning_rate``."""
        raise NotImplementedError

    def _gradient_step(self, batch_size: int, demo_only: bool) -> StepStatistics:
        """
        One update on a sampled batch, then new priorities for the sampled rows.

        :param batch_size: number of transitions sampled
        :param demo_only: sample demonstrations only (pre-training)
        :return: the step's statistics, for :meth:`_record`
        """
        raise NotImplementedError

    def _after_pretrain_update(self) -> None:
        """Called after each pre-training gradient step (e.g. to copy a target network on a schedule)."""

    def _after_pretraining(self) -> None:
        """Called once when :meth:`pretrain` is done."""

    def _batch_statistics(self, indices: np.ndarray) -> dict[str, float]:
        """
        :param indices: the buffer indices of a sampled batch, after its priorities were updated
        :return: the batch's demonstration share and (with PER) the mean new priority of its demonstration and agent
            rows, computed on the host from the indices (no transfer from the device)
        """
        is_demo = indices < self.replay_buffer.n_demonstrations  # [B], what the buffer's is_demo field says
        batch = {"demo_fraction": float(is_demo.mean())}
        if self.prioritized_replay:
            # Mean new priority of the sampled demonstration / agent rows (a cheap running view of each region)
            priorities = self.replay_buffer.priorities(indices)
            batch["priority_demo"] = float(priorities[is_demo].mean()) if is_demo.any() else np.nan
            batch["priority_agent"] = float(priorities[~is_demo].mean()) if (~is_demo).any() else np.nan
        return batch

    def _check_demonstrations(self, demonstrations: Demonstrations) -> None:
        """Raise a ValueError if the demonstrations do not fit the environment's spaces or the replay buffer."""
        if self.observation_space is None or self.action_space is None:
            return
        obs_shape = _observation_shapes(self.observation_space)
        demo_obs_shape = _demonstration_shapes(demonstrations[0].observations)
        if demo_obs_shape != obs_shape:
            raise ValueError(
                f"Demonstration observations have shape {demo_obs_shape}, the environment's observation space "
                f"{self.observation_space} expects {obs_shape}"
            )
        # Box actions were checked by the demonstration layer (shape, NaN, bounds: Demonstrations(..., action_space))
        if isinstance(self.action_space, spaces.Discrete):
            n_actions = int(self.action_space.n)
            for index, episode in enumerate(demonstrations):
                actions = np.asarray(episode.actions)
                if actions.size != len(episode) or np.any(actions < 0) or np.any(actions >= n_actions):
                    raise ValueError(
                        f"Demonstration episode {index} has actions outside the environment's action space "
                        f"{self.action_space} (expected {len(episode)} integers in [0, {n_actions}))"
                    )
        # The demonstrations stay permanently; the agent ring needs at least one n-step window per env
        min_size = demonstrations.n_transitions + self.n_envs * (self.n_steps + 1)
        if self.buffer_size < min_size:
            raise ValueError(
                f"buffer_size={self.buffer_size} is too small for {demonstrations.n_transitions} demonstration transitions "
                f"(kept permanently): it must be at least {min_size} (demonstrations + n_envs * (n_steps + 1)), and "
                "much larger to hold the agent's own data"
            )

    def _default_replay_buffer(self) -> tuple[type[DQfDReplayBuffer], dict[str, Any]]:
        """
        The replay buffer of ``replay_buffer_class=None``: for image observations (or Dict observations of Box keys,
        one of them an image) a :class:`CompactDQfDReplayBuffer` (each frame stored once: a 1M-transition Atari buffer
        fits in 8 GiB instead of ~56 GB) with the stacking of the env's ``VecFrameStack``, if any; a
        :class:`DQfDReplayBuffer` otherwise.

        :return: the class and the stacking keyword arguments of the buffer
        """
        space = self.observation_space
        subspaces = list(space.spaces.values()) if isinstance(space, spaces.Dict) else [space]
        images = [is_image_space(subspace, check_channels=False) for subspace in subspaces]
        if not any(images) or not all(isinstance(subspace, spaces.Box) for subspace in subspaces):
            return DQfDReplayBuffer, {}
        env: VecEnv | None = self.env
        transposed: set[str] | bool = False  # what a VecTransposeImage above put channels first (image keys of a Dict)
        while isinstance(env, VecEnvWrapper):
            if isinstance(env, VecFrameStack):
                return CompactDQfDReplayBuffer, dict(
                    n_stack=env.stacked_obs.n_stack, channels_order=_stacking(env, transposed)
                )
            if isinstance(env, VecTransposeImage):
                transposed = set(env.image_space_keys or []) if isinstance(space, spaces.Dict) else True
            env = env.venv
        return CompactDQfDReplayBuffer, dict(n_stack=1)

    def _observation_keys(self) -> list[str]:
        """The keys of a Dict observation space, in order (none for other spaces)."""
        return list(self.observation_space.spaces) if isinstance(self.observation_space, spaces.Dict) else []

    def _demonstrations_to_arrays(self, demonstrations: Demonstrations | None) -> SimpleNamespace:
        """
        Pack the demonstrations as tensors saved in ``pytorch_variables.pth`` by :meth:`save` (no pickle).

        Size cost in the saved file: one copy of every observation (``T + 1`` per episode), action and reward. Dict
        observations are saved one tensor per key, ``observations_<i>`` for the space's ``i``-th key (SB3 loads each
        saved variable into a tensor attribute of that name; keys could hold dots).
        """
        arrays = SimpleNamespace(**{name: th.zeros(0) for name in _DEMO_ARRAY_NAMES})
        for index in range(len(self._observation_keys())):
            setattr(arrays, f"observations_{index}", th.zeros(0))
        if demonstrations is None:
            return arrays
        observations = _concatenate_observations([episode.observations for episode in demonstrations])
        if isinstance(observations, dict):
            for index, key in enumerate(self._observation_keys()):
                setattr(arrays, f"observations_{index}", th.as_tensor(observations[key]))
        else:
            arrays.observations = th.as_tensor(observations)
        arrays.actions = th.as_tensor(np.concatenate([np.asarray(episode.actions) for episode in demonstrations]))
        arrays.rewards = th.as_tensor(np.concatenate([episode.rewards for episode in demonstrations]))
        arrays.lengths = th.as_tensor(demonstrations.episode_lengths)
        arrays.terminated = th.as_tensor([episode.terminated for episode in demonstrations])
        arrays.truncated = th.as_tensor([episode.truncated for episode in demonstrations])
        return arrays

    def _arrays_to_demonstrations(self) -> Demonstrations | None:
        """Rebuild the demonstrations from :attr:`demonstration_arrays` (after :meth:`load`), or None if there are none."""
        arrays = self.demonstration_arrays
        lengths = arrays.lengths.cpu().numpy().astype(np.int64)
        if lengths.size == 0:
            return None
        keys = self._observation_keys()
        observations: ObservationArrays = (
            {key: getattr(arrays, f"observations_{index}").cpu().numpy() for index, key in enumerate(keys)}
            if keys
            else arrays.observations.cpu().numpy()
        )
        actions = arrays.actions.cpu().numpy()
        rewards = arrays.rewards.cpu().numpy()
        episodes = []
        obs_start, step_start = 0, 0
        for length, terminated, truncated in zip(lengths, arrays.terminated.tolist(), arrays.truncated.tolist(), strict=True):
            episodes.append(
                Episode(
                    observations=_map_observations(observations, itemgetter(slice(obs_start, obs_start + length + 1))),
                    actions=actions[step_start : step_start + length],
                    rewards=rewards[step_start : step_start + length],
                    terminated=bool(terminated),
                    truncated=bool(truncated),
                )
            )
            obs_start += length + 1
            step_start += length
        return Demonstrations(episodes, self.observation_space, self.action_space)

    def _reward_transform(self, env: VecEnv | None = None) -> Callable[[np.ndarray], np.ndarray] | None:
        """
        The fixed reward transform of the ``RewardScaling`` wrappers of ``env`` (default: the model's env; None without
        one, or without an env).

        Raises a ValueError for running normalization (``RewardScaling(normalize=True)`` always,
        ``VecNormalize(norm_reward=True)`` with demonstrations), see :func:`demonstration_reward_transform`.
        """
        env = self.env if env is None else env
        if env is None:
            return None
        return demonstration_reward_transform(env, allow_vec_normalize=self.demonstrations is None)

    def _scaled_demonstrations(self, demonstrations: Demonstrations) -> Demonstrations:
        """
        The demonstrations with the training env's fixed reward transform applied (a ``RewardScaling`` wrapper), so
        demonstration and agent rewards share one scale in the buffer. Raises a ValueError for running normalization.
        """
        transform = self._reward_transform()
        self._demonstration_reward_transform = transform
        if transform is None:
            return demonstrations
        episodes = [
            dataclasses.replace(episode, rewards=np.asarray(transform(episode.rewards), dtype=np.float32))
            for episode in demonstrations
        ]
        return Demonstrations(episodes, demonstrations.observation_space, demonstrations.action_space)

    def _ensure_demonstrations_in_buffer(self) -> None:
        """Put the demonstrations back into a replay buffer that has none (after ``replay_buffer.reset``-like surgery)."""
        if self.demonstrations is not None and self.replay_buffer.n_demonstrations == 0:
            self.replay_buffer.add_demonstrations(self._scaled_demonstrations(self.demonstrations))

    def _restore_demonstrations(self, given: Any, where: str) -> None:
        """
        After :meth:`load`: rebuild the saved demonstrations and put them into the replay buffer, or take ``given``.

        :param given: demonstrations passed to :meth:`load` (any form the constructor accepts), or None
        :param where: the loaded file, for error messages
        """
        saved = self._arrays_to_demonstrations()
        if given is not None:
            demonstrations = self._load_demonstrations(given)
            if saved is not None and not _same_demonstrations(saved, demonstrations):
                raise ValueError(
                    f"{type(self).__name__}.load: the demonstrations given ({len(demonstrations)} episodes, "
                    f"{demonstrations.n_transitions} transitions) differ from the ones saved in {where} ({len(saved)} "
                    f"episodes, {saved.n_transitions} transitions): load without demonstrations= to continue with the "
                    "saved ones, or start a new model to learn from other demonstrations"
                )
            saved = demonstrations
        self.demonstrations = saved
        self.demonstration_arrays = self._demonstrations_to_arrays(saved)
        self._ensure_demonstrations_in_buffer()

    def _load_demonstrations(self, source: Any) -> Demonstrations:
        """
        :func:`load_demonstrations` against the env (or the model's spaces without one), then the checks of
        :meth:`_check_demonstrations`.

        ``expert:N`` recordings use the model's seed. Demonstrations recorded without the env's layout wrappers
        (SB3's ``VecTransposeImage``, ``VecFrameStack``) get their transform here, once (see
        :meth:`_demonstrations_as_the_agent_sees_them`).
        """
        if self.env is None:
            episodes = load_demonstrations(source, seed=self.seed or 0).episodes
            demonstrations = Demonstrations(episodes, self.observation_space, self.action_space)
        else:
            demonstrations = self._demonstrations_as_the_agent_sees_them(source, self.env)
        self._check_demonstrations(demonstrations)
        return demonstrations

    def _demonstrations_as_the_agent_sees_them(self, source: Any, env: VecEnv) -> Demonstrations:
        """
        Load demonstrations for ``env``, in its layout or in the layout of the env it wraps: SB3's channel-first
        transpose (``VecTransposeImage``) and ``VecFrameStack``'s stacks are applied to demonstrations recorded
        without them, as the wrapper would have (single frames are stacked with the zero padding of an episode start).
        """
        try:
            return load_demonstrations(source, env=env, seed=self.seed or 0)
        except ValueError as error:
            for wrapper, (convert, hint) in _LAYOUT_WRAPPERS.items():
                if isinstance(env, wrapper):
                    try:
                        return convert(self._demonstrations_as_the_agent_sees_them(source, env.venv), env)
                    except ValueError:
                        raise ValueError(f"{error}{hint(env)}") from None
            raise

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfFromDemonstrations],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfFromDemonstrations:
        """
        Load a model (SB3's ``load``) and put its saved demonstrations back into the replay buffer at once.

        ``demonstrations=`` (any form the constructor accepts, as rl-zoo3's ``train -i`` passes its YAML entry) gives
        demonstrations to a model saved without any; for a model saved with demonstrations they must be the same
        ones (a ValueError otherwise). The other arguments are SB3's.

        :param path: path to the file (or a file-like) where to load the agent from
        :param env: the new environment to run the loaded model on (can be None if you only need prediction from a
            trained model); demonstration rewards get its fixed ``RewardScaling`` transform
        :param device: Device on which the code should run.
        :param custom_objects: Dictionary of objects to replace upon loading (SB3's ``load``)
        :param print_system_info: Whether to print system info from the saved model and the current system info
        :param force_reset: Force call to ``reset()`` before training to avoid unexpected behavior
        :param kwargs: extra arguments to change the model when loading, ``demonstrations`` included
        :return: the loaded model
        """
        demonstrations = kwargs.pop("demonstrations", None)
        model = super().load(
            path,
            env=env,
            device=device,
            custom_objects=custom_objects,
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )
        model._restore_demonstrations(demonstrations, where=str(path))
        return model

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        """
        SB3's ``set_env``, which also rescales the stored demonstration rewards when the new env's fixed
        ``RewardScaling`` transform differs from the old one (running normalization is refused before anything changes).

        :param env: The environment for learning a policy
        :param force_reset: Force call to ``reset()`` before training to avoid unexpected behavior
        """
        env = self._wrap_env(env, self.verbose)
        transform = self._reward_transform(env)
        super().set_env(env, force_reset)
        if transform == self._demonstration_reward_transform or self.demonstrations is None:
            self._demonstration_reward_transform = transform
            return
        self.replay_buffer.set_demonstration_rewards(self._scaled_demonstrations(self.demonstrations).to_transitions().rewards)
        if self.replay_buffer.n_agent_transitions > 0:
            warnings.warn(
                f"{type(self).__name__}.set_env: the new env scales rewards differently; the demonstration rewards were "
                f"rescaled, but the {self.replay_buffer.n_agent_transitions} agent transitions in the replay buffer keep "
                "the old scale"
            )

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
        """
        Load a replay buffer saved by :meth:`save_replay_buffer` (SB3's ``load_replay_buffer``), refusing one that
        does not fit this model (another buffer class, spaces, ``n_envs``, ``n_steps``, ``gamma``, or the frame
        stacking of a :class:`CompactDQfDReplayBuffer`) before anything changes.

        :param path: Path to the pickled replay buffer.
        :param truncate_last_traj: passed to SB3 (used by ``HerReplayBuffer`` only). The newest stored episode of
            each env is cut anyway when ``learn()`` resets the env (see :meth:`DQfDReplayBuffer.truncate_running_episodes`)
        """
        buffer = load_from_pkl(path, self.verbose)
        self._check_replay_buffer(buffer, str(path))
        buffer.device = self.device  # the saved device may not exist here (SB3 does the same)
        self.replay_buffer = buffer

    def _check_replay_buffer(self, buffer: Any, where: str) -> None:
        """Raise a ValueError if a loaded replay buffer does not fit this model."""
        if not isinstance(buffer, DQfDReplayBuffer):
            raise ValueError(
                f"load_replay_buffer: {where} holds a {type(buffer).__name__} (saved by another algorithm, e.g. DQN): "
                f"{type(self).__name__} needs a DQfDReplayBuffer saved by its save_replay_buffer (it keeps the "
                "demonstrations, the n-step windows and the priorities)"
            )
        expected = {
            "observation_space": self.observation_space,
            "action_space": self._buffer_action_space(),
            "n_envs": self.n_envs,
            "n_steps": self.n_steps,
            "gamma": self.gamma,
        }
        if isinstance(buffer, CompactDQfDReplayBuffer):
            # Its frames are slices of the stack: adds from an env stacked otherwise would be refused mid-learn()
            expected["n_stack"] = getattr(self.replay_buffer, "n_stack", 1)
            expected["stack_axis"] = getattr(self.replay_buffer, "stack_axis", buffer.stack_axis)
        different = [
            f"{name} {getattr(buffer, name)} (model: {value})"
            for name, value in expected.items()
            if getattr(buffer, name) != value
        ]
        if different:
            raise ValueError(f"load_replay_buffer: the buffer in {where} does not fit this model: {', '.join(different)}")
        if self.demonstrations is not None and buffer.n_demonstrations == 0 and buffer.n_agent_transitions > 0:
            raise ValueError(
                f"load_replay_buffer: the buffer in {where} holds agent data but no demonstrations, and the model has "
                f"{len(self.demonstrations)} demonstration episodes: they cannot be added in front of agent data"
            )

    def _update_beta(self) -> None:
        """Anneal the importance-sampling exponent linearly from ``beta0`` to 1 over the learn() budget fraction."""
        progress = 1.0 - self._current_progress_remaining
        fraction = min(1.0, progress / self.beta_annealing_fraction) if self.beta_annealing_fraction > 0 else 1.0
        self.replay_buffer.beta = self.beta0 + (1.0 - self.beta0) * fraction

    def _statistics(self, steps: list[StepStatistics]) -> list[dict[str, float]]:
        """
        :param steps: the statistics of gradient steps
        :return: each step's statistics as floats, the loss terms of all steps brought to the host in one transfer
        """
        loss_terms = th.stack([step.loss_terms for step in steps]).cpu().numpy()  # [n_steps, len(_loss_keys)]
        return [
            dict(zip(self._loss_keys, map(float, row), strict=True)) | step.batch
            for row, step in zip(loss_terms, steps, strict=True)
        ]

    def _record(self, steps: list[StepStatistics], prefix: str = "train") -> None:
        """
        Log the mean of each statistic over the gradient steps of one train() call or pre-training chunk.

        :param steps: the statistics of each gradient step, as :meth:`_gradient_step` returns them
        :param prefix: the logger namespace (``"train"`` during interaction, ``"pretrain"`` during pre-training)
        """
        stats = self._statistics(steps)
        keys = list(stats[0])
        # One [n_steps, n_keys] table instead of a nanmean per key: this runs after every train() call (~0.1 ms saved)
        table = np.array([[step[key] for key in keys] for step in stats], dtype=np.float64)
        counts = np.count_nonzero(~np.isnan(table), axis=0)  # [n_keys]; NaN: no row of that kind in the batch
        means = np.nansum(table, axis=0) / np.maximum(counts, 1)
        for key, count, mean in zip(keys, counts, means, strict=True):
            if count:
                self.logger.record(f"{prefix}/{key}", float(mean))
        self.logger.record(f"{prefix}/beta", self.replay_buffer.beta)
        self.logger.record(f"{prefix}/n_updates", self._n_updates, exclude="tensorboard")

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self._ensure_logger()
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)
        self._update_learning_rate(self._optimizers())
        self._update_beta()
        stats = []
        for _ in range(gradient_steps):
            stats.append(self._gradient_step(batch_size, demo_only=False))
            # Counted per step: TD3fD's delayed actor updates follow it
            self._n_updates += 1
        self._record(stats)

    def pretrain(self, n_steps: int, progress_bar: bool = False, log_interval: int = 1_000) -> None:
        """
        Pre-train on demonstrations only, without touching the environment.

        Each step is the update of interaction (:meth:`_gradient_step`) on a batch of demonstrations; target networks
        follow their own schedule inside the loop (DQfD copies its target every ``target_update_interval`` gradient
        steps), and the sampled demonstrations' priorities are updated as during interaction. Called by the first
        :meth:`learn` with ``pretrain_steps``; calling it yourself marks the model as pre-trained. Like :meth:`learn`, it
        runs with denormal floats flushed to zero in the calling thread (see :func:`sb3_dqfd.common.utils.flush_denormal`).

        :param n_steps: number of gradient steps
        :param progress_bar: show a progress bar (tqdm)
        :param log_interval: dump the logs every ``log_interval`` gradient steps, under ``pretrain/`` (the keys of
            ``train/``) with the number of pre-training updates as the step
        """
        if n_steps < 0:
            raise ValueError(f"pretrain: n_steps must be >= 0, got {n_steps}")
        self._ensure_demonstrations_in_buffer()
        if self.replay_buffer.n_demonstrations == 0:
            raise ValueError(f"pretrain needs demonstrations: pass demonstrations=... to {type(self).__name__}")
        self._ensure_logger()
        self.policy.set_training_mode(True)
        # SB3's _update_learning_rate would log it under train/: pre-training logs go to pretrain/
        learning_rate = self.lr_schedule(self._current_progress_remaining)
        for optimizer in self._optimizers():
            update_learning_rate(optimizer, learning_rate)
        stats: list[StepStatistics] = []
        start_time = time.perf_counter()
        with flush_denormal():
            for step in tqdm(range(1, n_steps + 1), desc=f"{type(self).__name__} pre-training", disable=not progress_bar):
                stats.append(self._gradient_step(self.batch_size, demo_only=True))
                self._n_updates += 1
                self._n_pretrain_updates += 1
                self._after_pretrain_update()
                if step % log_interval == 0 or step == n_steps:
                    # Its own namespace, indexed by pre-training update: TensorBoard draws a pre-training curve
                    # instead of stacking every chunk at environment step 0
                    self._record(stats, prefix="pretrain")
                    self.logger.record("pretrain/learning_rate", learning_rate)
                    # Pre-training's own timing: time/fps counts environment steps of interaction only
                    elapsed = time.perf_counter() - start_time
                    self.logger.record("pretrain/time_elapsed", elapsed)
                    self.logger.record("pretrain/updates_per_second", step / max(elapsed, 1e-9))
                    self.logger.dump(step=self._n_pretrain_updates)
                    stats = []
        self.pretrained = True
        self._after_pretraining()

    def learn(
        self: SelfFromDemonstrations,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "run",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfFromDemonstrations:
        # Flush-to-zero while learning: the L2 term makes dead units' weights subnormal, which slows CPU maths ~4x
        with flush_denormal():
            return super().learn(
                total_timesteps=total_timesteps,
                callback=callback,
                log_interval=log_interval,
                tb_log_name=tb_log_name,
                reset_num_timesteps=reset_num_timesteps,
                progress_bar=progress_bar,
            )

    def _ensure_logger(self) -> None:
        """
        Configure SB3's default logger when :meth:`pretrain` or :meth:`train` run before any ``learn()`` (e.g. right
        after :meth:`load`); the first ``learn()`` then keeps writing to the same run (one TensorBoard folder).
        """
        if not hasattr(self, "_logger"):
            self._logger = configure_logger(self.verbose, self.tensorboard_log, type(self).__name__, True)
            self._logger_before_learn = True

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> Any:
        if reset_num_timesteps or self._last_obs is None:
            # SB3 is about to reset the env in the middle of the stored episodes: end them there, or the n-step
            # windows of their last rows would add the next episode's rewards and bootstrap from its states
            self.replay_buffer.truncate_running_episodes()
        # After pretrain() or train() ran before any learn(), the first learn() continues their logger run (one folder)
        custom_logger, self._custom_logger = self._custom_logger, self._custom_logger or self._logger_before_learn
        try:
            result = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        finally:
            self._custom_logger, self._logger_before_learn = custom_logger, False
        self._ensure_demonstrations_in_buffer()
        if not self.pretrained and self.pretrain_steps > 0 and self.replay_buffer.n_demonstrations > 0:
            self.pretrain(self.pretrain_steps, progress_bar=progress_bar)
            # time/fps is environment steps per second of interaction: start its clock after pre-training
            self.start_time = time.time_ns()
        return result

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "demonstrations", "_demonstration_reward_transform", "_logger_before_learn"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, variables = super()._get_torch_save_params()
        names = [*_DEMO_ARRAY_NAMES, *(f"observations_{index}" for index in range(len(self._observation_keys())))]
        return state_dicts, [*variables, *(f"demonstration_arrays.{name}" for name in names)]
