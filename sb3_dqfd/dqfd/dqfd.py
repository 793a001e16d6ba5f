"""Deep Q-learning from Demonstrations (DQfD): the algorithm class and its loss terms."""

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
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space, preprocess_obs
from stable_baselines3.common.save_util import load_from_pkl
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule, TensorDict
from stable_baselines3.common.utils import configure_logger, polyak_update, update_learning_rate
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecFrameStack, VecTransposeImage
from stable_baselines3.dqn.dqn import DQN
from torch.nn import functional as F
from tqdm.auto import tqdm

from sb3_dqfd.common.buffers import CompactDQfDReplayBuffer, DQfDReplayBuffer, DQfDReplayBufferSamples
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
from sb3_dqfd.dqfd.policies import (
    CnnPolicy,
    DQfDPolicy,
    MlpPolicy,
    MultiInputPolicy,
    StandardizeCombinedExtractor,
    StandardizeExtractor,
)
from sb3_dqfd.wrappers.reward_scaling import demonstration_reward_transform

SelfDQfD = TypeVar("SelfDQfD", bound="DQfD")

# Names of the tensors that carry the demonstrations inside a saved model (``pytorch_variables.pth``, no pickle)
_DEMO_ARRAY_NAMES = ("observations", "actions", "rewards", "lengths", "terminated", "truncated")

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


def l2_penalty(parameters: list[th.Tensor]) -> th.Tensor:
    """
    J_L2: the squared L2 norm ``sum_i theta_i^2`` of the given parameters (not the norm: its gradient is ``2 theta``).

    :param parameters: the parameters to regularize
    :return: a scalar tensor
    """
    # One fused norm per parameter list instead of a pow + sum per tensor
    return th.stack(th._foreach_norm(parameters)).pow(2).sum()


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


#: Loss terms of a gradient step, in the order of :attr:`StepStatistics.loss_terms` (logged as ``train/<key>``)
LOSS_KEYS = ("loss", "loss_td", "loss_n_step", "loss_margin", "loss_l2")


class StepStatistics(NamedTuple):
    """What one DQfD gradient step reports for the logs."""

    loss_terms: th.Tensor  # [len(LOSS_KEYS)], detached, on the model's device until the logs are written
    batch: dict[str, float]  # demo_fraction, priority_demo, priority_agent: computed on the host


class DQfD(DQN):
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
        ``exploration_final_eps`` with demonstrations (keep the pre-trained policy), 1.0 without
    :param exploration_final_eps: final value of random action probability (paper: 0.01)
    :param max_grad_norm: The maximum value for the gradient clipping
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation (``dueling=False`` for a plain
        Q-network)
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
    policy: DQfDPolicy
    replay_buffer: DQfDReplayBuffer  # type: ignore[assignment]
    demonstrations: Demonstrations | None
    demonstration_arrays: SimpleNamespace

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
        exploration_final_eps: float = 0.01,
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
        if replay_buffer_class is not None and not issubclass(replay_buffer_class, DQfDReplayBuffer):
            raise ValueError(
                f"DQfD needs a DQfDReplayBuffer (or a subclass) as replay_buffer_class, got {replay_buffer_class.__name__}"
            )
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
        if exploration_initial_eps is None:
            exploration_initial_eps = exploration_final_eps if has_demonstrations else 1.0

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
        # Pre-training runs once per model: the flag is saved, so a loaded model does not pre-train again
        self.pretrained = False
        self._n_pretrain_updates = 0
        self._logger_before_learn = False

        self.demonstrations = None
        if has_demonstrations:
            # expert:N records with the model's seed, so seeds of a benchmark learn from different episodes
            self.demonstrations = self._load_demonstrations(demonstrations)
        elif _init_setup_model:
            warnings.warn(
                "DQfD got no demonstrations: it runs as prioritized dueling double n-step DQN. "
                "Pass demonstrations=... (see sb3_dqfd.record_demonstrations / load_demonstrations) to learn from an expert."
            )

        if _init_setup_model:
            self._setup_model()

    @staticmethod
    def _check_arguments(
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
        if n_steps < 1:
            raise ValueError(f"DQfD: n_steps must be >= 1 (the n of the n-step return), got {n_steps}")
        for name, value in (
            ("margin", margin),
            ("n_step_coef", n_step_coef),
            ("margin_coef", margin_coef),
            ("l2_coef", l2_coef),
            ("pretrain_steps", pretrain_steps),
            ("alpha", alpha),
        ):
            if value < 0:
                raise ValueError(f"DQfD: {name} must be >= 0, got {value}")
        if demo_ratio is not None and not 0.0 <= demo_ratio <= 1.0:
            raise ValueError(f"DQfD: demo_ratio must be in [0, 1] or None (mix set by priorities), got {demo_ratio}")
        if not 0.0 <= beta0 <= 1.0:
            raise ValueError(f"DQfD: beta0 must be in [0, 1], got {beta0}")

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
        n_actions = int(self.action_space.n)  # type: ignore[attr-defined]
        for index, episode in enumerate(demonstrations):
            actions = np.asarray(episode.actions)
            if actions.size != len(episode) or np.any(actions < 0) or np.any(actions >= n_actions):
                raise ValueError(
                    f"Demonstration episode {index} has actions outside the environment's action space {self.action_space} "
                    f"(expected {len(episode)} integers in [0, {n_actions}))"
                )
        # The demonstrations stay permanently; the agent ring needs at least one n-step window per env
        min_size = demonstrations.n_transitions + self.n_envs * (self.n_steps + 1)
        if self.buffer_size < min_size:
            raise ValueError(
                f"buffer_size={self.buffer_size} is too small for {demonstrations.n_transitions} demonstration transitions "
                f"(kept permanently): it must be at least {min_size} (demonstrations + n_envs * (n_steps + 1)), and "
                "much larger to hold the agent's own data"
            )

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
            # After load() there are no demonstrations here yet: the saved state_dict brings the statistics back
            if self.normalize_observations:
                self._set_observation_statistics(self.demonstrations)

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

    def _create_aliases(self) -> None:
        super()._create_aliases()
        # Listed once: walking the module tree on every gradient step is a measurable share of a small network's step
        self._trainable_parameters: list[th.Tensor] = [
            parameter for parameter in self.q_net.parameters() if parameter.requires_grad
        ]

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
                    f"DQfD.load: the demonstrations given ({len(demonstrations)} episodes, {demonstrations.n_transitions} "
                    f"transitions) differ from the ones saved in {where} ({len(saved)} episodes, {saved.n_transitions} "
                    "transitions): load without demonstrations= to continue with the saved ones, or start a new model "
                    "to learn from other demonstrations"
                )
            saved = demonstrations
        self.demonstrations = saved
        self.demonstration_arrays = self._demonstrations_to_arrays(saved)
        self._ensure_demonstrations_in_buffer()

    def _load_demonstrations(self, source: Any) -> Demonstrations:
        """
        :func:`load_demonstrations` against the env (or the model's spaces without one), then the DQfD checks.

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
        cls: type[SelfDQfD],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfDQfD:
        """
        Load a DQfD model (SB3's ``load``) and put its saved demonstrations back into the replay buffer at once.

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
                f"DQfD.set_env: the new env scales rewards differently; the demonstration rewards were rescaled, but the "
                f"{self.replay_buffer.n_agent_transitions} agent transitions in the replay buffer keep the old scale"
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
                "DQfD needs a DQfDReplayBuffer saved by DQfD.save_replay_buffer (it keeps the demonstrations, the "
                "n-step windows and the priorities)"
            )
        expected = {
            "observation_space": self.observation_space,
            "action_space": self.action_space,
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

    def _gradient_step(self, batch_size: int, demo_only: bool) -> StepStatistics:
        """
        One DQfD update on a prioritized batch, then new priorities for the sampled rows.

        The step's only host-device transfer is the TD errors for the priorities: the loss terms stay tensors until
        :meth:`_record` (no ``.item()`` per step, which would wait for a GPU to finish the step).

        :param batch_size: number of transitions sampled
        :param demo_only: sample demonstrations only (pre-training)
        :return: the step's statistics, for :meth:`_record`
        """
        data: DQfDReplayBufferSamples = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env, demo_only=demo_only)
        td_target, n_step_target = self._targets(data)
        losses = self._losses(data, td_target, n_step_target)
        self._optimize(losses["loss"])
        # Indices straight from the buffer: skip update_priorities' index checks
        self.replay_buffer._set_priorities(data.indices, losses["td_errors"].cpu().numpy())
        return self._step_statistics(data, losses)

    def _targets(self, data: DQfDReplayBufferSamples) -> tuple[th.Tensor, th.Tensor]:
        """
        :param data: the sampled batch of B rows
        :return: the 1-step and the n-step double-Q targets of the rows, each ``[B, 1]``, without gradient
        """
        batch_size = len(data.indices)
        with th.no_grad():
            # One forward pass per network over both bootstrap observations: s' (1-step) and s_{t+k} (n-step)
            next_obs = _concatenated(data.next_observations, data.n_step_next_observations)  # [2B, *obs_shape]
            next_q_online = self.q_net(next_obs)  # [2B, n_actions]
            next_q_target = self.q_net_target(next_obs)  # [2B, n_actions]
            td_target = double_q_target(
                data.rewards, data.dones, self.gamma, next_q_online[:batch_size], next_q_target[:batch_size]
            )
            n_step_target = double_q_target(
                data.n_step_returns,
                data.n_step_dones,
                data.n_step_discounts,
                next_q_online[batch_size:],
                next_q_target[batch_size:],
            )
        return td_target, n_step_target

    def _losses(self, data: DQfDReplayBufferSamples, td_target: th.Tensor, n_step_target: th.Tensor) -> dict[str, th.Tensor]:
        """
        :return: the terms of :func:`dqfd_losses`, ``"loss"`` = J_DQ + lambda_1 J_n + lambda_2 J_E (with gradient) and
            ``"l2"`` = J_L2 (for the logs)
        """
        current_q = self.q_net(data.observations)  # [B, n_actions]
        losses = dqfd_losses(current_q, data.actions, td_target, n_step_target, data.is_demo, data.weights, self.margin)
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
        parameters = self._trainable_parameters
        with_grad: list[th.Tensor] = [parameter for parameter in parameters if parameter.grad is not None]
        grads = [parameter.grad for parameter in with_grad if parameter.grad is not None]
        if self.l2_coef > 0:
            th._foreach_add_(grads, with_grad, alpha=2.0 * self.l2_coef)
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
        is_demo = data.indices < self.replay_buffer.n_demonstrations  # [B], what the buffer's is_demo field says
        batch = {"demo_fraction": float(is_demo.mean())}
        if self.prioritized_replay:
            # Mean new priority of the sampled demonstration / agent rows (a cheap running view of each region)
            priorities = self.replay_buffer.priorities(data.indices)
            batch["priority_demo"] = float(priorities[is_demo].mean()) if is_demo.any() else np.nan
            batch["priority_agent"] = float(priorities[~is_demo].mean()) if (~is_demo).any() else np.nan
        return StepStatistics(loss_terms, batch)

    def _statistics(self, steps: list[StepStatistics]) -> list[dict[str, float]]:
        """
        :param steps: the statistics of gradient steps
        :return: each step's statistics as floats, the loss terms of all steps brought to the host in one transfer
        """
        loss_terms = th.stack([step.loss_terms for step in steps]).cpu().numpy()  # [n_steps, len(LOSS_KEYS)]
        return [
            dict(zip(LOSS_KEYS, map(float, row), strict=True)) | step.batch
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
        self._update_learning_rate(self.policy.optimizer)
        self._update_beta()
        stats = [self._gradient_step(batch_size, demo_only=False) for _ in range(gradient_steps)]
        self._n_updates += gradient_steps
        self._record(stats)

    def pretrain(self, n_steps: int, progress_bar: bool = False, log_interval: int = 1_000) -> None:
        """
        Pre-train on demonstrations only, without touching the environment.

        The target network is copied every ``target_update_interval`` gradient steps inside the loop, and the sampled
        demonstrations' priorities are updated as during interaction. Called by the first :meth:`learn` with
        ``pretrain_steps``; calling it yourself marks the model as pre-trained. Like :meth:`learn`, it runs with
        denormal floats flushed to zero in the calling thread (see :func:`sb3_dqfd.common.utils.flush_denormal`).

        :param n_steps: number of gradient steps
        :param progress_bar: show a progress bar (tqdm)
        :param log_interval: dump the logs every ``log_interval`` gradient steps, under ``pretrain/`` (the keys of
            ``train/``) with the number of pre-training updates as the step
        """
        if n_steps < 0:
            raise ValueError(f"pretrain: n_steps must be >= 0, got {n_steps}")
        self._ensure_demonstrations_in_buffer()
        if self.replay_buffer.n_demonstrations == 0:
            raise ValueError("pretrain needs demonstrations: pass demonstrations=... to DQfD")
        self._ensure_logger()
        self.policy.set_training_mode(True)
        # SB3's _update_learning_rate would log it under train/: pre-training logs go to pretrain/
        learning_rate = self.lr_schedule(self._current_progress_remaining)
        update_learning_rate(self.policy.optimizer, learning_rate)
        stats: list[StepStatistics] = []
        start_time = time.perf_counter()
        with flush_denormal():
            for step in tqdm(range(1, n_steps + 1), desc="DQfD pre-training", disable=not progress_bar):
                stats.append(self._gradient_step(self.batch_size, demo_only=True))
                self._n_updates += 1
                self._n_pretrain_updates += 1
                if self._n_pretrain_updates % self.target_update_interval == 0:
                    polyak_update(self.q_net.parameters(), self.q_net_target.parameters(), self.tau)
                    polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
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
        # Act with the interaction epsilon from now on (SB3 DQN sets it only after the first env step)
        self.exploration_rate = self.exploration_schedule(self._current_progress_remaining)

    def _ensure_logger(self) -> None:
        """
        Configure SB3's default logger when :meth:`pretrain` or :meth:`train` run before any ``learn()`` (e.g. right
        after :meth:`load`); the first ``learn()`` then keeps writing to the same run (one TensorBoard folder).
        """
        if not hasattr(self, "_logger"):
            self._logger = configure_logger(self.verbose, self.tensorboard_log, "DQfD", True)
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

    def learn(
        self: SelfDQfD,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "DQfD",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfDQfD:
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

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "demonstrations", "_demonstration_reward_transform", "_logger_before_learn"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, variables = super()._get_torch_save_params()
        names = [*_DEMO_ARRAY_NAMES, *(f"observations_{index}" for index in range(len(self._observation_keys())))]
        return state_dicts, [*variables, *(f"demonstration_arrays.{name}" for name in names)]
