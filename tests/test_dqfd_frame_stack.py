"""DQfD behind VecFrameStack: demonstrations of single frames are stacked as the wrapper stacks the agent's frames
(zeros before an episode's first frame), stacked demonstrations are taken as they are, anything else is refused."""

from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from image_env import BrightSideEnv, lit_side
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecFrameStack

from sb3_dqfd.common.demonstrations import Demonstrations, record_demonstrations
from sb3_dqfd.common.experts import get_expert
from sb3_dqfd.dqfd import DQfD


def stacked_by_hand(observations: np.ndarray, n_stack: int) -> np.ndarray:
    """Brute force: step t holds frames t-n+1 .. t side by side on the last axis, zeros before the first frame."""
    padded = np.concatenate([np.zeros((n_stack - 1, *observations.shape[1:]), observations.dtype), observations])
    return np.stack([np.concatenate(padded[t : t + n_stack], axis=-1) for t in range(len(observations))])


def small_model(env, demonstrations, policy: str = "MlpPolicy") -> DQfD:
    return DQfD(policy, env, demonstrations=demonstrations, buffer_size=2_000, batch_size=16, pretrain_steps=0,
                learning_starts=1_000, policy_kwargs=dict(net_arch=[8]), seed=0)  # fmt: skip


def test_single_frame_demonstrations_are_stacked_as_vec_frame_stack_does() -> None:
    demos = record_demonstrations(get_expert("CartPole-v1"), gym.make("CartPole-v1", max_episode_steps=20), 2, seed=0)
    model = small_model(VecFrameStack(make_vec_env("CartPole-v1", n_envs=1), n_stack=3), demos)
    assert model.demonstrations is not None
    for single, stacked in zip(demos, model.demonstrations, strict=True):
        np.testing.assert_array_equal(stacked.observations, stacked_by_hand(single.observations, 3))
        np.testing.assert_array_equal(stacked.actions, single.actions)
    model.learn(30)


def test_stacked_demonstrations_are_taken_as_they_are() -> None:
    demos = record_demonstrations(get_expert("CartPole-v1"), gym.make("CartPole-v1", max_episode_steps=20), 1, seed=0)
    stacked = Demonstrations([replace(episode, observations=stacked_by_hand(episode.observations, 2)) for episode in demos])
    model = small_model(VecFrameStack(make_vec_env("CartPole-v1", n_envs=1), n_stack=2), stacked)
    np.testing.assert_array_equal(model.demonstrations[0].observations, stacked[0].observations)


def test_demonstrations_that_fit_neither_layout_say_how_to_record_them() -> None:
    demos = record_demonstrations(get_expert("MountainCar-v0"), "MountainCar-v0", 1, seed=0)  # 2 values per frame
    with pytest.raises(ValueError, match=r"stacks 3 frames \(VecFrameStack\).*record them through the same wrappers"):
        small_model(VecFrameStack(make_vec_env("CartPole-v1", n_envs=1), n_stack=3), demos)


def test_single_image_frames_are_stacked_then_transposed_for_the_cnn() -> None:
    demos = record_demonstrations(lit_side, BrightSideEnv(), n_episodes=2, seed=0)  # (40, 40, 1) frames
    env = VecFrameStack(make_vec_env(BrightSideEnv, n_envs=1), n_stack=2)  # (40, 40, 2), SB3 transposes to (2, 40, 40)
    model = small_model(env, demos, policy="CnnPolicy")
    assert model.demonstrations is not None
    expected = np.transpose(stacked_by_hand(demos[0].observations, 2), (0, 3, 1, 2))
    np.testing.assert_array_equal(model.demonstrations[0].observations, expected)
