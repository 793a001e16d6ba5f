"""SACfD: Soft Actor-Critic from demonstrations, in the DDPGfD recipe with the Q-filtered behaviour-cloning term."""

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, PyTorchObs, Schedule
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.sac.sac import SAC

from sb3_dqfd.common.buffers import DQfDReplayBufferSamples
from sb3_dqfd.common.ddpgfd import ActorCriticFromDemonstrations
from sb3_dqfd.common.from_demonstrations import StepStatistics
from sb3_dqfd.sacfd.policies import CnnPolicy, EnsembleCritic, MlpPolicy, MultiInputPolicy, SACfDPolicy

SelfSACfD = TypeVar("SelfSACfD", bound="SACfD")

#: RLPD (Ball et al., "Efficient Online Reinforcement Learning with Offline Data", ICML 2023,
#: https://arxiv.org/abs/2302.02948) as SACfD settings, for ``SACfD("MlpPolicy", env, demonstrations=..., **preset)``:
#: symmetric sampling (half of each batch from the demonstrations, uniformly: no PER), LayerNorm in the critics, an
#: ensemble of 10 critics whose target is the minimum over a random subset of 2, 20 gradient steps per environment
#: step (UTD ratio 20), no pre-training and neither behaviour cloning nor L2 (plain SAC losses on 1-step targets).
#: ``learning_starts`` (random actions before the first update) is this package's choice: with demonstrations in the
#: buffer, updates could start at once, but the agent half of each batch needs some agent data.
RLPD_HYPERPARAMS: dict[str, Any] = dict(
    learning_rate=3e-4,
    batch_size=256,
    tau=0.005,
    gamma=0.99,
    learning_starts=5_000,
    train_freq=1,
    gradient_steps=20,
    n_steps=1,
    n_step_coef=0.0,
    bc_coef=0.0,
    l2_coef=0.0,
    pretrain_steps=0,
    demo_ratio=0.5,
    prioritized_replay=False,
    policy_kwargs=dict(net_arch=[256, 256], n_critics=10, critic_layer_norm=True, n_target_critics=2),
)


class SACfD(ActorCriticFromDemonstrations, SAC):
    """
    Soft Actor-Critic from demonstrations (SACfD): SB3's :class:`~stable_baselines3.SAC` with the DDPGfD recipe.

    Papers: Vecerik et al. 2017, https://arxiv.org/abs/1707.08817 (DDPGfD: demonstrations kept in a prioritized
    replay buffer with a priority bonus, 1-step and n-step critic targets, L2 regularization, pre-training); Nair et
    al. 2018, https://arxiv.org/abs/1709.10089 (behaviour cloning under the Q-filter); Haarnoja et al. 2018,
    https://arxiv.org/abs/1801.01290 (SAC).

    Demonstrations stay permanently in a :class:`~sb3_dqfd.common.buffers.DQfDReplayBuffer`, with their actions
    scaled to ``[-1, 1]`` as SAC stores the agent's (``policy.scale_action``). Each gradient step, on a prioritized
    batch (or a fixed ``demo_ratio`` share of demonstrations):

    - entropy coefficient: SB3's update;
    - critic: ``sum_c [mean_i w_i (Q_c(s, a) - y_1)^2 + n_step_coef * mean_i w_i (Q_c(s, a) - y_n)^2] / 2`` with the
      1-step target ``y_1`` and the n-step target ``y_n`` of the same rows, both bootstrapping from the entropy-
      regularized minimum of the target critics (a random subset of an ensemble with :class:`SACfDPolicy`'s
      ``n_target_critics``); the new priorities are the rows' mean absolute 1-step TD errors over the critics plus
      ``agent_eps`` or ``demo_eps``;
    - actor: SB3's ``mean(alpha * log pi(a|s) - Q(s, a))`` with ``a ~ pi(s)``, plus ``bc_coef`` times the behaviour
      cloning term ``sum_demo ||mu(s) - a_demo||^2 / B`` on the demonstration rows where the critic prefers the
      demonstrated action: ``Q(s, a_demo) > Q(s, mu(s))`` (the Q-filter), ``mu(s)`` the actor's deterministic action;
    - ``l2_coef``: the gradient ``2 * l2_coef * theta`` of ``l2_coef * ||theta||^2`` added to the actor's and the
      critic's gradients (as DQfD);
    - target critics: Polyak update every ``target_update_interval`` gradient steps (counted over all updates).

    ``pretrain_steps`` runs these updates on demonstrations only, once, at the start of the first ``learn()``, with
    the actor trained by the behaviour-cloning term alone, without the Q-filter (the critic knows no other action
    yet: see :meth:`~sb3_dqfd.common.ddpgfd.ActorCriticFromDemonstrations._actor_loss`).
    Logs: SB3's ``train/critic_loss`` (1-step + n-step), ``train/actor_loss`` (with the BC term), ``train/ent_coef``,
    ``train/ent_coef_loss``, and ``train/loss_td``, ``train/loss_n_step``, ``train/loss_bc``,
    ``train/q_filter_fraction`` (share of the batch's demonstration rows the BC term applies to),
    ``train/loss_l2``, ``train/demo_fraction``, ``train/priority_demo``, ``train/priority_agent``, ``train/beta``.
    The RLPD settings are in :data:`RLPD_HYPERPARAMS`.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy: :class:`SACfDPolicy` or a
        subclass)
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
    :param q_filter: apply the behaviour-cloning term only where ``Q(s, a_demo) > Q(s, mu(s))`` (Nair et al.). Right after
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
    :param ent_coef: Entropy regularization coefficient ("auto" to learn it, "auto_0.1" to start it at 0.1)
    :param target_update_interval: update the target network every ``target_update_interval`` gradient steps
    :param target_entropy: target entropy when learning ``ent_coef`` (``"auto"``: ``-dim(A)``)
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE) instead of action noise exploration
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE (-1: only at the rollout start)
    :param use_sde_at_warmup: Whether to use gSDE instead of uniform sampling during the warm up phase
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation (``n_critics``,
        ``critic_layer_norm``, ``n_target_critics``, ...)
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
    _loss_keys: ClassVar[tuple[str, ...]] = (*ActorCriticFromDemonstrations._loss_keys, "ent_coef", "ent_coef_loss")
    # SB3 halves SAC's critic loss: 0.5 * the sum of the critics' MSEs
    _critic_loss_scale: ClassVar[float] = 0.5
    policy: SACfDPolicy
    critic: EnsembleCritic
    critic_target: EnsembleCritic

    def __init__(
        self,
        policy: str | type[SACfDPolicy],
        env: GymEnv | str,
        demonstrations: Any = None,
        learning_rate: float | Schedule = 3e-4,
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
        ent_coef: str | float = "auto",
        target_update_interval: int = 1,
        target_entropy: str | float = "auto",
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        use_sde_at_warmup: bool = False,
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
            ent_coef=ent_coef,
            target_update_interval=target_update_interval,
            target_entropy=target_entropy,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            use_sde_at_warmup=use_sde_at_warmup,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        if not issubclass(self.policy_class, SACfDPolicy):
            raise ValueError(
                f"SACfD needs a SACfDPolicy (or a subclass), got {self.policy_class.__name__}: its critics give the "
                "target and actor values (sb3_dqfd.sacfd.MlpPolicy, CnnPolicy, MultiInputPolicy)"
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
            demonstrations, warn_without="SAC with prioritized n-step replay" if _init_setup_model else None
        )
        if _init_setup_model:
            self._setup_model()

    def _optimizers(self) -> list[th.optim.Optimizer]:
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers.append(self.ent_coef_optimizer)
        return optimizers

    def _next_values(self, next_observations: PyTorchObs) -> th.Tensor:
        next_actions, next_log_prob = self.actor.action_log_prob(next_observations)
        # The minimum over the target critics (a random subset of an ensemble), minus the entropy term
        return self.critic_target.target_q(next_observations, next_actions) - self._ent_coef() * next_log_prob.reshape(-1, 1)

    def _actor_q(self, observations: PyTorchObs, actions: th.Tensor) -> th.Tensor:
        return self.critic.actor_q(observations, actions)

    def _ent_coef(self) -> th.Tensor:
        """
        The entropy coefficient, detached so that the other losses do not move it
        (https://github.com/rail-berkeley/softlearning/issues/60). Read after the step's entropy-coefficient update
        (SB3 reads it just before; the difference is one optimizer step).
        """
        if self.ent_coef_optimizer is None or self.log_ent_coef is None:
            return self.ent_coef_tensor
        return th.exp(self.log_ent_coef.detach())

    def _entropy_coefficient_update(self, log_prob: th.Tensor) -> th.Tensor | None:
        """
        SB3's entropy-coefficient step.

        :param log_prob: ``log pi(a|s)`` of the actor's sampled actions, ``[B, 1]``
        :return: the entropy-coefficient loss, or None when ``ent_coef`` is fixed
        """
        if self.ent_coef_optimizer is None or self.log_ent_coef is None:
            return None
        ent_coef_loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()  # type: ignore[operator]
        self.ent_coef_optimizer.zero_grad()
        ent_coef_loss.backward()
        self.ent_coef_optimizer.step()
        return ent_coef_loss

    def _gradient_step(self, batch_size: int, demo_only: bool) -> StepStatistics:
        """
        One SACfD update (entropy coefficient, critic, actor, target critics) on a sampled batch.

        :param batch_size: number of transitions sampled
        :param demo_only: sample demonstrations only (pre-training)
        :return: the step's statistics, for :meth:`_record`
        """
        data: DQfDReplayBufferSamples = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env, demo_only=demo_only)
        # log_std may have changed between two gradient steps
        if self.use_sde:
            self.actor.reset_noise()
        # The actor's distribution at s: a sampled action (entropy and SAC's actor loss) and its mode mu(s) (BC)
        mean_actions, log_std, kwargs = self.actor.get_action_dist_params(data.observations)
        policy_actions = self.actor.action_dist.actions_from_params(mean_actions, log_std, deterministic=True, **kwargs)
        actions_pi, log_prob = self.actor.action_dist.log_prob_from_params(mean_actions, log_std, **kwargs)
        log_prob = log_prob.reshape(-1, 1)  # [B, 1]
        ent_coef_loss = self._entropy_coefficient_update(log_prob)
        ent_coef = self._ent_coef()

        critic = self._critic_update(data)

        bc = self._bc_terms(data, policy_actions, pretraining=demo_only)
        q_policy = self._actor_q(data.observations, actions_pi)  # [B, 1]
        rl_loss = (ent_coef * log_prob - q_policy).mean()
        actor_loss = self._actor_loss(rl_loss, bc["bc"], q_policy, pretraining=demo_only)
        self._optimize(self.actor.optimizer, actor_loss)

        if (self._n_updates + 1) % self.target_update_interval == 0:
            polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
            # Copy running stats, see SB3 GH issue #996
            polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

        nan = th.full((), np.nan, device=self.device)
        loss_terms = th.stack(
            [
                critic["loss"],
                critic["td"],
                critic["n_step"],
                actor_loss,
                bc["bc"],
                bc["q_filter_fraction"],
                self._l2_norm(),
                ent_coef.reshape(()),
                nan if ent_coef_loss is None else ent_coef_loss,
            ]
        ).detach()
        return StepStatistics(loss_terms, self._batch_statistics(data.indices))

    def learn(
        self: SelfSACfD,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "SACfD",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfSACfD:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
