"""TD3fD: Twin Delayed DDPG from demonstrations, in the DDPGfD recipe with the Q-filtered behaviour-cloning term."""

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, PyTorchObs, Schedule
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.td3.td3 import TD3

from sb3_dqfd.common.buffers import DQfDReplayBufferSamples
from sb3_dqfd.common.ddpgfd import ActorCriticFromDemonstrations
from sb3_dqfd.common.from_demonstrations import StepStatistics
from sb3_dqfd.td3fd.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, TD3Policy

SelfTD3fD = TypeVar("SelfTD3fD", bound="TD3fD")


class TD3fD(ActorCriticFromDemonstrations, TD3):
    """
    Twin Delayed DDPG from demonstrations (TD3fD): SB3's :class:`~stable_baselines3.TD3` with the DDPGfD recipe.

    Papers: Vecerik et al. 2017, https://arxiv.org/abs/1707.08817 (DDPGfD: demonstrations kept in a prioritized
    replay buffer with a priority bonus, 1-step and n-step critic targets, L2 regularization, pre-training); Nair et
    al. 2018, https://arxiv.org/abs/1709.10089 (behaviour cloning under the Q-filter); Fujimoto et al. 2018,
    https://arxiv.org/abs/1802.09477 (TD3).

    Demonstrations stay permanently in a :class:`~sb3_dqfd.common.buffers.DQfDReplayBuffer`, with their actions
    scaled to ``[-1, 1]`` as TD3 stores the agent's (``policy.scale_action``). Each gradient step, on a prioritized
    batch (or a fixed ``demo_ratio`` share of demonstrations):

    - critic: ``sum_c [mean_i w_i (Q_c(s, a) - y_1)^2 + n_step_coef * mean_i w_i (Q_c(s, a) - y_n)^2]`` with the
      1-step target ``y_1`` and the n-step target ``y_n`` of the same rows, both bootstrapping from the minimum of the
      target critics at the target actor's smoothed action (TD3); the new priorities are the rows' mean absolute
      1-step TD errors over the critics plus ``agent_eps`` or ``demo_eps``;
    - every ``policy_delay`` updates, the actor: SB3's ``-mean(Q_1(s, pi(s)))`` plus ``bc_coef`` times the behaviour
      cloning term ``sum_demo ||pi(s) - a_demo||^2 / B`` on the demonstration rows where the first critic prefers the
      demonstrated action: ``Q_1(s, a_demo) > Q_1(s, pi(s))`` (the Q-filter); then the Polyak updates of the targets;
    - ``l2_coef``: the gradient ``2 * l2_coef * theta`` of ``l2_coef * ||theta||^2`` added to the actor's and the
      critic's gradients (as DQfD).

    ``pretrain_steps`` runs these updates on demonstrations only, once, at the start of the first ``learn()``, with
    the actor trained by the behaviour-cloning term alone, without the Q-filter (the critic knows no other action
    yet: see :meth:`~sb3_dqfd.common.ddpgfd.ActorCriticFromDemonstrations._actor_loss`).
    Logs: SB3's ``train/critic_loss`` (1-step + n-step) and ``train/actor_loss`` (with the BC term, mean over the
    delayed actor updates), and ``train/loss_td``, ``train/loss_n_step``, ``train/loss_bc``,
    ``train/q_filter_fraction`` (share of the batch's demonstration rows the BC term applies to), ``train/loss_l2``,
    ``train/demo_fraction``, ``train/priority_demo``, ``train/priority_agent``, ``train/beta``.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy: SB3's TD3 policies)
    :param env: The environment to learn from (if registered in Gym, can be str). Its actions must be a bounded
        ``Box`` (use DQfD for discrete actions)
    :param demonstrations: expert demonstrations, anything :func:`sb3_dqfd.load_demonstrations` accepts (a
        :class:`~sb3_dqfd.Demonstrations`, a file path, ``"expert:N"``, ...), validated against ``env`` (shape, NaN,
        actions within the Box bounds: refused, not clipped). They are kept permanently in the replay buffer, saved
        with the model (unscaled, as tensors) and put back into the replay buffer by :meth:`load`
    :param learning_rate: learning rate for adam optimizer, the same learning rate will be used for all networks
        (Q-Values, Actor and Value function); it can be a function of the current progress remaining (from 1 to 0)
    :param buffer_size: size of the replay buffer, demonstrations included
    :param learning_starts: how many steps of the model to collect transitions for before learning starts
    :param batch_size: Minibatch size for each gradient update
    :param tau: the soft update coefficient ("Polyak update", between 0 and 1)
    :param gamma: the discount factor
    :param train_freq: Update the model every ``train_freq`` steps. Alternatively pass a tuple of frequency and unit
        like ``(5, "step")`` or ``(2, "episode")``.
    :param gradient_steps: How many gradient steps to do after each rollout (see ``train_freq``); ``-1``: as many as
        environment steps during the rollout
    :param action_noise: the action noise type (None by default), this can help for hard exploration problem
    :param replay_buffer_class: ``DQfDReplayBuffer`` or a subclass (``None``: chosen as DQfD chooses it)
    :param replay_buffer_kwargs: Extra keyword arguments for the replay buffer
    :param optimize_memory_usage: not supported (must be False; n-step windows need the stored next observations)
    :param n_steps: length ``n`` of the n-step returns of the n-step critic target (the DQfD buffer gives 1-step and
        n-step fields of the same rows)
    :param n_step_coef: weight of the n-step critic loss
    :param bc_coef: weight of the behaviour-cloning term of the actor loss (0: no behaviour cloning). It competes with
        the critic's value of the actor's action: with dense rewards (Q-values of ~100 on LunarLanderContinuous) a
        weight of 1 lets a pre-trained actor collapse within the first 1,000 updates; the shipped entry uses 50
    :param q_filter: apply the behaviour-cloning term only where ``Q_1(s, a_demo) > Q_1(s, pi(s))`` (Nair et al.). Right after
        pre-training the critic has seen only demonstrated actions and may rate the actor's own above them, which
        switches the cloning off where it is needed (measured: hand-off collapse with the filter at ``bc_coef`` 1
        and 50, none without it at 50; ``hyperparams/sacfd.yml``)
    :param normalized_rl_coef: when set, the actor's RL term is divided by the batch's mean ``|Q(s, pi(s))|``
        (detached) and multiplied by this coefficient: TD3+BC's ``lambda = alpha / mean |Q|`` (Fujimoto and Gu 2021,
        https://arxiv.org/abs/2106.06860, ``alpha`` 2.5), so that the weight of ``bc_coef`` does not depend on the
        scale of the returns. None (default): SB3's unscaled term. Measured on HalfCheetah-v5 (Q-values of ~600):
        ``bc_coef`` 50 alone lets the pre-trained actor fall below 0 at the hand-off; with this at 2.5 it stays in
        the thousands, though not at its pre-trained level (``hyperparams/sacfd.yml``, README's benchmark)
    :param l2_coef: weight of the squared L2 norm of the actor's and the critic's parameters
    :param pretrain_steps: gradient steps on demonstrations only at the start of the first ``learn()``
    :param demo_ratio: fixed share of demonstrations in each batch, or ``None`` to let the priorities (with the
        ``demo_eps`` bonus) set the mix as in DDPGfD
    :param prioritized_replay: sample proportionally to priorities (otherwise uniformly, weights 1)
    :param alpha: priority exponent of prioritized replay
    :param beta0: initial importance-sampling exponent, annealed linearly to 1
    :param beta_annealing_fraction: fraction of each ``learn()`` budget over which beta reaches 1
    :param agent_eps: priority bonus of agent transitions
    :param demo_eps: priority bonus of demonstration transitions
    :param policy_delay: Policy and target networks will only be updated once every policy_delay steps per training
        steps. The Q values will be updated policy_delay more often (update every training step).
    :param target_policy_noise: Standard deviation of Gaussian noise added to target policy (smoothing noise)
    :param target_noise_clip: Limit for absolute value of target policy smoothing noise.
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    policy: TD3Policy

    def __init__(
        self,
        policy: str | type[TD3Policy],
        env: GymEnv | str,
        demonstrations: Any = None,
        learning_rate: float | Schedule = 1e-3,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 5,
        n_step_coef: float = 1.0,
        bc_coef: float = 1.0,
        q_filter: bool = True,
        normalized_rl_coef: float | None = None,
        l2_coef: float = 1e-5,
        pretrain_steps: int = 0,
        demo_ratio: float | None = None,
        prioritized_replay: bool = True,
        alpha: float = 0.4,
        beta0: float = 0.6,
        beta_annealing_fraction: float = 1.0,
        agent_eps: float = 1e-3,
        demo_eps: float = 1.0,
        policy_delay: int = 2,
        target_policy_noise: float = 0.2,
        target_noise_clip: float = 0.5,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        non_negative = dict(
            n_step_coef=n_step_coef, bc_coef=bc_coef, l2_coef=l2_coef, pretrain_steps=pretrain_steps, alpha=alpha
        )
        self._check_demonstration_arguments(n_steps, non_negative, demo_ratio, beta0)
        if normalized_rl_coef is not None and not normalized_rl_coef > 0:
            raise ValueError(f"{type(self).__name__}: normalized_rl_coef must be > 0 or None, got {normalized_rl_coef}")
        self._check_replay_buffer_class(replay_buffer_class)
        env = self._continuous_env(env, verbose)
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            policy_delay=policy_delay,
            target_policy_noise=target_policy_noise,
            target_noise_clip=target_noise_clip,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        self.n_step_coef = n_step_coef
        self.bc_coef = bc_coef
        self.q_filter = q_filter
        self.normalized_rl_coef = normalized_rl_coef
        self.l2_coef = l2_coef
        self.pretrain_steps = pretrain_steps
        self.demo_ratio = demo_ratio
        self.prioritized_replay = prioritized_replay
        self.alpha = alpha
        self.beta0 = beta0
        self.beta_annealing_fraction = beta_annealing_fraction
        self.agent_eps = agent_eps
        self.demo_eps = demo_eps
        self._init_demonstrations(
            demonstrations, warn_without="TD3 with prioritized n-step replay" if _init_setup_model else None
        )
        if _init_setup_model:
            self._setup_model()

    def _optimizers(self) -> list[th.optim.Optimizer]:
        return [self.actor.optimizer, self.critic.optimizer]

    def _next_values(self, next_observations: PyTorchObs) -> th.Tensor:
        next_actions = self.actor_target(next_observations)  # [2B, action_dim], in [-1, 1]
        # Target policy smoothing: clipped Gaussian noise on the target action
        noise = (th.randn_like(next_actions) * self.target_policy_noise).clamp(-self.target_noise_clip, self.target_noise_clip)
        next_actions = (next_actions + noise).clamp(-1, 1)
        next_q_values = th.cat(self.critic_target(next_observations, next_actions), dim=1)  # [2B, n_critics]
        return next_q_values.min(dim=1, keepdim=True).values

    def _actor_q(self, observations: PyTorchObs, actions: th.Tensor) -> th.Tensor:
        # SB3 types q1_forward's observations as a tensor; a dict of them (Dict spaces) goes through as in forward()
        return self.critic.q1_forward(observations, actions)  # type: ignore[arg-type]

    def _gradient_step(self, batch_size: int, demo_only: bool) -> StepStatistics:
        """
        One TD3fD update on a sampled batch: the critic, and every ``policy_delay`` updates the actor and the targets.

        :param batch_size: number of transitions sampled
        :param demo_only: sample demonstrations only (pre-training)
        :return: the step's statistics, for :meth:`_record` (NaN actor terms on steps without an actor update)
        """
        data: DQfDReplayBufferSamples = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env, demo_only=demo_only)
        critic = self._critic_update(data)
        nan = th.full((), np.nan, device=self.device)
        actor_loss, bc = nan, {"bc": nan, "q_filter_fraction": nan}
        # The update being done is number _n_updates + 1 (counted after the step)
        if (self._n_updates + 1) % self.policy_delay == 0:
            policy_actions = self.actor(data.observations)  # [B, action_dim]
            bc = self._bc_terms(data, policy_actions, pretraining=demo_only)
            q_policy = self._actor_q(data.observations, policy_actions)  # [B, 1]
            actor_loss = self._actor_loss(-q_policy.mean(), bc["bc"], q_policy, pretraining=demo_only)
            self._optimize(self.actor.optimizer, actor_loss)
            polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
            polyak_update(self.actor.parameters(), self.actor_target.parameters(), self.tau)
            # Copy running stats, see SB3 GH issue #996
            polyak_update(self.critic_batch_norm_stats, self.critic_batch_norm_stats_target, 1.0)
            polyak_update(self.actor_batch_norm_stats, self.actor_batch_norm_stats_target, 1.0)
        loss_terms = th.stack(
            [
                critic["loss"],
                critic["td"],
                critic["n_step"],
                actor_loss,
                bc["bc"],
                bc["q_filter_fraction"],
                self._l2_norm(),
            ]
        ).detach()
        return StepStatistics(loss_terms, self._batch_statistics(data.indices))

    def learn(
        self: SelfTD3fD,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "TD3fD",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfTD3fD:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
