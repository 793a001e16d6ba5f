"""Rollout buffer that stores, for every step, a copy of the context window the policy acted on."""

from collections.abc import Generator
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.vec_env import VecNormalize

from sb3_dqfd.common.transformer.type_aliases import ContextWindows, TransformerContext, TransformerRolloutBufferSamples


class TransformerRolloutBuffer(RolloutBuffer):
    """
    SB3's ``RolloutBuffer`` plus each step's context window (obs window, previous-action window, valid mask).

    Storing the windows themselves (n_steps * n_envs * K * (obs_dim + action_dim) float32 entries, observations as
    uint8 for images; a few hundred kB for MuJoCo-sized tasks, K times the observations for images) makes training
    see exactly the windows seen at collection, including the slots that reach back into the previous rollout, and
    lets ``train`` evaluate any minibatch of steps (or the whole rollout) in one batched forward pass.

    :param buffer_size: Max number of element in the buffer (steps per env)
    :param observation_space: Observation space (unused: the buffer stores each observation flattened to ``obs_dim``
        entries, the policy's window layout, as a Box of that size)
    :param action_space: Action space
    :param context_len: number of slots K in each window
    :param obs_dim: flattened observation size
    :param action_feature_dim: size of the previous-action features
    :param obs_dtype: dtype of the stored observation windows (the policy's ``window_dtype``)
    :param device: PyTorch device
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param gamma: Discount factor
    :param n_envs: Number of parallel environments
    """

    window_observations: np.ndarray
    window_prev_actions: np.ndarray
    window_valid: np.ndarray

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        context_len: int,
        obs_dim: int,
        action_feature_dim: int,
        obs_dtype: type[np.generic] = np.float32,
        device: th.device | str = "auto",
        gae_lambda: float = 1,
        gamma: float = 0.99,
        n_envs: int = 1,
    ):
        self.context_len = context_len
        self.obs_dim = obs_dim
        self.action_feature_dim = action_feature_dim
        self.obs_dtype = obs_dtype
        flat_space = spaces.Box(-np.inf, np.inf, (obs_dim,), dtype=np.float32)
        super().__init__(buffer_size, flat_space, action_space, device, gae_lambda, gamma, n_envs=n_envs)

    def reset(self) -> None:
        shape = (self.buffer_size, self.n_envs, self.context_len)
        self.window_observations = np.zeros((*shape, self.obs_dim), dtype=self.obs_dtype)
        self.window_prev_actions = np.zeros((*shape, self.action_feature_dim), dtype=np.float32)
        self.window_valid = np.zeros(shape, dtype=bool)
        super().reset()

    def add(self, *args: Any, context: TransformerContext, **kwargs: Any) -> None:  # type: ignore[override]
        """
        :param context: the context the policy acted on at this step (arrays of shape (n_envs, K, ...))
        """
        # Copy, never keep a reference: a window updated in place later would silently shift the training data.
        self.window_observations[self.pos] = context.observations
        self.window_prev_actions[self.pos] = context.prev_actions
        self.window_valid[self.pos] = context.valid
        super().add(*args, **kwargs)

    def get(self, batch_size: int | None = None) -> Generator[TransformerRolloutBufferSamples, None, None]:  # type: ignore[override]
        if not self.full:
            raise RuntimeError("TransformerRolloutBuffer.get() called before the rollout was complete")
        if not self.generator_ready:
            for name in ("window_observations", "window_prev_actions", "window_valid"):
                self.__dict__[name] = self.swap_and_flatten(self.__dict__[name])
        yield from super().get(batch_size)  # type: ignore[misc]

    def _get_samples(  # type: ignore[override]
        self,
        batch_inds: np.ndarray,
        env: VecNormalize | None = None,
    ) -> TransformerRolloutBufferSamples:
        windows = ContextWindows(
            observations=self.to_torch(self.window_observations[batch_inds]),
            prev_actions=self.to_torch(self.window_prev_actions[batch_inds]),
            valid=self.to_torch(self.window_valid[batch_inds]),
        )
        return TransformerRolloutBufferSamples(
            windows=windows,
            actions=self.to_torch(self.actions[batch_inds].astype(np.float32, copy=False)),
            old_values=self.to_torch(self.values[batch_inds].flatten()),
            old_log_prob=self.to_torch(self.log_probs[batch_inds].flatten()),
            advantages=self.to_torch(self.advantages[batch_inds].flatten()),
            returns=self.to_torch(self.returns[batch_inds].flatten()),
        )
