"""
The DDPGfD recipe shared by SACfD and TD3fD: 1-step and n-step critic targets on the same sampled rows, critic
losses weighted by the importance weights with priorities from the TD errors, and the behaviour-cloning actor term
under the Q-filter.

Papers: Vecerik et al., "Leveraging Demonstrations for Deep Reinforcement Learning on Robotics Problems with Sparse
Rewards", 2017, https://arxiv.org/abs/1707.08817 (DDPGfD); Nair et al., "Overcoming Exploration in Reinforcement
Learning with Demonstrations", ICRA 2018, https://arxiv.org/abs/1709.10089 (behaviour cloning with the Q-filter).
"""

import dataclasses
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.type_aliases import GymEnv, PyTorchObs

from sb3_dqfd.common.buffers import DQfDReplayBufferSamples
from sb3_dqfd.common.demonstrations import Demonstrations
from sb3_dqfd.common.from_demonstrations import FromDemonstrations, _concatenated, add_l2_gradient, l2_penalty


def n_step_critic_targets(data: DQfDReplayBufferSamples, next_values: th.Tensor, gamma: float) -> tuple[th.Tensor, th.Tensor]:
    """
    The 1-step target ``r + (1 - done) * gamma * V(s')`` and the n-step target
    ``R_n + (1 - done_n) * gamma^k * V(s_{t+k})`` of the same rows (``k <= n``: the steps the window kept).

    The n-step return adds the rewards only: the entropy bonuses of SAC's intermediate steps are left out, as in the
    usual n-step SAC; the bootstrap value carries the entropy term of ``s_{t+k}``.

    :param data: the sampled batch of ``B`` rows
    :param next_values: the bootstrap values ``V`` of the 1-step next observations (rows ``:B``) and of the n-step
        ones (rows ``B:``), shape ``[2B, 1]``, without gradient
    :param gamma: the discount factor
    :return: the 1-step and n-step targets, each ``[B, 1]``
    """
    batch_size = len(data.indices)
    td_target = data.rewards + (1.0 - data.dones) * gamma * next_values[:batch_size]
    n_step_target = data.n_step_returns + (1.0 - data.n_step_dones) * data.n_step_discounts * next_values[batch_size:]
    return td_target, n_step_target


def critic_losses(
    current_q: th.Tensor, td_target: th.Tensor, n_step_target: th.Tensor, weights: th.Tensor
) -> dict[str, th.Tensor]:
    """
    Squared TD losses of every critic against both targets, weighted by the importance weights before the batch mean.

    :param current_q: the critics' ``Q(s, a)`` of the stored actions, shape ``[B, n_critics]`` (with gradient)
    :param td_target: the 1-step targets, shape ``[B, 1]`` (no gradient)
    :param n_step_target: the n-step targets, shape ``[B, 1]`` (no gradient)
    :param weights: importance-sampling weights, shape ``[B, 1]``
    :return: ``"td"`` and ``"n_step"``: the sum over critics of ``mean_i w_i (Q_c(s_i, a_i) - y_i)^2`` (SB3's MSE per
        critic, summed), and ``"td_errors"``: the mean over critics of ``|y_i - Q_c(s_i, a_i)|`` with the 1-step
        target, shape ``[B]``, detached, for the new priorities
    """
    td_loss = (weights * (current_q - td_target).pow(2)).mean(dim=0).sum()
    n_step_loss = (weights * (current_q - n_step_target).pow(2)).mean(dim=0).sum()
    return {
        "td": td_loss,
        "n_step": n_step_loss,
        "td_errors": (td_target - current_q).abs().mean(dim=1).detach(),
    }


def q_filter_bc_loss(
    policy_actions: th.Tensor,
    demo_actions: th.Tensor,
    is_demo: th.Tensor,
    q_demo: th.Tensor,
    q_policy: th.Tensor,
    q_filter: bool,
) -> dict[str, th.Tensor]:
    """
    Behaviour cloning on demonstration rows under the Q-filter (Nair et al. 2018, eq. 3-4):
    ``sum_i ||pi(s_i) - a_i||^2 * 1[Q(s_i, a_i) > Q(s_i, pi(s_i))]`` over the demonstration rows, divided by the
    batch size (agent rows count as zeros, as DQfD's J_E).

    :param policy_actions: the actor's actions ``pi(s)``, scaled to ``[-1, 1]``, shape ``[B, action_dim]`` (with
        gradient)
    :param demo_actions: the stored actions, scaled to ``[-1, 1]``, shape ``[B, action_dim]``
    :param is_demo: 1.0 on demonstration rows, shape ``[B, 1]``
    :param q_demo: the critic's ``Q(s, a)`` of the stored actions, shape ``[B, 1]`` (no gradient)
    :param q_policy: the critic's ``Q(s, pi(s))``, shape ``[B, 1]`` (no gradient)
    :param q_filter: apply the filter; otherwise clone every demonstration row
    :return: ``"bc"``: the loss (scalar); ``"mask"``: 1.0 on the rows it applies to, shape ``[B, 1]``;
        ``"q_filter_fraction"``: the share of demonstration rows it applies to (NaN without demonstration rows)
    """
    mask = is_demo * (q_demo > q_policy).float() if q_filter else is_demo  # [B, 1]
    squared_errors = (policy_actions - demo_actions).pow(2).sum(dim=1, keepdim=True)  # [B, 1]
    return {
        "bc": (mask * squared_errors).sum() / len(mask),
        "mask": mask,
        "q_filter_fraction": mask.sum() / is_demo.sum(),
    }


class ActorCriticFromDemonstrations(FromDemonstrations):
    """
    What SACfD and TD3fD share on top of :class:`~sb3_dqfd.common.from_demonstrations.FromDemonstrations`: a Box
    action space, demonstration actions stored scaled to ``[-1, 1]`` as SB3's SAC and TD3 store the agent's
    (``policy.scale_action``), the critic update on 1-step and n-step targets with new priorities, and the Q-filtered
    behaviour-cloning term. A subclass implements :meth:`_next_values` (the bootstrap value of its targets),
    :meth:`_actor_q` (the critic value its actor maximizes, also the Q-filter's) and :meth:`_optimizers` (the actor's
    and the critic's first, regularized by ``l2_coef``; SAC's entropy coefficient's after them, not regularized).
    """

    #: Loss terms of a gradient step (logged as ``train/<key>``; the critic and actor losses under SB3's names)
    _loss_keys: ClassVar[tuple[str, ...]] = (
        "critic_loss",
        "loss_td",
        "loss_n_step",
        "actor_loss",
        "loss_bc",
        "q_filter_fraction",
        "loss_l2",
    )
    #: Factor of the critic loss (SB3 halves SAC's, not TD3's)
    _critic_loss_scale: ClassVar[float] = 1.0
    critic: ContinuousCritic
    critic_target: ContinuousCritic
    n_step_coef: float
    bc_coef: float
    q_filter: bool
    normalized_rl_coef: float | None
    l2_coef: float

    @classmethod
    def _continuous_env(cls, env: GymEnv | str | None, verbose: int) -> Any:
        """
        :return: ``env`` made (an id becomes an env), after checking that its actions are a bounded Box (a one-line
            ValueError otherwise, before SB3's assert)
        """
        if env is None:
            return None
        env = maybe_make_env(env, verbose)
        if not isinstance(env.action_space, spaces.Box):
            raise ValueError(
                f"{cls.__name__} needs a continuous action space (gymnasium.spaces.Box), got {env.action_space}: "
                "use DQfD for discrete actions"
            )
        if not (np.all(np.isfinite(env.action_space.low)) and np.all(np.isfinite(env.action_space.high))):
            raise ValueError(
                f"{cls.__name__} needs a bounded Box action space (SB3 scales actions to [-1, 1]), got {env.action_space}"
            )
        return env

    def _buffer_action_space(self) -> spaces.Space:
        """SB3's SAC and TD3 store actions scaled to ``[-1, 1]``: the buffer holds (and checks) them in that space."""
        return spaces.Box(-1.0, 1.0, shape=self.action_space.shape, dtype=np.float32)

    def _scaled_demonstrations(self, demonstrations: Demonstrations) -> Demonstrations:
        """
        The demonstrations as the replay buffer stores them: rewards with the env's fixed reward transform and actions
        scaled to ``[-1, 1]`` with ``policy.scale_action``, as SAC and TD3 store the agent's actions.
        """
        scaled = super()._scaled_demonstrations(demonstrations)
        episodes = [
            dataclasses.replace(episode, actions=self.policy.scale_action(np.asarray(episode.actions, dtype=np.float32)))
            for episode in scaled
        ]
        return Demonstrations(episodes, scaled.observation_space, self._buffer_action_space())

    def _next_values(self, next_observations: PyTorchObs) -> th.Tensor:
        """
        :param next_observations: the 1-step then the n-step next observations, ``[2B, *obs_shape]``
        :return: the bootstrap values ``V(s')`` of the targets, shape ``[2B, 1]``, without gradient
        """
        raise NotImplementedError

    def _actor_q(self, observations: PyTorchObs, actions: th.Tensor) -> th.Tensor:
        """
        :return: the critic value the actor maximizes, shape ``[B, 1]``; the Q-filter compares it too
        """
        raise NotImplementedError

    def _optimize(self, optimizer: th.optim.Optimizer, loss: th.Tensor) -> None:
        """Back-propagate ``loss``, add the L2 gradient ``2 * l2_coef * theta`` of the optimizer's parameters, step."""
        optimizer.zero_grad()
        loss.backward()
        add_l2_gradient([parameter for group in optimizer.param_groups for parameter in group["params"]], self.l2_coef)
        optimizer.step()

    def _targets(self, data: DQfDReplayBufferSamples) -> tuple[th.Tensor, th.Tensor]:
        """
        :param data: the sampled batch of ``B`` rows
        :return: the 1-step and the n-step critic targets of the rows, each ``[B, 1]``, without gradient
        """
        with th.no_grad():
            # One pass over both bootstrap observations: s' (1-step) and s_{t+k} (n-step)
            next_values = self._next_values(_concatenated(data.next_observations, data.n_step_next_observations))
            return n_step_critic_targets(data, next_values, self.gamma)

    def _critic_update(self, data: DQfDReplayBufferSamples) -> dict[str, th.Tensor]:
        """
        One critic step on ``critic_loss = J_1 + n_step_coef * J_n`` (both times :attr:`_critic_loss_scale`; L2 added
        to the gradients), then new priorities for the sampled rows from the 1-step TD errors.

        :param data: the sampled batch of ``B`` rows
        :return: the terms of :func:`critic_losses` and ``"loss"``, the critic loss
        """
        td_target, n_step_target = self._targets(data)
        current_q = th.cat(self.critic(data.observations, data.actions), dim=1)  # [B, n_critics]
        losses = critic_losses(current_q, td_target, n_step_target, data.weights)
        losses["td"] = self._critic_loss_scale * losses["td"]
        losses["n_step"] = self._critic_loss_scale * losses["n_step"]
        losses["loss"] = losses["td"] + self.n_step_coef * losses["n_step"]
        self._optimize(self.critic.optimizer, losses["loss"])
        # Indices straight from the buffer: skip update_priorities' index checks
        self.replay_buffer._set_priorities(data.indices, losses["td_errors"].cpu().numpy())
        return losses

    def _bc_terms(self, data: DQfDReplayBufferSamples, policy_actions: th.Tensor, pretraining: bool) -> dict[str, th.Tensor]:
        """
        :param data: the sampled batch
        :param policy_actions: the actor's (deterministic) actions at ``data.observations``, ``[B, action_dim]``
        :param pretraining: a pre-training step: no Q-filter (see :meth:`_actor_loss`)
        :return: the terms of :func:`q_filter_bc_loss`
        """
        with th.no_grad():
            q_demo = self._actor_q(data.observations, data.actions)  # [B, 1]
            q_policy = self._actor_q(data.observations, policy_actions.detach())  # [B, 1]
        q_filter = self.q_filter and not pretraining
        return q_filter_bc_loss(policy_actions, data.actions, data.is_demo, q_demo, q_policy, q_filter)

    def _actor_loss(self, rl_loss: th.Tensor, bc_loss: th.Tensor, q_policy: th.Tensor, pretraining: bool) -> th.Tensor:
        """
        ``rl_loss + bc_coef * bc_loss``; in pre-training the behaviour-cloning term alone, without the Q-filter. With
        ``normalized_rl_coef``, the RL term is ``normalized_rl_coef / mean |Q(s, pi(s))| * rl_loss`` (TD3+BC's
        ``lambda``, the mean detached), so that its weight against ``bc_coef`` does not grow with the returns.

        Pre-training sees demonstrations only: the critic has never been trained on any other action, so its value of
        the actor's action is an extrapolation that the RL term (and the Q-filter's comparison) would exploit. Measured
        on 2 expert episodes of LunarLanderContinuous-v3 (300 updates, bc_coef 1): with the RL term and the filter the
        actor's squared error to the demonstrated actions rose from 0.38 to 0.85 (SACfD) and 1.48 (TD3fD).

        :param rl_loss: the algorithm's own actor loss (scalar)
        :param bc_loss: the behaviour-cloning term (scalar)
        :param q_policy: the critic's value of the actor's actions that ``rl_loss`` maximizes, ``[B, 1]``
        :param pretraining: a pre-training step
        :return: the actor loss
        """
        if pretraining:
            return self.bc_coef * bc_loss
        if self.normalized_rl_coef is not None:
            # The smallest mean |Q| keeps a critic of values near 0 from blowing the RL term up
            rl_loss = rl_loss * (self.normalized_rl_coef / q_policy.detach().abs().mean().clamp(min=1e-6))
        return rl_loss + self.bc_coef * bc_loss

    def _l2_norm(self) -> th.Tensor:
        """J_L2 of the parameters the actor and critic optimizers update (the first two of :meth:`_optimizers`)."""
        with th.no_grad():
            parameters = [
                parameter
                for optimizer in self._optimizers()[:2]
                for group in optimizer.param_groups
                for parameter in group["params"]
            ]
            return l2_penalty(parameters)
