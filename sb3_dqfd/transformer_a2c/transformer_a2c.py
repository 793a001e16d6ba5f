"""Transformer A2C: the on-policy A2C algorithm with a context-window transformer actor-critic."""

from typing import Any, ClassVar, TypeVar

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance

from sb3_dqfd.common.transformer.on_policy_algorithm import TransformerOnPolicyAlgorithm
from sb3_dqfd.transformer_a2c.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, TransformerActorCriticPolicy

SelfTransformerA2C = TypeVar("SelfTransformerA2C", bound="TransformerA2C")


class TransformerA2C(TransformerOnPolicyAlgorithm):
    """
    Advantage Actor Critic (A2C, Mnih et al. 2016, https://arxiv.org/abs/1602.01783) with a transformer-encoder
    policy that attends over each env's last ``context_len`` steps, giving the agent memory of the current episode.

    Each step's context window is stored in the rollout buffer as a copy, so the single gradient step per rollout is
    one batched forward pass over exactly the windows the policy acted on (including slots from the previous rollout).

    Reward-scale robustness: by default the critic is trained on PopArt-normalized targets (van Hasselt et al. 2016,
    https://arxiv.org/abs/1602.07714): the GAE returns are standardized with a running mean/std (debiased EMA with
    step ``value_norm_beta``, updated once per rollout, the value head rescaled so its values are preserved) and the
    advantages are divided by the same std. Losses then keep an O(1) scale whatever the reward scale, which is what a
    shared actor-critic encoder with gradient clipping needs. The policy also standardizes observations with running
    statistics by default (``policy_kwargs=dict(normalize_observations=False)`` to turn it off), updated after each
    gradient step so that a rollout is read with the same statistics at collection and at training time; both sets
    of statistics are saved with the model.

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
    :param max_grad_norm: The maximum value for the gradient clipping (training collapses without it)
    :param normalize_advantage: Whether to standardize the advantages per rollout (as SB3's A2C option)
    :param normalize_value_targets: Train the critic on PopArt-normalized targets and scale the advantages by the
        same running std (False: raw returns, the behaviour of SB3's A2C)
    :param value_norm_beta: step size of the running value statistics, per rollout
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation (``context_len``, ``d_model``,
        ``n_heads``, ``n_layers``, ... see ``TransformerActorCriticPolicy``)
    :param verbose: Verbosity level: 0 for no output, 1 for info messages (such as device or wrappers used), 2 for
        debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
        Setting it to auto, the code will be run on the GPU if possible.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }

    def __init__(
        self,
        policy: str | type[TransformerActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 7e-4,
        n_steps: int = 8,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        ent_coef: float = 0.01,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        normalize_advantage: bool = False,
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
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            normalize_value_targets=normalize_value_targets,
            value_norm_beta=value_norm_beta,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        self.normalize_advantage = normalize_advantage
        if _init_setup_model:
            self._setup_model()

    def train(self) -> None:
        """
        One gradient step on the whole rollout (A2C), with PopArt-normalized value targets by default.
        """
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        if self.normalize_value_targets:
            self.policy.update_value_normalization(
                th.as_tensor(self.rollout_buffer.returns, device=self.device), self.value_norm_beta
            )

        for rollout_data in self.rollout_buffer.get(batch_size=None):
            actions = rollout_data.actions
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.long().flatten()
            normalized_values, log_prob, entropy = self.policy.evaluate_actions(rollout_data.windows, actions)

            # Advantages in value-head units (divided by the running return std; identity without normalization).
            advantages = rollout_data.advantages / self.policy.value_std
            if self.normalize_advantage:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            policy_loss = -(advantages * log_prob).mean()
            value_loss = F.mse_loss(self.policy.normalize_values(rollout_data.returns), normalized_values.flatten())
            entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
            loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss

            self.policy.optimizer.zero_grad()
            loss.backward()
            grad_norm = th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()

        # After the gradient step: the next rollout is collected *and* trained on with the new statistics.
        self.policy.update_observation_normalization(th.as_tensor(self.rollout_buffer.observations, device=self.device))

        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/entropy_loss", entropy_loss.item())
        self.logger.record("train/policy_loss", policy_loss.item())
        self.logger.record("train/value_loss", value_loss.item())
        self.logger.record("train/grad_norm", grad_norm.item())
        self._record_statistics()

    def learn(
        self: SelfTransformerA2C,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 100,
        tb_log_name: str = "TransformerA2C",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfTransformerA2C:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
