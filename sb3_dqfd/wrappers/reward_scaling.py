"""Reward scaling (fixed scale, clipping, signed log, running return normalization) and the glue that keeps its
statistics with an SB3 model and applies the same transform to demonstration rewards."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.core import ActType, ObsType
from gymnasium.wrappers.utils import RunningMeanStd
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, unwrap_vec_normalize

__all__ = [
    "FixedRewardTransform",
    "RewardScaling",
    "RewardScalingCallback",
    "demonstration_reward_transform",
    "restore_reward_scaling",
    "store_reward_scaling",
]

# Name of the model attribute that carries the statistics through ``model.save()`` / ``Model.load()``
MODEL_ATTRIBUTE = "reward_scaling_state"
# Configuration keys that must match between a saved state and the wrapper it is loaded into
_CONFIG_KEYS = ("scale", "clip", "signed_log", "normalize", "gamma", "epsilon")


@dataclass(frozen=True)
class FixedRewardTransform:
    """
    The stateless part of :class:`RewardScaling`: ``r -> clip(scale * signed_log(r))``.

    It is split in two halves because running normalization (when enabled) sits between them:
    ``post(pre(r) / std)``. Without normalization the wrapper applies exactly ``post(pre(r))``, i.e. ``self(r)``.

    :param scale: multiplicative factor, strictly positive
    :param clip: ``(low, high)`` bounds applied last, or None for no clipping
    :param signed_log: apply ``sign(r) * log(1 + |r|)`` first (DQfD on Atari, Hester et al. 2018)
    """

    scale: float = 1.0
    clip: tuple[float, float] | None = None
    signed_log: bool = False

    def pre(self, rewards: np.ndarray) -> np.ndarray:
        """Signed log (if enabled), before any normalization."""
        if self.signed_log:
            return np.sign(rewards) * np.log1p(np.abs(rewards))
        return rewards

    def post(self, rewards: np.ndarray) -> np.ndarray:
        """Scale then clip (if enabled), after any normalization."""
        rewards = rewards * self.scale
        if self.clip is not None:
            rewards = np.clip(rewards, self.clip[0], self.clip[1])
        return rewards

    def __call__(self, rewards: np.ndarray) -> np.ndarray:
        """
        Transform an array of rewards (e.g. a demonstration's) exactly as the wrapper transforms agent rewards.

        :param rewards: rewards of any shape
        :return: transformed rewards, same shape; float dtype of the input (float64 for integer input)
        """
        rewards = np.asarray(rewards)
        dtype = rewards.dtype if np.issubdtype(rewards.dtype, np.floating) else np.float64
        return self.post(self.pre(rewards.astype(np.float64))).astype(dtype)


def _as_clip_bounds(clip: float | Sequence[float] | None) -> tuple[float, float] | None:
    """Normalize the ``clip`` argument to ``(low, high)`` and validate it."""
    if clip is None:
        return None
    if np.isscalar(clip):
        bound = float(clip)  # type: ignore[arg-type]
        if not bound > 0:
            raise ValueError(f"RewardScaling: a scalar `clip` must be > 0 (clips to [-clip, clip]), received {clip!r}")
        return (-bound, bound)
    bounds = tuple(float(value) for value in clip)  # type: ignore[union-attr]
    if len(bounds) != 2 or not bounds[0] < bounds[1]:
        raise ValueError(f"RewardScaling: `clip` must be a float > 0 or a pair (low, high) with low < high, received {clip!r}")
    return (bounds[0], bounds[1])


class RewardScaling(gym.Wrapper[ObsType, ActType, ObsType, ActType], gym.utils.RecordConstructorArgs):
    r"""
    Rescale rewards: signed log, then division by the running std of the discounted return, then scale, then clip.

    Each stage is optional and they compose in that fixed order::

        r' = clip(scale * signed_log(r) / sqrt(Var[G] + epsilon))      with G_t = gamma * G_{t-1} + signed_log(r_t)

    The fixed stages (``scale``, ``clip``, ``signed_log``) are safe for replay buffers and demonstrations: see
    :func:`demonstration_reward_transform`. Running normalization (``normalize=True``) is not, as the divisor drifts.

    Differences with :class:`gymnasium.wrappers.NormalizeReward`: the running return ``G`` restarts on *any*
    episode end, terminated or truncated (gymnasium 1.x restarts only on termination, gymnasium #760 / #1507), and on
    every ``reset()``; the unscaled reward is kept in ``info["raw_reward"]`` (the environment's own reward when
    RewardScaling wrappers are nested); the statistics can be frozen
    (``update_stats=False``; in an SB3 VecEnv ``env_method("set_update_stats", False)``, as ``set_attr`` stops at the
    outermost wrapper) and travel
    with an SB3 model (see :class:`RewardScalingCallback`).

    Example (the fixed scale of the user's Walker2d report):
        >>> import gymnasium as gym
        >>> from sb3_dqfd.wrappers import RewardScaling
        >>> env = RewardScaling(gym.make("CartPole-v1"), scale=0.01)
        >>> _ = env.reset(seed=0)
        >>> _, reward, _, _, info = env.step(0)
        >>> float(reward), float(info["raw_reward"])
        (0.01, 1.0)

    Example (running normalization, frozen for evaluation):
        >>> env = RewardScaling(gym.make("CartPole-v1"), normalize=True, gamma=0.99)
        >>> _ = env.reset(seed=0)
        >>> for _ in range(5):
        ...     _ = env.step(0)
        >>> env.update_stats = False
        >>> stats = env.state_dict()
        >>> _ = env.step(0)
        >>> env.state_dict() == stats
        True

    :param env: the environment to wrap
    :param scale: multiplicative factor (> 0), applied after the normalization
    :param clip: clip the final reward to ``[-clip, clip]`` (a float > 0) or to ``(low, high)``; None: no clipping
    :param signed_log: apply ``sign(r) * log(1 + |r|)`` to the raw reward first
    :param normalize: divide by the running standard deviation of the discounted return
    :param gamma: discount of the running return used by ``normalize``, in ``[0, 1)``
    :param epsilon: added to the variance before the square root (> 0)
    :param update_stats: whether ``normalize`` updates its running statistics (set False to evaluate)
    """

    def __init__(
        self,
        env: gym.Env[ObsType, ActType],
        scale: float = 1.0,
        clip: float | tuple[float, float] | None = None,
        signed_log: bool = False,
        normalize: bool = False,
        gamma: float = 0.99,
        epsilon: float = 1e-8,
        update_stats: bool = True,
    ):
        if not scale > 0:
            raise ValueError(f"RewardScaling: `scale` must be > 0 (a negative scale flips the objective), received {scale}")
        if not 0 <= gamma < 1:
            raise ValueError(f"RewardScaling: `gamma` must be in [0, 1), received {gamma}")
        if not epsilon > 0:
            raise ValueError(f"RewardScaling: `epsilon` must be > 0, received {epsilon}")
        gym.utils.RecordConstructorArgs.__init__(
            self,
            scale=scale,
            clip=clip,
            signed_log=signed_log,
            normalize=normalize,
            gamma=gamma,
            epsilon=epsilon,
            update_stats=update_stats,
        )
        gym.Wrapper.__init__(self, env)
        self.transform = FixedRewardTransform(scale=float(scale), clip=_as_clip_bounds(clip), signed_log=bool(signed_log))
        self.normalize = bool(normalize)
        self.gamma = float(gamma)
        self.epsilon = float(epsilon)
        self.update_stats = bool(update_stats)
        self.return_rms = RunningMeanStd(shape=())
        # Running discounted return of the current episode, G_t = gamma * G_{t-1} + pre(r_t)
        self.discounted_return = 0.0

    def set_update_stats(self, update_stats: bool) -> None:
        """
        Freeze (False) or resume (True) the running statistics; a method so ``VecEnv.env_method`` reaches it.

        :param update_stats: whether ``step()`` updates the running statistics
        """
        self.update_stats = bool(update_stats)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[ObsType, dict[str, Any]]:
        """Reset the environment and the running discounted return (a reset always starts a new episode)."""
        self.discounted_return = 0.0
        return super().reset(seed=seed, options=options)

    def step(self, action: ActType) -> tuple[ObsType, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the environment, rescale the reward and keep the raw one in ``info["raw_reward"]``."""
        obs, raw_reward, terminated, truncated, info = super().step(action)
        reward = self.transform.pre(np.asarray(raw_reward, dtype=np.float64))
        if self.normalize:
            self.discounted_return = self.gamma * self.discounted_return + float(reward)
            if self.update_stats:
                self.return_rms.update(np.array([self.discounted_return]))
            reward = reward / np.sqrt(self.return_rms.var + self.epsilon)
            if terminated or truncated:
                # Any end of episode, time limits included: the next step belongs to a new episode's return
                self.discounted_return = 0.0
        info = dict(info)
        # Nested RewardScaling wrappers: keep the innermost one's, i.e. the environment's own reward
        info.setdefault("raw_reward", raw_reward)
        return obs, float(self.transform.post(reward)), terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        """
        The configuration and running statistics of this wrapper, as plain floats/bools (JSON friendly).

        :return: a dict accepted by :meth:`load_state_dict`
        """
        clip = None if self.transform.clip is None else list(self.transform.clip)
        return {
            "scale": self.transform.scale,
            "clip": clip,
            "signed_log": self.transform.signed_log,
            "normalize": self.normalize,
            "gamma": self.gamma,
            "epsilon": self.epsilon,
            "mean": float(self.return_rms.mean),
            "var": float(self.return_rms.var),
            "count": float(self.return_rms.count),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """
        Load running statistics saved by :meth:`state_dict` into this wrapper.

        :param state: a dict from :meth:`state_dict`; its configuration must equal this wrapper's
        """
        own = self.state_dict()
        missing = [key for key in own if key not in state]
        if missing:
            raise ValueError(f"RewardScaling.load_state_dict: the state lacks the keys {missing}, expected {list(own)}")
        clip = None if state["clip"] is None else [float(value) for value in state["clip"]]
        saved = {**state, "clip": clip}
        mismatched = {key: (saved[key], own[key]) for key in _CONFIG_KEYS if saved[key] != own[key]}
        if mismatched:
            raise ValueError(
                "RewardScaling.load_state_dict: the saved configuration differs from this wrapper's "
                f"(key: (saved, wrapper)): {mismatched}"
            )
        self.return_rms.mean = np.float64(state["mean"])
        self.return_rms.var = np.float64(state["var"])
        self.return_rms.count = float(state["count"])

    def chain_state_dicts(self) -> list[dict[str, Any]]:
        """
        :meth:`state_dict` of this wrapper and of every :class:`RewardScaling` below it, outermost first.

        A method (not a module function) so that ``VecEnv.env_method`` can call it inside sub-processes.

        :return: one state per RewardScaling wrapper in this wrapper's chain
        """
        return [wrapper.state_dict() for wrapper in _reward_scaling_wrappers(self)]

    def load_chain_state_dicts(self, states: list[dict[str, Any]]) -> None:
        """
        Inverse of :meth:`chain_state_dicts`.

        :param states: one state per RewardScaling wrapper in this wrapper's chain, outermost first
        """
        wrappers = _reward_scaling_wrappers(self)
        if len(states) != len(wrappers):
            raise ValueError(f"Expected {len(wrappers)} RewardScaling state(s) for this env, got {len(states)}")
        for wrapper, state in zip(wrappers, states, strict=True):
            wrapper.load_state_dict(state)


def _reward_scaling_wrappers(env: gym.Env) -> list[RewardScaling]:
    """Every RewardScaling in a gymnasium wrapper chain, outermost first."""
    wrappers = []
    while isinstance(env, gym.Wrapper):
        if isinstance(env, RewardScaling):
            wrappers.append(env)
        env = env.env
    return wrappers


def _chain_states(env: gym.Env | VecEnv) -> list[list[dict[str, Any]]]:
    """
    The RewardScaling states of ``env``: one list per sub-environment (a single one for a gymnasium env), each
    outermost first. Sub-environments without a RewardScaling give an empty list.
    """
    if isinstance(env, VecEnv):
        wrapped = env.env_is_wrapped(RewardScaling)
        if not any(wrapped):
            return [[] for _ in range(env.num_envs)]
        if not all(wrapped):
            raise ValueError(f"Only some sub-environments are wrapped with RewardScaling ({wrapped}): wrap all or none")
        return env.env_method("chain_state_dicts")
    if not isinstance(env, gym.Env):
        raise TypeError(f"Expected a gymnasium.Env or an SB3 VecEnv, received {type(env).__name__}")
    return [[wrapper.state_dict() for wrapper in _reward_scaling_wrappers(env)]]


def demonstration_reward_transform(
    env: gym.Env | VecEnv, allow_vec_normalize: bool = False
) -> Callable[[np.ndarray], np.ndarray] | None:
    """
    The reward transform the agent sees in ``env``, to apply to demonstration rewards so both share one scale.

    :param env: a gymnasium env (its ``.env`` chain is searched) or an SB3 VecEnv (every sub-environment must carry
        the same :class:`RewardScaling` configuration)
    :param allow_vec_normalize: accept ``VecNormalize(norm_reward=True)``: a replay buffer stores raw rewards and
        normalizes them at sample time, so that is safe for agent data alone (the check for an algorithm without
        demonstrations); ``RewardScaling(normalize=True)`` is refused either way, as it stores drifting rewards
    :return: a callable mapping an array of raw rewards to scaled rewards, identical to what the wrapper(s) apply
        (nested wrappers are composed, innermost first); None when ``env`` carries no RewardScaling
    :raises ValueError: when a RewardScaling (or SB3's ``VecNormalize(norm_reward=True)``) uses running
        normalization, whose divisor changes during training so rewards stored once in a replay buffer would drift
        away from the agent's; or when sub-environments differ
    """
    vec_normalize = unwrap_vec_normalize(env) if isinstance(env, VecEnv) else None
    if vec_normalize is not None and vec_normalize.norm_reward and not allow_vec_normalize:
        raise ValueError(
            "The environment is wrapped in VecNormalize(norm_reward=True), a running normalization: demonstration "
            "rewards stored once in the replay buffer would drift away from the agent's. Use norm_reward=False and a "
            "fixed RewardScaling instead."
        )
    # Compare configurations only: running statistics legitimately differ between sub-environments
    chains = [[{key: state[key] for key in _CONFIG_KEYS} for state in chain] for chain in _chain_states(env)]
    if any(chain != chains[0] for chain in chains):
        raise ValueError("The sub-environments carry different RewardScaling configurations: one transform cannot serve all")
    if not chains[0]:
        return None
    if any(state["normalize"] for state in chains[0]):
        raise ValueError(
            "The environment's RewardScaling uses running normalization (normalize=True): its divisor drifts during "
            "training, so demonstration rewards stored once in the replay buffer would no longer match the agent's. "
            "Use a fixed transform (scale, clip, signed_log) with demonstrations."
        )
    transforms = [
        FixedRewardTransform(
            scale=state["scale"],
            clip=None if state["clip"] is None else (state["clip"][0], state["clip"][1]),
            signed_log=state["signed_log"],
        )
        for state in reversed(chains[0])  # innermost first: that is the order rewards flow through them
    ]
    if len(transforms) == 1:
        return transforms[0]
    return _ComposedTransform(tuple(transforms))


@dataclass(frozen=True)
class _ComposedTransform:
    """Nested RewardScaling wrappers: apply each fixed transform in turn (innermost first)."""

    transforms: tuple[FixedRewardTransform, ...]

    def __call__(self, rewards: np.ndarray) -> np.ndarray:
        for transform in self.transforms:
            rewards = transform(rewards)
        return rewards


def store_reward_scaling(model: BaseAlgorithm) -> None:
    """
    Copy the RewardScaling statistics of ``model``'s env onto the model (attribute ``reward_scaling_state``), so the
    next ``model.save()`` writes them into the same zip file.

    :param model: an SB3 model whose env carries RewardScaling wrappers
    """
    env = model.get_env()
    if env is None:
        raise ValueError("store_reward_scaling: the model has no env to read the RewardScaling statistics from")
    states = _chain_states(env)
    if not states[0]:
        raise ValueError("store_reward_scaling: the model's env is not wrapped with RewardScaling")
    setattr(model, MODEL_ATTRIBUTE, states)


def restore_reward_scaling(model: BaseAlgorithm, env: gym.Env | VecEnv | None = None) -> None:
    """
    Write the statistics saved with ``model`` (see :class:`RewardScalingCallback`) into ``env``'s RewardScaling
    wrappers. Call it right after ``Model.load(path, env=env)``.

    :param model: a model saved after :func:`store_reward_scaling` (or trained with :class:`RewardScalingCallback`)
    :param env: the env to restore into; by default the model's own env (the one given to ``load``)
    """
    states = getattr(model, MODEL_ATTRIBUTE, None)
    if states is None:
        raise ValueError(
            f"restore_reward_scaling: the model has no `{MODEL_ATTRIBUTE}`; it was saved without RewardScalingCallback "
            "or store_reward_scaling()"
        )
    env = model.get_env() if env is None else env
    if env is None:
        raise ValueError("restore_reward_scaling: no env given and the model has none (pass env= to Model.load)")
    if isinstance(env, VecEnv):
        if len(states) != env.num_envs:
            raise ValueError(f"restore_reward_scaling: the model saved {len(states)} sub-env state(s), env has {env.num_envs}")
        if not all(env.env_is_wrapped(RewardScaling)):
            raise ValueError("restore_reward_scaling: every sub-environment must be wrapped with RewardScaling")
        for index, chain in enumerate(states):
            env.env_method("load_chain_state_dicts", chain, indices=[index])
        return
    wrappers = _reward_scaling_wrappers(env)
    if not wrappers:
        raise ValueError("restore_reward_scaling: the env is not wrapped with RewardScaling")
    if len(states) != 1:
        raise ValueError(f"restore_reward_scaling: the model saved {len(states)} sub-env states, a gymnasium env holds one")
    wrappers[0].load_chain_state_dicts(states[0])


class RewardScalingCallback(BaseCallback):
    """
    Keep the env's :class:`RewardScaling` statistics on the model so that ``model.save()`` carries them.

    Why a callback and a model attribute: SB3's ``save()`` writes every model attribute that is not excluded (the env
    is), so statistics copied onto the model end up in the same zip as the weights and come back with
    ``Model.load()``, unlike ``VecNormalize``'s (SB3 #468). The copy is refreshed at the start of training, after
    each rollout and at the end, which also works for ``SubprocVecEnv`` where the wrappers live in other processes.
    ``load()`` cannot know which wrapper the statistics belong to, so one call puts them back::

        model = A2C("MlpPolicy", env)
        model.learn(10_000, callback=RewardScalingCallback())
        model.save("a2c")
        model = A2C.load("a2c", env=new_env)
        restore_reward_scaling(model)  # new_env's RewardScaling now holds the trained statistics

    :param verbose: verbosity level (0: silent)
    """

    def _on_training_start(self) -> None:
        store_reward_scaling(self.model)

    def _on_rollout_end(self) -> None:
        store_reward_scaling(self.model)

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        store_reward_scaling(self.model)
