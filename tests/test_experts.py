"""The scripted experts: valid actions, the level of play their docstrings state, the registry."""

import re

import gymnasium as gym
import numpy as np
import pytest

from sb3_dqfd.common.demonstrations import record_demonstrations
from sb3_dqfd.common.experts import EXPERTS, get_expert


@pytest.mark.parametrize("env_id", sorted(EXPERTS))
def test_experts_return_actions_the_env_accepts(env_id):
    env = gym.make(env_id)
    expert = get_expert(env_id)
    observation, _ = env.reset(seed=0)
    for _ in range(50):
        action = expert(observation)
        assert env.action_space.contains(action)
        observation, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            observation, _ = env.reset()
    env.close()


# (env id, worst acceptable return on each of 5 seeds, how the episodes must end): loose floors, well above random play
LEVELS = [
    ("CartPole-v1", 500, "truncated"),  # balanced to the time limit
    ("MountainCar-v0", -150, "terminated"),  # reached the flag (random play never does in 200 steps)
    ("Acrobot-v1", -200, "terminated"),  # swung up (random play: mostly -500)
    ("LunarLander-v3", 150, "terminated"),  # landed
]


@pytest.mark.parametrize("env_id, floor, end", LEVELS)
def test_experts_play_well(env_id, floor, end):
    demos = record_demonstrations(env_id, env_id, n_episodes=5, seed=0)
    assert demos.episode_returns.min() >= floor, demos.episode_returns
    assert all(getattr(episode, end) for episode in demos)


def test_every_expert_is_covered_by_the_level_check():
    assert sorted(EXPERTS) == sorted(env_id for env_id, _, _ in LEVELS)


def test_unknown_expert_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"No built-in expert for 'Pong-v5'; known: \['Acrobot-v1', 'CartPole-v1'"):
        get_expert("Pong-v5")


@pytest.mark.slow
@pytest.mark.parametrize("env_id", sorted(EXPERTS))
def test_docstring_numbers_match_a_new_measurement(env_id):
    """The docstrings state mean, min and max over seeds 0..199: measure again and compare."""
    pattern = r"seeds 0\.\.199: mean (-?[\d.]+),\s+min (-?[\d.]+),\s+max (-?[\d.]+)"
    stated = re.search(pattern, get_expert(env_id).__doc__ or "")
    assert stated is not None, "the docstring must state the measured mean, min and max"
    returns = record_demonstrations(env_id, env_id, n_episodes=200, seed=0).episode_returns
    measured = (returns.mean(), returns.min(), returns.max())
    np.testing.assert_allclose(measured, [float(value) for value in stated.groups()], atol=0.051)
