"""Deep Q-learning from Demonstrations (DQfD): the algorithm class and its loss terms."""

import os
import warnings
from collections.abc import Callable
from functools import cache
from typing import Any, ClassVar, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule, TensorDict
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.dqn.dqn import DQN
from torch.nn import functional as F

from sb3_dqfd.common.buffers import DQfDReplayBufferSamples
from sb3_dqfd.common.demonstrations import Demonstrations, _concatenate_observations
from sb3_dqfd.common.from_demonstrations import (
    FromDemonstrations,
    StepStatistics,
    _concatenated,
    add_l2_gradient,
    l2_penalty,
)

# Kept importable from here, where it was defined before the demonstration layer moved to common/from_demonstrations
from sb3_dqfd.common.from_demonstrations import _frame_stacked as _frame_stacked
from sb3_dqfd.dqfd.policies import (
    CnnPolicy,
    DQfDPolicy,
    DuelingQNetwork,
    MlpPolicy,
    MultiInputPolicy,
    StandardizeCombinedExtractor,
    StandardizeExtractor,
)

SelfDQfD = TypeVar("SelfDQfD", bound="DQfD")


#: The paper's Atari settings (Hester et al. 2018, sections 4-5 and appendix), for ``DQfD("CnnPolicy", env, **preset)``.
#: The learning rate, batch size and train frequency are not pinned down by the paper; Nature-DQN values are used.
ATARI_PAPER_HYPERPARAMS: dict[str, Any] = dict(
    learning_rate=1e-4,
    buffer_size=1_000_000,
    learning_starts=0,
    batch_size=32,
    gamma=0.99,
    train_freq=4,
    gradient_steps=1,
    n_steps=10,
    margin=0.8,
    n_step_coef=1.0,
    margin_coef=1.0,
    l2_coef=1e-5,
    pretrain_steps=750_000,
    demo_ratio=None,
    prioritized_replay=True,
    alpha=0.4,
    beta0=0.6,
    beta_annealing_fraction=1.0,
    agent_eps=1e-3,
    demo_eps=1.0,
    target_update_interval=10_000,
    exploration_initial_eps=0.01,
    exploration_final_eps=0.01,
    max_grad_norm=10.0,
    policy_kwargs=dict(dueling=True),
)


def double_q_target(
    rewards: th.Tensor,
    dones: th.Tensor,
    discounts: th.Tensor | float,
    next_q_online: th.Tensor,
    next_q_target: th.Tensor,
) -> th.Tensor:
    """
    Double-DQN target ``r + (1 - done) * discount * Q_target(s', argmax_a Q_online(s', a))`` (van Hasselt et al. 2016).

    The same function gives the 1-step target (``discount = gamma``) and the n-step one (``rewards`` the discounted
    n-step return, ``discount = gamma^k`` with ``k`` the steps actually taken, ``s'`` the observation ``k`` steps later).

    :param rewards: (discounted sum of) rewards, shape ``[B, 1]``
    :param dones: 1.0 where the window ended in a terminal state (no bootstrap), shape ``[B, 1]``
    :param discounts: discount of the bootstrap value, shape ``[B, 1]`` or a scalar
    :param next_q_online: online-network Q-values at ``s'``, shape ``[B, n_actions]``
    :param next_q_target: target-network Q-values at ``s'``, shape ``[B, n_actions]``
    :return: the targets, shape ``[B, 1]``
    """
    next_actions = next_q_online.argmax(dim=1, keepdim=True)  # [B, 1], chosen by the online net
    next_values = th.gather(next_q_target, dim=1, index=next_actions)  # [B, 1], evaluated by the target net
    return rewards + (1.0 - dones) * discounts * next_values


def large_margin_loss(q_values: th.Tensor, expert_actions: th.Tensor, is_demo: th.Tensor, margin: float) -> th.Tensor:
    """
    Supervised large-margin loss J_E of DQfD, per sample: ``max_a [Q(s, a) + l(a_E, a)] - Q(s, a_E)``.

    ``l(a_E, a)`` is ``margin`` for ``a != a_E`` and 0 for the expert's action, so the loss is zero exactly when the
    expert's action beats every other one by at least ``margin``. It is linear (not squared), as in the paper, and
    only applies to demonstration rows: agent rows get 0 (their action is not an expert's).

    :param q_values: online Q-values at ``s``, shape ``[B, n_actions]``
    :param expert_actions: the demonstrated actions, shape ``[B, 1]`` (integer)
    :param is_demo: 1.0 on demonstration rows, 0.0 on agent rows, shape ``[B, 1]``
    :param margin: the margin ``l`` for non-expert actions (>= 0)
    :return: the per-sample loss, shape ``[B]``
    """
    expert_actions = expert_actions.long()
    margins = th.full_like(q_values, margin).scatter(1, expert_actions, 0.0)  # [B, n_actions], 0 at a_E
    max_margin_q = (q_values + margins).max(dim=1).values  # [B]
    expert_q = th.gather(q_values, dim=1, index=expert_actions).squeeze(1)  # [B]
    return (max_margin_q - expert_q) * is_demo.squeeze(1)


def dqfd_losses(
    current_q: th.Tensor,
    actions: th.Tensor,
    td_target: th.Tensor,
    n_step_target: th.Tensor,
    is_demo: th.Tensor,
    weights: th.Tensor,
    margin: float,
) -> dict[str, th.Tensor]:
    """
    Per-sample DQfD loss terms, weighted by the importance weights *before* the batch mean.

    Each returned loss is ``mean_i w_i * term_i`` over the whole batch. For J_E this means the sum over demonstration
    rows divided by the batch size (agent rows count as zeros), so its weight in the total does not depend on the
    fraction of demonstrations in the batch. The TD terms use the Huber loss (``smooth_l1``, as SB3's DQN).

    :param current_q: online Q-values at ``s``, shape ``[B, n_actions]`` (with gradient)
    :param actions: actions taken, shape ``[B, 1]``
    :param td_target: 1-step double-Q target, shape ``[B, 1]`` (no gradient)
    :param n_step_target: n-step double-Q target on the same rows, shape ``[B, 1]`` (no gradient)
    :param is_demo: 1.0 on demonstration rows, shape ``[B, 1]``
    :param weights: importance-sampling weights, shape ``[B, 1]``
    :param margin: the large-margin ``l``
    :return: ``{"td": J_DQ, "n_step": J_n, "margin": J_E}`` (scalars) and ``"td_errors"``: the 1-step TD errors
        ``y - Q(s, a)``, shape ``[B]``, detached, for the new priorities
    """
    q_taken = th.gather(current_q, dim=1, index=actions.long())  # [B, 1]
    weights = weights.reshape(-1)  # [B]
    td_loss = F.smooth_l1_loss(q_taken, td_target, reduction="none").reshape(-1)  # [B]
    n_step_loss = F.smooth_l1_loss(q_taken, n_step_target, reduction="none").reshape(-1)  # [B]
    margin_loss = large_margin_loss(current_q, actions, is_demo, margin)  # [B]
    return {
        "td": (weights * td_loss).mean(),
        "n_step": (weights * n_step_loss).mean(),
        "margin": (weights * margin_loss).mean(),
        "td_errors": (td_target - q_taken).detach().reshape(-1),
    }


def quantile_double_q_target(
    rewards: th.Tensor,
    dones: th.Tensor,
    discounts: th.Tensor | float,
    next_quantiles_online: th.Tensor,
    next_quantiles_target: th.Tensor,
) -> th.Tensor:
    """
    Distributional double-Q target: ``r + (1 - done) * discount * theta_target(s', a*)`` quantile by quantile, with
    ``a* = argmax_a mean_i theta_online_i(s', a)`` chosen by the online network's mean (Q-value) and the quantiles
    ``theta_target(s', a*)`` from the target network (QR-DQN, Dabney et al. 2018, https://arxiv.org/abs/1710.10044,
    with van Hasselt et al.'s double-Q action selection).

    As :func:`double_q_target`, the same function gives the 1-step and the n-step targets (``rewards`` the discounted
    n-step return, ``discounts = gamma^k``, ``dones`` 1.0 where the window ended in a terminal state: no bootstrap).

    :param rewards: (discounted sum of) rewards, shape ``[B, 1]``
    :param dones: 1.0 where the window ended in a terminal state (no bootstrap), shape ``[B, 1]``
    :param discounts: discount of the bootstrap quantiles, shape ``[B, 1]`` or a scalar
    :param next_quantiles_online: online-network quantiles at ``s'``, shape ``[B, N, n_actions]``
    :param next_quantiles_target: target-network quantiles at ``s'``, shape ``[B, N', n_actions]``
    :return: the target quantiles, shape ``[B, N']``
    """
    n_target_quantiles = next_quantiles_target.shape[1]
    next_actions = next_quantiles_online.mean(dim=1).argmax(dim=1)  # [B], chosen by the online net's Q-values
    index = next_actions.view(-1, 1, 1).expand(-1, n_target_quantiles, 1)  # [B, N', 1]
    next_quantiles = next_quantiles_target.gather(dim=2, index=index).squeeze(2)  # [B, N'], from the target net
    return rewards + (1.0 - dones) * discounts * next_quantiles


#: Set this environment variable to ``0`` to compute :func:`quantile_huber_losses` without ``torch.compile``
COMPILE_ENV_VAR = "SB3_DQFD_COMPILE"


def _pairwise_quantile_huber_losses(current_quantiles: th.Tensor, target_quantiles: th.Tensor) -> th.Tensor:
    """:func:`quantile_huber_losses` written out as one ``[B, N, N']`` expression (what ``torch.compile`` fuses)."""
    n_quantiles = current_quantiles.shape[1]
    arange = th.arange(n_quantiles, device=current_quantiles.device, dtype=current_quantiles.dtype)
    fractions = (arange + 0.5) / n_quantiles  # tau_i, [N]
    deltas = target_quantiles.unsqueeze(1) - current_quantiles.unsqueeze(2)  # [B, N, N']: target_j - current_i
    huber = th.where(deltas.abs() <= 1.0, 0.5 * deltas.pow(2), deltas.abs() - 0.5)
    weights = (fractions.view(1, -1, 1) - (deltas.detach() < 0).to(deltas.dtype)).abs()
    return (weights * huber).mean(dim=(1, 2))


@cache
def _compiled_pairwise_quantile_huber_losses() -> Callable[[th.Tensor, th.Tensor], th.Tensor] | None:
    """
    :return: the compiled loss, None where ``torch.compile`` cannot serve (turned off with :data:`COMPILE_ENV_VAR`,
        or it failed: warned once)
    """
    if os.environ.get(COMPILE_ENV_VAR, "1") == "0":
        return None
    compiled = th.compile(_pairwise_quantile_huber_losses, dynamic=False)
    try:
        # Compile (forward and backward) now, on a small input, so that a failure is caught here, not mid-training
        probe = th.zeros(2, 3, requires_grad=True)
        compiled(probe, th.ones(2, 3)).sum().backward()
    except Exception as error:  # no C++ compiler for the CPU backend, no Triton for a GPU, an unsupported Python
        warnings.warn(
            f"DQfD: torch.compile failed ({type(error).__name__}: {' '.join(str(error).split())[:200]}); the quantile "
            f"Huber loss runs without it (slower by 10x or more at 50+ quantiles). Set {COMPILE_ENV_VAR}=0 to skip the attempt"
        )
        return None
    return compiled


def quantile_huber_losses(current_quantiles: th.Tensor, target_quantiles: th.Tensor) -> th.Tensor:
    """
    The quantile Huber loss of each row: sb3-contrib's :func:`~sb3_contrib.common.utils.quantile_huber_loss` (kappa 1,
    fractions ``tau_i = (2 i - 1) / (2 N)``) applied row by row, averaged over the ``N x N'`` pairs of current and
    target quantiles (its ``sum_over_quantiles=False``):
    ``mean_{i, j} |tau_i - 1{delta_ij < 0}| Huber(delta_ij)``, ``delta_ij = target_j - current_i``.

    Computed by ``torch.compile``, which fuses the ``[B, N, N']`` expression into one loop: the step of a
    distributional head costs a fraction of what the same operations cost one tensor at a time (measured 1.5 against
    55 ms for 128 rows of 170 quantiles on one CPU thread, forward and backward). Where ``torch.compile`` fails it runs
    without (warned once); :data:`COMPILE_ENV_VAR` ``=0`` turns it off. Results agree to float rounding.

    :param current_quantiles: current quantiles of the actions taken, shape ``[B, N]``
    :param target_quantiles: target quantiles, shape ``[B, N']`` (no gradient)
    :return: the per-row loss, shape ``[B]``
    """
    compiled = _compiled_pairwise_quantile_huber_losses()
    return (compiled or _pairwise_quantile_huber_losses)(current_quantiles, target_quantiles)


def dqfd_quantile_losses(
    current_quantiles: th.Tensor,
    actions: th.Tensor,
    td_target: th.Tensor,
    n_step_target: th.Tensor,
    is_demo: th.Tensor,
    weights: th.Tensor,
    margin: float,
) -> dict[str, th.Tensor]:
    """
    Per-sample DQfD loss terms on a distributional (quantile) head, weighted by the importance weights *before* the
    batch mean, as :func:`dqfd_losses`: the 1-step and n-step TD terms are the rows' quantile Huber losses
    (:func:`quantile_huber_losses`) against the distributional targets, the large-margin loss J_E is
    :func:`large_margin_loss` on the Q-values, the means of the quantiles.

    The quantile Huber loss is averaged over the quantile pairs (QR-DQN sums over the current quantiles): J_E acts on
    the mean of the ``N`` quantiles, so a sum would weigh the TD terms ``N`` times more against J_E than the scalar
    DQfD does; with the mean, ``n_step_coef`` and ``margin_coef`` keep their balance whatever ``N``.

    :param current_quantiles: online quantiles at ``s``, shape ``[B, N, n_actions]`` (with gradient)
    :param actions: actions taken, shape ``[B, 1]``
    :param td_target: 1-step distributional double-Q target, shape ``[B, N]`` (no gradient)
    :param n_step_target: n-step distributional double-Q target on the same rows, shape ``[B, N]`` (no gradient)
    :param is_demo: 1.0 on demonstration rows, shape ``[B, 1]``
    :param weights: importance-sampling weights, shape ``[B, 1]``
    :param margin: the large-margin ``l``
    :return: ``{"td": J_DQ, "n_step": J_n, "margin": J_E}`` (scalars) and ``"priorities"``: each row's 1-step quantile
        Huber loss, shape ``[B]``, detached, for the new priorities (the distributional counterpart of ``|TD error|``)
    """
    batch_size, n_quantiles, _ = current_quantiles.shape
    index = actions.long().view(-1, 1, 1).expand(-1, n_quantiles, 1)  # [B, N, 1]
    quantiles_taken = current_quantiles.gather(dim=2, index=index).squeeze(2)  # [B, N]
    # Both TD terms in one call: [2B, N] rows against [2B, N] targets
    row_losses = quantile_huber_losses(quantiles_taken.repeat(2, 1), th.cat([td_target, n_step_target]))  # [2B]
    td_loss, n_step_loss = row_losses[:batch_size], row_losses[batch_size:]  # [B] each
    margin_loss = large_margin_loss(current_quantiles.mean(dim=1), actions, is_demo, margin)  # [B]
    weights = weights.reshape(-1)  # [B]
    return {
        "td": (weights * td_loss).mean(),
        "n_step": (weights * n_step_loss).mean(),
        "margin": (weights * margin_loss).mean(),
        "priorities": td_loss.detach(),
    }


#: Loss terms of a gradient step, in the order of :attr:`StepStatistics.loss_terms` (logged as ``train/<key>``)
LOSS_KEYS = ("loss", "loss_td", "loss_n_step", "loss_margin", "loss_l2")


class DQfD(FromDemonstrations, DQN):
    """
    Deep Q-learning from Demonstrations (DQfD).

    Paper: Hester et al., "Deep Q-learning from Demonstrations", AAAI 2018, https://arxiv.org/abs/1704.03732

    It subclasses SB3's :class:`~stable_baselines3.DQN` to keep its epsilon-greedy ``predict``, its target-network
    schedule during interaction (``_on_step``), its policy/optimizer saving and its ``learn`` loop; it replaces the
    replay buffer (a demonstration-aware prioritized n-step buffer), the loss (``train``), and adds pre-training on
    demonstrations before the first interaction.

    Loss on a prioritized batch: ``J = J_DQ + n_step_coef * J_n + margin_coef * J_E + l2_coef * J_L2`` with
    double-Q 1-step and n-step Huber TD losses on the same sampled rows, the large-margin loss on demonstration rows
    only, and ``J_L2 = ||theta||^2``, the squared norm of the online network's parameters (weights and biases). The
    gradient of ``l2_coef * J_L2``, ``2 * l2_coef * theta``, is added to the gradients in one fused op before clipping:
    the same update as back-propagating the term, and as Adam ``weight_decay = 2 * l2_coef`` (Adam's
    ``weight_decay=w`` adds ``w * theta``, the gradient of ``(w / 2) * ||theta||^2``), for any optimizer. The logged
    ``train/loss_l2`` is ``J_L2`` and ``train/loss`` the total ``J``. Each per-sample term is multiplied by its
    importance weight before the batch mean; ``J_E`` is summed over demonstration rows and divided by the batch size.
    New priorities come from the 1-step TD error; the buffer adds ``agent_eps`` or ``demo_eps``. Priorities are also
    updated during pre-training, so the demonstrations enter interaction with informative priorities.

    Defaults are chosen for small discrete tasks (CartPole, MountainCar, LunarLander) from a few expert episodes
    ([256, 256] dueling network, Adam 5e-4, batch 64, one update per step, target copy every 1,000 steps, n = 10,
    5,000 pre-training updates, paper PER and loss weights): act greedily on the pre-trained policy with a constant
    epsilon of 0.01 and no random warm-up. The paper's Atari settings are in :data:`ATARI_PAPER_HYPERPARAMS`.
    Without demonstrations it runs as prioritized dueling double n-step DQN (with a warning). ``learn()`` and
    ``pretrain()`` flush denormal floats to zero in the calling thread (restored afterwards): the L2 term makes the
    weights of dead units subnormal, which made CPU updates ~4x slower (:func:`sb3_dqfd.common.utils.flush_denormal`).

    Two Rainbow parts are options of the Q-network (``policy_kwargs``), alone or together, with every policy
    (``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy``), dueling or not:

    * ``noisy=True`` (``noisy_std_init=0.5``): factorized Gaussian NoisyNet layers in the head (Fortunato et al. 2018,
      https://arxiv.org/abs/1706.10295). New noise for the online and the target network at every gradient step
      (independent draws) and at every acting step; ``predict(deterministic=True)`` acts greedily with the mean
      weights. Epsilon defaults to 0 (see ``exploration_final_eps``). The noise itself is not saved, the means and
      standard deviations are. Measured on MountainCar (README, ``benchmarks/bench_noisy_exploration.py``): after
      pre-training the margin keeps the demonstrated action's Q-value far above the others and the noise almost never
      changes the greedy action at demonstrated states; where the first steps must explore, pass an epsilon schedule
      as well (``exploration_initial_eps``, ``exploration_fraction``).
    * ``n_quantiles=N``: a quantile-regression head (QR-DQN, Dabney et al. 2018, https://arxiv.org/abs/1710.10044),
      ``N`` quantiles per action, per quantile value and advantage with dueling. J_DQ and J_n become quantile Huber
      losses (:func:`dqfd_quantile_losses`) against the 1-step and n-step distributional double-Q targets
      (:func:`quantile_double_q_target`: next action by the mean of the online quantiles, quantiles of the target
      network, ``gamma^k`` and no bootstrap at termination); J_E is the large-margin loss on the Q-values, the means
      of the quantiles, and the new priorities are each row's 1-step quantile Huber loss. Acting uses the means.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, ...)
    :param env: The environment to learn from (if registered in Gym, can be str). Its actions must be ``Discrete``
        starting at 0. A ``RewardScaling`` wrapper must use a fixed transform (running normalization is refused: the
        rewards stored in the replay buffer would drift away from the agent's)
    :param demonstrations: expert demonstrations, anything :func:`sb3_dqfd.load_demonstrations` accepts
        (a :class:`~sb3_dqfd.Demonstrations`, a file path, ``"expert:N"`` for N episodes of the env's built-in expert,
        ...); validated against ``env`` here. They are kept permanently in the replay buffer, saved with the model,
        and put back into the replay buffer by :meth:`load`. Their rewards get the env's fixed ``RewardScaling``
        transform, again whenever :meth:`set_env` brings another one.
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param buffer_size: size of the replay buffer, demonstrations included
    :param learning_starts: how many steps of the model to collect transitions for before learning starts
        (0 by default: the pre-trained policy acts from the first step)
    :param batch_size: Minibatch size for each gradient update
    :param tau: the soft update coefficient ("Polyak update", between 0 and 1) default 1 for hard update
    :param gamma: the discount factor
    :param train_freq: Update the model every ``train_freq`` steps. Alternatively pass a tuple of frequency and unit
        like ``(5, "step")`` or ``(2, "episode")``.
    :param gradient_steps: How many gradient steps to do after each rollout (see ``train_freq``).
        Set to ``-1`` means to do as many gradient steps as steps done in the environment during the rollout.
    :param replay_buffer_class: Replay buffer class, ``DQfDReplayBuffer`` or a subclass (``None``: a
        ``CompactDQfDReplayBuffer`` for image observations, stacking as the env's ``VecFrameStack`` does, each frame
        stored once; a ``DQfDReplayBuffer`` otherwise)
    :param replay_buffer_kwargs: Extra keyword arguments for the replay buffer
    :param optimize_memory_usage: not supported (must be False; SB3's memory-efficient variant drops the stored next
        observations, which the n-step windows and timeouts of :class:`~sb3_dqfd.common.buffers.DQfDReplayBuffer` need)
    :param n_steps: length ``n`` of the n-step returns of J_n. SB3's ``OffPolicyAlgorithm`` uses the same name to
        build its ``NStepReplayBuffer``; here it configures the DQfD buffer, which yields 1-step and n-step fields
        of the same rows (SB3's buffer would replace the 1-step transition)
    :param margin: the large-margin ``l(a_E, a)`` for non-expert actions (paper: 0.8)
    :param n_step_coef: weight lambda_1 of the n-step loss J_n
    :param margin_coef: weight lambda_2 of the large-margin loss J_E
    :param l2_coef: weight lambda_3 of the squared L2 norm J_L2 of the online network's parameters
    :param pretrain_steps: gradient steps on demonstrations only at the start of the first ``learn()``
    :param demo_ratio: fixed share of demonstrations in each batch (as Ape-X DQfD / R2D3), or ``None`` to let the
        priorities (with the ``demo_eps`` bonus) set the mix as in the paper
    :param prioritized_replay: sample proportionally to priorities (otherwise uniformly, weights 1)
    :param alpha: priority exponent of prioritized replay (paper: 0.4)
    :param beta0: initial importance-sampling exponent, annealed linearly to 1 (paper: 0.6)
    :param beta_annealing_fraction: fraction of each ``learn()`` budget over which beta reaches 1
    :param agent_eps: priority bonus of agent transitions (paper: 0.001)
    :param demo_eps: priority bonus of demonstration transitions (paper: 1.0)
    :param normalize_observations: standardize (Box) observations inside the Q-networks with the mean and standard
        deviation of the demonstrations' observations, fixed before pre-training and saved with the policy
        (:class:`~sb3_dqfd.dqfd.policies.StandardizeExtractor`). Helps where features live on very different
        scales (MountainCar's velocity is 20x smaller than its position). Needs demonstrations; not with ``VecNormalize``
    :param target_update_interval: update the target network every ``target_update_interval`` environment steps
        during ``learn()``, and every ``target_update_interval`` gradient steps during pre-training
    :param exploration_fraction: fraction of entire training period over which the exploration rate is reduced
    :param exploration_initial_eps: initial value of random action probability. ``None``: equal to
        ``exploration_final_eps`` with demonstrations (keep the pre-trained policy) or a noisy network, 1.0 otherwise
    :param exploration_final_eps: final value of random action probability. ``None``: 0.01 (paper), 0 with a noisy
        network (``policy_kwargs=dict(noisy=True)``), which explores through its noise; values you give are kept
    :param max_grad_norm: The maximum value for the gradient clipping
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation (``dueling=False`` for a plain
        Q-network; ``noisy=True`` (and ``noisy_std_init``) for NoisyNet heads, ``n_quantiles=N`` for a distributional
        head: see above and :class:`~sb3_dqfd.dqfd.policies.DQfDPolicy`)
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
    _loss_keys: ClassVar[tuple[str, ...]] = LOSS_KEYS
    policy: DQfDPolicy
    q_net: DuelingQNetwork
    q_net_target: DuelingQNetwork

    def __init__(
        self,
        policy: str | type[DQfDPolicy],
        env: GymEnv | str,
        demonstrations: Any = None,
        learning_rate: float | Schedule = 5e-4,
        buffer_size: int = 100_000,
        learning_starts: int = 0,
        batch_size: int = 64,
        tau: float = 1.0,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 10,
        margin: float = 0.8,
        n_step_coef: float = 1.0,
        margin_coef: float = 1.0,
        l2_coef: float = 1e-5,
        pretrain_steps: int = 5_000,
        demo_ratio: float | None = None,
        prioritized_replay: bool = True,
        alpha: float = 0.4,
        beta0: float = 0.6,
        beta_annealing_fraction: float = 1.0,
        agent_eps: float = 1e-3,
        demo_eps: float = 1.0,
        normalize_observations: bool = False,
        target_update_interval: int = 1_000,
        exploration_fraction: float = 0.1,
        exploration_initial_eps: float | None = None,
        exploration_final_eps: float | None = None,
        max_grad_norm: float = 10.0,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        self._check_arguments(n_steps, margin, n_step_coef, margin_coef, l2_coef, pretrain_steps, demo_ratio, alpha, beta0)
        self._check_replay_buffer_class(replay_buffer_class)
        if env is not None:
            # Checked here (not by SB3's assert) so a continuous task gets a ValueError that names the space
            env = maybe_make_env(env, verbose)
            if not isinstance(env.action_space, spaces.Discrete):
                raise ValueError(
                    f"DQfD needs a discrete action space (gymnasium.spaces.Discrete), got {env.action_space}: "
                    "the large-margin loss and the Q-network take a max over a finite set of actions"
                )
            if env.action_space.start != 0:
                # SB3's Q-networks act with indices 0..n-1 and would send them to the env unshifted
                raise ValueError(
                    f"DQfD needs Discrete actions that start at 0, got {env.action_space} (start="
                    f"{env.action_space.start}): SB3's Q-networks choose indices 0..n-1 and pass them to the env as "
                    "they are. Wrap the env in a gymnasium.ActionWrapper whose action(a) returns a + start, and record "
                    "or shift the demonstrations' actions to 0..n-1"
                )
        has_demonstrations = demonstrations is not None
        if normalize_observations:
            dict_observations = env is not None and isinstance(env.observation_space, spaces.Dict)
            policy_kwargs = self._standardizing_policy_kwargs(policy_kwargs, has_demonstrations, dict_observations)
        # A noisy network explores through its parameter noise: no epsilon-greedy on top unless asked for
        noisy = bool((policy_kwargs or {}).get("noisy", False))
        if exploration_final_eps is None:
            exploration_final_eps = 0.0 if noisy else 0.01
        if exploration_initial_eps is None:
            exploration_initial_eps = exploration_final_eps if has_demonstrations or noisy else 1.0

        super().__init__(
            policy,
            env,  # type: ignore[arg-type]
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            target_update_interval=target_update_interval,
            exploration_fraction=exploration_fraction,
            exploration_initial_eps=exploration_initial_eps,
            exploration_final_eps=exploration_final_eps,
            max_grad_norm=max_grad_norm,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        self.margin = margin
        self.n_step_coef = n_step_coef
        self.margin_coef = margin_coef
        self.l2_coef = l2_coef
        self.pretrain_steps = pretrain_steps
        self.demo_ratio = demo_ratio
        self.prioritized_replay = prioritized_replay
        self.alpha = alpha
        self.beta0 = beta0
        self.beta_annealing_fraction = beta_annealing_fraction
        self.agent_eps = agent_eps
        self.demo_eps = demo_eps
        self.normalize_observations = normalize_observations
        if normalize_observations and self._vec_normalize_env is not None:
            raise ValueError(
                "DQfD: normalize_observations=True and a VecNormalize env would normalize observations twice: "
                "use one of them (VecNormalize(..., norm_obs=False) to keep its reward normalization)"
            )
        self._init_demonstrations(
            demonstrations, warn_without="prioritized dueling double n-step DQN" if _init_setup_model else None
        )
        if _init_setup_model:
            self._setup_model()

    @classmethod
    def _check_arguments(
        cls,
        n_steps: int,
        margin: float,
        n_step_coef: float,
        margin_coef: float,
        l2_coef: float,
        pretrain_steps: int,
        demo_ratio: float | None,
        alpha: float,
        beta0: float,
    ) -> None:
        """Raise a ValueError for a DQfD hyperparameter out of its range (see the class docstring)."""
        non_negative = dict(
            margin=margin,
            n_step_coef=n_step_coef,
            margin_coef=margin_coef,
            l2_coef=l2_coef,
            pretrain_steps=pretrain_steps,
            alpha=alpha,
        )
        cls._check_demonstration_arguments(n_steps, non_negative, demo_ratio, beta0)

    @staticmethod
    def _standardizing_policy_kwargs(
        policy_kwargs: dict[str, Any] | None, has_demonstrations: bool, dict_observations: bool
    ) -> dict[str, Any]:
        """
        ``policy_kwargs`` with :class:`StandardizeExtractor` as features extractor (:class:`StandardizeCombinedExtractor`
        for Dict observations), for ``normalize_observations``.
        """
        if not has_demonstrations:
            raise ValueError(
                "DQfD: normalize_observations=True standardizes observations with the demonstrations' statistics: "
                "pass demonstrations=..."
            )
        standardizer = StandardizeCombinedExtractor if dict_observations else StandardizeExtractor
        policy_kwargs = dict(policy_kwargs or {})
        extractor = policy_kwargs.setdefault("features_extractor_class", standardizer)
        if not (isinstance(extractor, type) and issubclass(extractor, standardizer)):
            raise ValueError(
                f"DQfD: normalize_observations=True uses {standardizer.__name__} as features extractor, but policy_kwargs "
                f"asks for {getattr(extractor, '__name__', extractor)}: drop one of the two"
            )
        return policy_kwargs

    def _set_observation_statistics(self, demonstrations: Demonstrations) -> None:
        """Standardize the Q-networks' inputs with the demonstrations' observations (as the networks see them)."""
        observations = _concatenate_observations([episode.observations for episode in demonstrations])
        tensors: th.Tensor | TensorDict = (
            {key: th.as_tensor(value) for key, value in observations.items()}
            if isinstance(observations, dict)
            else th.as_tensor(observations)
        )
        for q_net in (self.q_net, self.q_net_target):
            # The extractor receives preprocessed observations (e.g. images divided by 255): measure those
            preprocessed = preprocess_obs(tensors, self.observation_space, normalize_images=q_net.normalize_images)
            extractor = q_net.features_extractor
            if isinstance(extractor, StandardizeCombinedExtractor) and isinstance(preprocessed, dict):
                extractor.set_statistics({key: value.cpu().numpy() for key, value in preprocessed.items()})
            elif isinstance(extractor, StandardizeExtractor) and isinstance(preprocessed, th.Tensor):
                extractor.set_statistics(preprocessed.cpu().numpy())

    def _setup_model(self) -> None:
        super()._setup_model()
        # After load() there are no demonstrations here yet: the saved state_dict brings the statistics back
        if self.demonstrations is not None and self.normalize_observations:
            self._set_observation_statistics(self.demonstrations)

    def _create_aliases(self) -> None:
        super()._create_aliases()
        # Listed once: walking the module tree on every gradient step is a measurable share of a small network's step
        self._trainable_parameters: list[th.Tensor] = [
            parameter for parameter in self.q_net.parameters() if parameter.requires_grad
        ]

    def _excluded_save_params(self) -> list[str]:
        # The list of the Q-network's tensors would be pickled into the zip's data (a second copy of the weights, and
        # unpickled on load): _create_aliases rebuilds it from the loaded network
        return [*super()._excluded_save_params(), "_trainable_parameters"]

    def _optimizers(self) -> list[th.optim.Optimizer]:
        return [self.policy.optimizer]

    def _after_pretrain_update(self) -> None:
        # Pre-training copies the target every target_update_interval gradient steps (interaction: environment steps)
        if self._n_pretrain_updates % self.target_update_interval == 0:
            polyak_update(self.q_net.parameters(), self.q_net_target.parameters(), self.tau)
            polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

    def _after_pretraining(self) -> None:
        # Act with the interaction epsilon from now on (SB3 DQN sets it only after the first env step)
        self.exploration_rate = self.exploration_schedule(self._current_progress_remaining)

    def _gradient_step(self, batch_size: int, demo_only: bool) -> StepStatistics:
        """
        One DQfD update on a prioritized batch, then new priorities for the sampled rows.

        A noisy network draws new noise (online and target independently) before the update. The step's only
        host-device transfer is the priorities (TD errors, or the distributional head's per-row losses): the loss terms
        stay tensors until :meth:`_record` (no ``.item()`` per step, which would wait for a GPU to finish the step).

        :param batch_size: number of transitions sampled
        :param demo_only: sample demonstrations only (pre-training)
        :return: the step's statistics, for :meth:`_record`
        """
        if self.q_net.noisy:
            # New noise for each network at every update, drawn independently (Fortunato et al. 2018, Algorithm 1)
            self.q_net.reset_noise()
            self.q_net_target.reset_noise()
        data: DQfDReplayBufferSamples = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env, demo_only=demo_only)
        td_target, n_step_target = self._targets(data)
        losses = self._losses(data, td_target, n_step_target)
        self._optimize(losses["loss"])
        # Indices straight from the buffer: skip update_priorities' index checks
        self.replay_buffer._set_priorities(data.indices, losses["priorities"].cpu().numpy())
        return self._step_statistics(data, losses)

    def _targets(self, data: DQfDReplayBufferSamples) -> tuple[th.Tensor, th.Tensor]:
        """
        :param data: the sampled batch of B rows
        :return: the 1-step and the n-step double-Q targets of the rows, each ``[B, 1]`` (:func:`double_q_target`), or
            with a distributional head their target quantiles, each ``[B, N]`` (:func:`quantile_double_q_target`);
            without gradient
        """
        batch_size = len(data.indices)
        target: Callable[[th.Tensor, th.Tensor, th.Tensor | float, th.Tensor, th.Tensor], th.Tensor]
        with th.no_grad():
            # One forward pass per network over both bootstrap observations: s' (1-step) and s_{t+k} (n-step)
            next_obs = _concatenated(data.next_observations, data.n_step_next_observations)  # [2B, *obs_shape]
            if self.q_net.n_quantiles is None:
                target = double_q_target
                next_online = self.q_net(next_obs)  # [2B, n_actions]
                next_target = self.q_net_target(next_obs)  # [2B, n_actions]
            else:
                target = quantile_double_q_target
                next_online = self.q_net.quantiles(next_obs)  # [2B, N, n_actions]
                next_target = self.q_net_target.quantiles(next_obs)  # [2B, N, n_actions]
            td_target = target(data.rewards, data.dones, self.gamma, next_online[:batch_size], next_target[:batch_size])
            n_step_target = target(
                data.n_step_returns,
                data.n_step_dones,
                data.n_step_discounts,
                next_online[batch_size:],
                next_target[batch_size:],
            )
        return td_target, n_step_target

    def _losses(self, data: DQfDReplayBufferSamples, td_target: th.Tensor, n_step_target: th.Tensor) -> dict[str, th.Tensor]:
        """
        :return: the terms of :func:`dqfd_losses` (:func:`dqfd_quantile_losses` with a distributional head),
            ``"loss"`` = J_DQ + lambda_1 J_n + lambda_2 J_E (with gradient), ``"priorities"`` (the rows' new
            priorities before the bonus, ``[B]``) and ``"l2"`` = J_L2 (for the logs)
        """
        if self.q_net.n_quantiles is None:
            current_q = self.q_net(data.observations)  # [B, n_actions]
            losses = dqfd_losses(current_q, data.actions, td_target, n_step_target, data.is_demo, data.weights, self.margin)
            losses["priorities"] = losses["td_errors"]
        else:
            current_quantiles = self.q_net.quantiles(data.observations)  # [B, N, n_actions]
            losses = dqfd_quantile_losses(
                current_quantiles, data.actions, td_target, n_step_target, data.is_demo, data.weights, self.margin
            )
        # J = J_DQ + lambda_1 J_n + lambda_2 J_E + lambda_3 J_L2. The gradient of lambda_3 J_L2, 2 lambda_3 theta, is
        # added to the gradients in one fused op by _optimize: the same update as back-propagating the term (and as
        # Adam weight_decay = 2 lambda_3), without a graph over every parameter. Its value is computed for logging only.
        losses["loss"] = losses["td"] + self.n_step_coef * losses["n_step"] + self.margin_coef * losses["margin"]
        with th.no_grad():
            losses["l2"] = l2_penalty(self._trainable_parameters)
        return losses

    def _optimize(self, loss: th.Tensor) -> None:
        """Back-propagate ``loss``, add the L2 gradient ``2 lambda_3 theta``, clip and take the optimizer step."""
        self.policy.optimizer.zero_grad()
        loss.backward()
        with_grad = add_l2_gradient(self._trainable_parameters, self.l2_coef)
        # The target network has no gradients: clipping the online parameters is SB3's clip over policy.parameters()
        th.nn.utils.clip_grad_norm_(with_grad, self.max_grad_norm, foreach=True)
        self.policy.optimizer.step()

    def _step_statistics(self, data: DQfDReplayBufferSamples, losses: dict[str, th.Tensor]) -> StepStatistics:
        """
        :return: the loss terms as one detached tensor (in the order of :data:`LOSS_KEYS`) and the batch's statistics
            computed on the host from the sampled indices (no transfer from the device)
        """
        loss_terms = th.stack(
            [losses["loss"] + self.l2_coef * losses["l2"], losses["td"], losses["n_step"], losses["margin"], losses["l2"]]
        ).detach()
        return StepStatistics(loss_terms, self._batch_statistics(data.indices))

    def learn(
        self: SelfDQfD,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "DQfD",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfDQfD:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
