"""RewardScaling: fixed transforms, running normalization vs a brute-force reference, save/load with SB3 models, and the
demonstration reward transform used by DQfD."""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.wrappers import NormalizeReward, TimeLimit
from stable_baselines3 import A2C, DQN
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_dqfd.wrappers import (
    RewardScaling,
    RewardScalingCallback,
    demonstration_reward_transform,
    restore_reward_scaling,
    store_reward_scaling,
)


class RandomRewardEnv(gym.Env[np.ndarray, int]):
    """Rewards drawn from a wide distribution; terminates on the step index given by ``terminate_at`` (if any)."""

    observation_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, terminate_at: int | None = None, reward_scale: float = 50.0):
        self.terminate_at = terminate_at
        self.reward_scale = reward_scale
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        reward = float(self.np_random.normal(1.0, 1.0) * self.reward_scale)
        terminated = self.terminate_at is not None and self.t >= self.terminate_at
        return np.zeros(1, dtype=np.float32), reward, terminated, False, {}


def rollout(env: gym.Env, n_steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step with action 0, resetting on any end. Returns scaled rewards, raw rewards and episode-end flags."""
    env.reset(seed=seed)
    rewards, raw, ends = [], [], []
    for _ in range(n_steps):
        _, reward, terminated, truncated, info = env.step(0)
        rewards.append(reward)
        raw.append(info["raw_reward"])
        ends.append(terminated or truncated)
        if terminated or truncated:
            env.reset()
    return np.array(rewards), np.array(raw), np.array(ends)


def reference_normalized(raw: np.ndarray, ends: np.ndarray, gamma: float, epsilon: float) -> np.ndarray:
    """
    Brute force: G_t = gamma * G_{t-1} + r_t restarted after every episode end; the variance of all returns so far,
    mixed with RunningMeanStd's prior (mean 0, variance 1, weight 1e-4), computed from scratch at every step.
    """
    returns = np.zeros(len(raw))
    running = 0.0
    for t, reward in enumerate(raw):
        running = gamma * running + reward
        returns[t] = running
        if ends[t]:
            running = 0.0
    prior = 1e-4
    expected = np.zeros(len(raw))
    for t in range(len(raw)):
        seen = returns[: t + 1]
        mean = seen.sum() / (prior + len(seen))
        second_moment = (prior * 1.0 + np.square(seen).sum()) / (prior + len(seen))
        expected[t] = raw[t] / np.sqrt(second_moment - mean**2 + epsilon)
    return expected


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"scale": 0.01}, lambda r: 0.01 * r),
        ({"clip": 10.0}, lambda r: np.clip(r, -10.0, 10.0)),
        ({"clip": (-1.0, 5.0), "scale": 0.5}, lambda r: np.clip(0.5 * r, -1.0, 5.0)),
        ({"signed_log": True}, lambda r: np.sign(r) * np.log(1 + np.abs(r))),
        ({"signed_log": True, "scale": 2.0, "clip": 3.0}, lambda r: np.clip(2 * np.sign(r) * np.log(1 + np.abs(r)), -3, 3)),
    ],
)
def test_fixed_modes(kwargs: dict, expected: Any) -> None:
    env = RewardScaling(TimeLimit(RandomRewardEnv(), 20), **kwargs)
    rewards, raw, _ = rollout(env, 100)
    assert np.std(raw) > 10  # wide enough rewards for clipping and the log to matter
    np.testing.assert_allclose(rewards, expected(raw), rtol=1e-12)


@pytest.mark.parametrize("truncate", [True, False])
def test_normalization_matches_brute_force_and_restarts_on_any_end(truncate: bool) -> None:
    gamma, epsilon = 0.9, 1e-8
    inner = TimeLimit(RandomRewardEnv(), 15) if truncate else RandomRewardEnv(terminate_at=15)
    env = RewardScaling(inner, normalize=True, gamma=gamma, epsilon=epsilon)
    rewards, raw, ends = rollout(env, 200)
    assert ends.sum() >= 10
    np.testing.assert_allclose(rewards, reference_normalized(raw, ends, gamma, epsilon), rtol=1e-6)


def test_gymnasium_normalize_reward_differs_on_truncation() -> None:
    # The brute-force reference can tell the two apart: gymnasium 1.x carries the return across time-limit ends
    gamma = 0.9
    ours, raw, ends = rollout(RewardScaling(TimeLimit(RandomRewardEnv(), 15), normalize=True, gamma=gamma), 200)
    theirs_env = NormalizeReward(TimeLimit(RandomRewardEnv(), 15), gamma=gamma)
    theirs_env.reset(seed=0)
    theirs = []
    for _ in range(200):
        _, reward, terminated, truncated, _ = theirs_env.step(0)
        theirs.append(reward)
        if terminated or truncated:
            theirs_env.reset()
    assert not np.allclose(np.array(theirs), ours, rtol=1e-3)
    np.testing.assert_allclose(ours, reference_normalized(raw, ends, gamma, 1e-8), rtol=1e-6)


def test_reset_mid_episode_restarts_return() -> None:
    env = RewardScaling(RandomRewardEnv(), normalize=True, gamma=0.99)
    env.reset(seed=0)
    for _ in range(5):
        env.step(0)
    assert env.discounted_return != 0.0
    env.reset()
    assert env.discounted_return == 0.0


def test_frozen_statistics_through_vec_env() -> None:
    venv = make_vec_env(
        lambda: RewardScaling(TimeLimit(RandomRewardEnv(), 10), normalize=True), n_envs=2, seed=0
    )  # Monitor is outermost
    venv.reset()
    for _ in range(20):
        venv.step(np.zeros(2, dtype=np.int64))
    venv.env_method("set_update_stats", False)
    frozen = venv.env_method("state_dict")
    for _ in range(20):
        venv.step(np.zeros(2, dtype=np.int64))
    assert venv.env_method("state_dict") == frozen
    venv.env_method("set_update_stats", True)
    venv.step(np.zeros(2, dtype=np.int64))
    assert venv.env_method("state_dict") != frozen


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale": -1.0},
        {"scale": 0.0},
        {"clip": -1.0},
        {"clip": (2.0, 1.0)},
        {"clip": (1.0, 2.0, 3.0)},
        {"gamma": 1.0},
        {"epsilon": 0},
    ],
)
def test_invalid_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RewardScaling(RandomRewardEnv(), **kwargs)


def test_load_state_dict_checks_configuration() -> None:
    source = RewardScaling(RandomRewardEnv(), normalize=True, gamma=0.9)
    rollout(source, 30)
    target = RewardScaling(RandomRewardEnv(), normalize=True, gamma=0.99)
    with pytest.raises(ValueError, match="gamma"):
        target.load_state_dict(source.state_dict())
    same = RewardScaling(RandomRewardEnv(), normalize=True, gamma=0.9)
    same.load_state_dict(source.state_dict())
    assert same.state_dict() == source.state_dict()


@pytest.mark.parametrize(
    "kwargs", [{"scale": 0.01}, {"signed_log": True, "clip": 2.0}, {"scale": 0.1, "clip": (-1.0, 0.5), "signed_log": True}]
)
def test_demonstration_transform_equals_wrapper(kwargs: dict) -> None:
    env = RewardScaling(Monitor(TimeLimit(RandomRewardEnv(), 20)), **kwargs)
    rewards, raw, _ = rollout(env, 60)
    transform = demonstration_reward_transform(Monitor(env))  # found below another wrapper too
    assert transform is not None
    np.testing.assert_array_equal(transform(raw), rewards)
    # Same answer through an SB3 VecEnv whose sub-envs carry the wrapper below a Monitor
    venv = make_vec_env(lambda: RewardScaling(TimeLimit(RandomRewardEnv(), 20), **kwargs), n_envs=2)
    vec_transform = demonstration_reward_transform(venv)
    assert vec_transform is not None
    np.testing.assert_array_equal(vec_transform(raw), rewards)
    # float32 demonstration rewards keep their dtype
    assert transform(raw.astype(np.float32)).dtype == np.float32


def test_demonstration_transform_composes_nested_wrappers() -> None:
    env = RewardScaling(RewardScaling(TimeLimit(RandomRewardEnv(), 20), signed_log=True), scale=0.5, clip=1.0)
    rewards, raw, _ = rollout(env, 60)
    transform = demonstration_reward_transform(env)
    assert transform is not None
    np.testing.assert_allclose(transform(raw), rewards, rtol=1e-12)


def test_demonstration_transform_none_and_errors() -> None:
    assert demonstration_reward_transform(TimeLimit(RandomRewardEnv(), 20)) is None
    assert demonstration_reward_transform(make_vec_env(lambda: RandomRewardEnv(), n_envs=2)) is None
    with pytest.raises(ValueError, match="running normalization"):
        demonstration_reward_transform(RewardScaling(RandomRewardEnv(), normalize=True))
    normalized = make_vec_env(lambda: RewardScaling(RandomRewardEnv(), normalize=True), n_envs=2, seed=0)
    normalized.reset()
    normalized.step(np.zeros(2, dtype=np.int64))  # the sub-envs' statistics now differ; their configuration does not
    with pytest.raises(ValueError, match="running normalization"):
        demonstration_reward_transform(normalized)
    mixed = DummyVecEnv([lambda: RewardScaling(RandomRewardEnv(), scale=0.1), lambda: RandomRewardEnv()])
    with pytest.raises(ValueError, match="some sub-environments"):
        demonstration_reward_transform(mixed)
    different = DummyVecEnv([lambda: RewardScaling(RandomRewardEnv(), scale=0.1), lambda: RewardScaling(RandomRewardEnv())])
    with pytest.raises(ValueError, match="different"):
        demonstration_reward_transform(different)
    scaled = make_vec_env(lambda: RewardScaling(RandomRewardEnv(), scale=0.1), n_envs=2)
    with pytest.raises(ValueError, match="VecNormalize"):
        demonstration_reward_transform(VecNormalize(scaled))
    observation_only = VecNormalize(scaled, norm_reward=False)
    assert demonstration_reward_transform(observation_only) is not None
    with pytest.raises(TypeError):
        demonstration_reward_transform("CartPole-v1")  # type: ignore[arg-type]


def make_scaled_cartpole(n_envs: int = 2) -> DummyVecEnv:
    return make_vec_env(lambda: RewardScaling(gym.make("CartPole-v1"), normalize=True, gamma=0.99), n_envs=n_envs, seed=0)


@pytest.mark.parametrize("model_class", [A2C, DQN])
def test_statistics_survive_save_and_load(model_class: type[A2C] | type[DQN], tmp_path: Any) -> None:
    env = make_scaled_cartpole()
    kwargs = {"learning_starts": 50, "train_freq": 8} if model_class is DQN else {"n_steps": 8}
    model = model_class("MlpPolicy", env, seed=0, **kwargs)
    model.learn(300, callback=RewardScalingCallback())
    trained = env.env_method("chain_state_dicts")
    assert trained[0][0]["count"] > 100  # the statistics really moved
    model.save(tmp_path / "model")

    new_env = make_scaled_cartpole()
    fresh = new_env.env_method("chain_state_dicts")
    assert fresh != trained
    loaded = model_class.load(tmp_path / "model", env=new_env)
    restore_reward_scaling(loaded)
    assert new_env.env_method("chain_state_dicts") == trained
    # The restored wrapper divides by the trained statistics: same scaled reward for the same raw reward
    expected = [1.0 / np.sqrt(chain[0]["var"] + 1e-8) for chain in trained]  # each sub-env has its own statistics
    new_env.env_method("set_update_stats", False)
    new_env.reset()
    _, rewards, _, _ = new_env.step(np.zeros(2, dtype=np.int64))
    np.testing.assert_allclose(rewards, expected, rtol=1e-6)


def test_store_and_restore_errors(tmp_path: Any) -> None:
    model = A2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1), n_steps=8)
    with pytest.raises(ValueError, match="not wrapped"):
        store_reward_scaling(model)
    with pytest.raises(ValueError, match="reward_scaling_state"):
        restore_reward_scaling(model)
    scaled = A2C("MlpPolicy", make_scaled_cartpole(n_envs=2), n_steps=8)
    store_reward_scaling(scaled)
    with pytest.raises(ValueError, match="sub-env"):
        restore_reward_scaling(scaled, make_scaled_cartpole(n_envs=3))
    # A plain gymnasium env holds one chain
    single = RewardScaling(gym.make("CartPole-v1"), normalize=True, gamma=0.99)
    scaled.reward_scaling_state = scaled.reward_scaling_state[:1]  # type: ignore[attr-defined]
    restore_reward_scaling(scaled, single)
    assert single.chain_state_dicts() == scaled.reward_scaling_state[0]  # type: ignore[attr-defined]
