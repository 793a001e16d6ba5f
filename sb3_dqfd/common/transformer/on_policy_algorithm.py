"""Base class of the transformer on-policy algorithms: setup, rollout collection with context windows, save/load."""

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.vec_env import VecEnv

from sb3_dqfd.common.transformer.buffers import TransformerRolloutBuffer
from sb3_dqfd.common.transformer.context import select_envs
from sb3_dqfd.common.transformer.policies import TransformerActorCriticPolicy
from sb3_dqfd.common.transformer.type_aliases import TransformerContext


class TransformerOnPolicyAlgorithm(OnPolicyAlgorithm):
    """
    An on-policy algorithm whose actor-critic is a ``TransformerActorCriticPolicy``: it carries each env's context
    window across steps and rollouts, stores every step's window in a ``TransformerRolloutBuffer`` and bootstraps
    timeouts with the episode's own window. Subclasses (``TransformerA2C``, ``TransformerPPO``) only add ``train()``.

    The policy's running statistics travel with the model: PopArt value statistics (van Hasselt et al. 2016,
    https://arxiv.org/abs/1602.07714), updated by ``train()`` from the rollout's returns when
    ``normalize_value_targets``, and observation statistics, updated by ``train()`` after its gradient steps so that
    a rollout is read with the same statistics at collection and at training time. Observations are standardized once:
    under a ``VecNormalize`` that normalizes them, the policy's own statistics are off.

    :param policy: The policy model to use ("MlpPolicy", "CnnPolicy", "MultiInputPolicy" or a
        ``TransformerActorCriticPolicy`` subclass)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
        (i.e. batch size is n_steps * n_env where n_env is number of environment copies running in parallel)
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator.
        Equivalent to classic advantage when set to 1.
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation
    :param max_grad_norm: The maximum value for the gradient clipping
    :param normalize_value_targets: Train the critic on PopArt-normalized targets and scale the advantages by the
        same running std (False: raw returns, as SB3)
    :param value_norm_beta: step size of the running value statistics, per rollout
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation (``context_len``, ``d_model``,
        ``n_heads``, ``n_layers``, ``features_extractor_class``, ... see ``TransformerActorCriticPolicy``)
    :param verbose: Verbosity level: 0 for no output, 1 for info messages (such as device or wrappers used), 2 for
        debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
        Setting it to auto, the code will be run on the GPU if possible.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy: TransformerActorCriticPolicy  # type: ignore[assignment]
    rollout_buffer: TransformerRolloutBuffer

    def __init__(
        self,
        policy: str | type[TransformerActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule,
        n_steps: int,
        gamma: float,
        gae_lambda: float,
        ent_coef: float,
        vf_coef: float,
        max_grad_norm: float,
        normalize_value_targets: bool = True,
        value_norm_beta: float = 0.01,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        super().__init__(
            policy,  # type: ignore[arg-type]
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=False,
            sde_sample_freq=-1,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
            supported_action_spaces=(spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary),
        )
        if not 0.0 < value_norm_beta <= 1.0:
            raise ValueError(f"value_norm_beta must be in (0, 1], got {value_norm_beta}.")
        self.normalize_value_targets = normalize_value_targets
        self.value_norm_beta = value_norm_beta
        self._last_context: TransformerContext | None = None
        # (On load, SB3 replaces policy_kwargs with the saved ones afterwards)
        self._standardize_observations_once()
        if _init_setup_model:
            self._setup_model()

    def _standardize_observations_once(self) -> None:
        """
        Under a ``VecNormalize`` that normalizes observations, switch the policy's own running standardization off
        (``policy_kwargs["normalize_observations"] = False``) unless it was asked for, which is an error. Stacked, the
        two running statistics compound their lag: as the policy improves, the spread of the observations grows, the
        env's statistics lag behind it and the policy's (computed on the env's output) lag behind those, so the inputs
        drift in scale. Measured in sb3-contrib's RecurrentPPO CartPoleNoVel test (``VecNormalize``, 5 seeds):
        TransformerPPO passed 2/5 with both, 5/5 with the env's alone (README, "Stability").

        :raises ValueError: ``policy_kwargs`` asks for ``normalize_observations=True`` under such a ``VecNormalize``
        """
        if self._vec_normalize_env is None or not self._vec_normalize_env.norm_obs:
            return
        if self.policy_kwargs.get("normalize_observations", False):
            raise ValueError(
                f"{type(self).__name__}: policy_kwargs normalize_observations=True would standardize observations that "
                "VecNormalize(norm_obs=True) already standardizes (two running statistics compound their drift). "
                "Leave normalize_observations out (it is then switched off) or use VecNormalize(norm_obs=False)."
            )
        self.policy_kwargs = {**self.policy_kwargs, "normalize_observations": False}
        if self.verbose >= 1:
            print("VecNormalize normalizes the observations: the policy's own standardization is off")

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, **self.policy_kwargs
        )
        if not isinstance(self.policy, TransformerActorCriticPolicy):
            raise TypeError(f"{type(self).__name__} needs a TransformerActorCriticPolicy, got {type(self.policy).__name__}.")
        self.policy = self.policy.to(self.device)
        self.rollout_buffer = TransformerRolloutBuffer(
            self.n_steps,
            self.observation_space,  # type: ignore[arg-type]
            self.action_space,
            context_len=self.policy.context_len,
            obs_dim=self.policy.obs_dim,
            action_feature_dim=self.policy.action_feature_dim,
            obs_dtype=self.policy.window_dtype,
            device=self.device,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            n_envs=self.n_envs,
        )
        self._last_context = None

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_last_context"]

    def _timeout_bootstrap(self, context: TransformerContext, dones: np.ndarray, infos: list[dict[str, Any]]) -> np.ndarray:
        """
        Values of the terminal observations of truncated episodes, read with the episode's own (old) window.

        :param context: contexts after acting (``last_action`` holds the action just taken)
        :param dones: done flags returned by the env
        :param infos: infos returned by the env
        :return: per env, ``gamma * V(terminal window)`` for timeouts and 0 elsewhere (shape (n_envs,))
        """
        bonus = np.zeros(len(dones), dtype=np.float32)
        truncated = np.array(
            [
                done and info.get("terminal_observation") is not None and info.get("TimeLimit.truncated", False)
                for done, info in zip(dones, infos, strict=True)
            ],
            dtype=bool,
        )
        if not truncated.any():
            return bonus
        indices = np.flatnonzero(truncated)
        terminal = [infos[i]["terminal_observation"] for i in indices]
        # One batch of terminal observations (a batch per key for Dict spaces)
        terminal_obs = (
            {key: np.stack([obs[key] for obs in terminal]) for key in terminal[0]}
            if isinstance(terminal[0], dict)
            else np.stack(terminal)
        )
        terminal_context = self.policy.advance_context(
            select_envs(context, indices), terminal_obs, np.zeros(len(indices), dtype=bool)
        )
        with th.no_grad():
            values = self.policy.predict_values(self.policy.context_to_windows(terminal_context))
        bonus[indices] = self.gamma * values.cpu().numpy().flatten()
        return bonus

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """
        Collect experiences with the current policy into a ``TransformerRolloutBuffer``, carrying each env's context
        window across steps and rollouts.

        :param env: The training environment
        :param callback: Callback that will be called at each step (and at the beginning and end of the rollout)
        :param rollout_buffer: Buffer to fill with rollouts
        :param n_rollout_steps: Number of experiences to collect per environment
        :return: True if function returned with at least `n_rollout_steps` collected, False if callback terminated
            rollout prematurely.
        """
        if not isinstance(rollout_buffer, TransformerRolloutBuffer):
            raise TypeError(f"{type(self).__name__} needs a TransformerRolloutBuffer, got {type(rollout_buffer).__name__}.")
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        callback.on_rollout_start()
        context = self._last_context
        if context is None or len(context.valid) != env.num_envs:
            context = self.policy.initial_context(env.num_envs)

        n_steps = 0
        while n_steps < n_rollout_steps:
            # Same step as predict(): clear the windows of envs whose episode starts, append the new observation.
            context = self.policy.advance_context(context, self._last_obs, self._last_episode_starts)  # type: ignore[arg-type]
            with th.no_grad():
                actions_tensor, values, log_probs = self.policy(self.policy.context_to_windows(context))
            actions = actions_tensor.cpu().numpy()
            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                # Sampled actions are flat per env: shape them as the space before clipping to its bounds
                env_shaped = actions.reshape((-1, *self.action_space.shape))
                clipped_actions = np.clip(env_shaped, self.action_space.low, self.action_space.high)

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1

            env_actions = clipped_actions.reshape((env.num_envs, *self.action_space.shape))  # type: ignore[misc]
            acted_context = context._replace(last_action=self.policy.action_features(env_actions))
            # Timeouts bootstrap with V(terminal obs) as SB3's A2C/PPO do (GitHub issue #633).
            rewards = rewards + self._timeout_bootstrap(acted_context, dones, infos)
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)
            rollout_buffer.add(
                context.observations[:, -1],  # the observation just acted on, flattened as in the windows
                actions,
                rewards,
                self._last_episode_starts,
                values,
                log_probs,
                context=context,
            )
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones
            context = acted_context

        self._last_context = context
        with th.no_grad():
            next_context = self.policy.advance_context(context, new_obs, dones)  # type: ignore[arg-type]
            values = self.policy.predict_values(self.policy.context_to_windows(next_context))
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _record_statistics(self) -> None:
        """Log the running statistics and the critic's fit, the ``train/`` keys both algorithms share."""
        self.logger.record("train/value_mean", self.policy.value_mean.item())
        self.logger.record("train/value_std", self.policy.value_std.item())
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
