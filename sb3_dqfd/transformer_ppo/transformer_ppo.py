"""Transformer PPO: the clipped PPO algorithm with a context-window transformer actor-critic."""

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance

from sb3_dqfd.common.transformer.on_policy_algorithm import TransformerOnPolicyAlgorithm
from sb3_dqfd.common.transformer.policies import TransformerActorCriticPolicy
from sb3_dqfd.transformer_ppo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

SelfTransformerPPO = TypeVar("SelfTransformerPPO", bound="TransformerPPO")


class TransformerPPO(TransformerOnPolicyAlgorithm):
    """
    Proximal Policy Optimization (PPO, clip version, Schulman et al. 2017, https://arxiv.org/abs/1707.06347) with a
    transformer-encoder policy that attends over each env's last ``context_len`` steps, giving the agent memory of
    the current episode. SB3's PPO otherwise: the same arguments and defaults where they apply.

    Each step's context window is stored in the rollout buffer as a copy, so every minibatch of every epoch is one
    batched forward pass over exactly the windows the policy acted on (including slots from the previous rollout):
    before the first update, the probability ratios are exactly 1. Unlike a recurrent PPO, no hidden state goes
    stale between epochs and minibatches need not keep sequences together.

    As ``TransformerA2C``, the critic is trained by default on PopArt-normalized targets (van Hasselt et al. 2016,
    https://arxiv.org/abs/1602.07714), updated once per rollout before the epochs, and the policy standardizes
    observations with running statistics updated after the epochs; both are saved with the model. The value loss
    and its clipping (``clip_range_vf``) are then in units of the running return std, so ``clip_range_vf`` no longer
    depends on the reward scale.

    :param policy: The policy model to use ("MlpPolicy", "CnnPolicy", "MultiInputPolicy" or a
        ``TransformerActorCriticPolicy`` subclass)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
        (i.e. rollout buffer size is n_steps * n_envs where n_envs is number of environment copies running in parallel)
    :param batch_size: Minibatch size (of steps, each with its window); must divide ``n_steps * n_envs``
    :param n_epochs: Number of epoch when optimizing the surrogate loss
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param clip_range: Clipping parameter, it can be a function of the current progress remaining (from 1 to 0).
    :param clip_range_vf: Clipping parameter for the value function, it can be a function of the current progress
        remaining (from 1 to 0). None (default): no clipping. In value-head units: with ``normalize_value_targets``
        a fraction of the running return std, without it in reward units as SB3's.
    :param normalize_advantage: Whether to normalize or not the advantage (per minibatch, as SB3's PPO)
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation
    :param max_grad_norm: The maximum value for the gradient clipping
    :param target_kl: Limit the KL divergence between updates: stop the epochs when the approximate KL of a
        minibatch exceeds ``1.5 * target_kl`` (SB3 issue #213). By default, there is no limit on the kl div.
    :param normalize_value_targets: Train the critic on PopArt-normalized targets and scale the advantages by the
        same running std (False: raw returns, the behaviour of SB3's PPO)
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

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    clip_range: Schedule
    clip_range_vf: Schedule | None

    def __init__(
        self,
        policy: str | type[TransformerActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        target_kl: float | None = None,
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
        if n_epochs < 1:
            raise ValueError(f"n_epochs must be >= 1, got {n_epochs}.")
        if isinstance(clip_range, float | int) and clip_range <= 0:
            raise ValueError(f"clip_range must be > 0, got {clip_range}.")
        if isinstance(clip_range_vf, float | int) and clip_range_vf <= 0:
            raise ValueError(f"clip_range_vf must be > 0 (or None for no value clipping), got {clip_range_vf}.")
        if target_kl is not None and target_kl <= 0:
            raise ValueError(f"target_kl must be > 0 (or None for no limit), got {target_kl}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        # Advantage normalization of a single sample divides 0 by 0 (SB3 issue #440)
        if normalize_advantage and batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 with normalize_advantage=True, got {batch_size}.")
        if self.env is not None:
            buffer_size = self.env.num_envs * self.n_steps
            if buffer_size % batch_size != 0:
                # SB3's PPO warns and trains on a truncated last minibatch; its advantage normalization can then
                # divide by the std of one sample
                raise ValueError(
                    f"batch_size ({batch_size}) must divide n_steps * n_envs = {self.n_steps} * {self.env.num_envs} = "
                    f"{buffer_size}, the number of steps per rollout."
                )
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.clip_range = clip_range  # type: ignore[assignment]
        self.clip_range_vf = clip_range_vf  # type: ignore[assignment]
        self.normalize_advantage = normalize_advantage
        self.target_kl = target_kl
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        # Schedules for policy and value clipping
        self.clip_range = FloatSchedule(self.clip_range)
        if self.clip_range_vf is not None:
            self.clip_range_vf = FloatSchedule(self.clip_range_vf)

    def train(self) -> None:
        """
        Update the policy on the rollout: ``n_epochs`` passes over minibatches of stored windows with PPO's clipped
        surrogate, PopArt-normalized value targets by default.
        """
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)
        if self.normalize_value_targets:
            self.policy.update_value_normalization(
                th.as_tensor(self.rollout_buffer.returns, device=self.device), self.value_norm_beta
            )

        entropy_losses, pg_losses, value_losses, clip_fractions, grad_norms = [], [], [], [], []
        continue_training = True
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for rollout_data in self.rollout_buffer.get(self.batch_size):
                actions = rollout_data.actions
                if isinstance(self.action_space, spaces.Discrete):
                    actions = actions.long().flatten()
                normalized_values, log_prob, entropy = self.policy.evaluate_actions(rollout_data.windows, actions)
                normalized_values = normalized_values.flatten()  # (batch,)

                # Advantages in value-head units (divided by the running return std; identity without normalization).
                advantages = rollout_data.advantages / self.policy.value_std
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

                # Clipped surrogate L^CLIP: ratio r = pi(a|window) / pi_old(a|window), 1 before the first update
                ratio = th.exp(log_prob - rollout_data.old_log_prob)
                policy_loss_1 = advantages * ratio
                policy_loss_2 = advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
                policy_loss = -th.min(policy_loss_1, policy_loss_2).mean()
                pg_losses.append(policy_loss.item())
                clip_fractions.append(th.mean((th.abs(ratio - 1) > clip_range).float()).item())

                # Value loss in value-head units: the targets and the collection-time values (stored in reward
                # units) both read with the current statistics
                returns = self.policy.normalize_values(rollout_data.returns)
                values_pred = normalized_values
                if clip_range_vf is not None:
                    old_values = self.policy.normalize_values(rollout_data.old_values)
                    values_pred = old_values + th.clamp(normalized_values - old_values, -clip_range_vf, clip_range_vf)
                value_loss = F.mse_loss(returns, values_pred)
                value_losses.append(value_loss.item())

                # Entropy bonus (approximated by -log_prob when the distribution has no closed form)
                entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
                entropy_losses.append(entropy_loss.item())
                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss

                # Approximate reverse KL, E[(r - 1) - log r] (http://joschu.net/blog/kl-approx.html), for early stopping
                with th.no_grad():
                    log_ratio = log_prob - rollout_data.old_log_prob
                    approx_kl_div = th.mean((th.exp(log_ratio) - 1) - log_ratio).cpu().numpy()
                    approx_kl_divs.append(approx_kl_div)
                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_div:.2f}")
                    break

                self.policy.optimizer.zero_grad()
                loss.backward()
                grad_norms.append(th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm).item())
                self.policy.optimizer.step()

            self._n_updates += 1
            if not continue_training:
                break

        # After the gradient steps: the next rollout is collected *and* trained on with the new statistics.
        self.policy.update_observation_normalization(th.as_tensor(self.rollout_buffer.observations, device=self.device))

        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        if grad_norms:
            self.logger.record("train/grad_norm", np.mean(grad_norms))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
        self._record_statistics()

    def learn(
        self: SelfTransformerPPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "TransformerPPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfTransformerPPO:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
