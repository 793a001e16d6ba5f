"""The scripted experts: valid actions, the level of play their docstrings state, the registry."""

import re

import gymnasium as gym
import numpy as np
import pytest

from sb3_dqfd.common.demonstrations import record_demonstrations
from sb3_dqfd.common.experts import EXPERTS, get_expert


def register(env_id):
    """Register the optional MinAtar and ALE environments an expert id needs (skip when the extra is missing)."""
    if env_id in gym.registry:  # registering again would warn
        return
    if env_id.startswith("MinAtar/"):
        pytest.importorskip("minatar.gym").register_envs()
    elif env_id.startswith("ALE/"):
        gym.register_envs(pytest.importorskip("ale_py"))


@pytest.mark.parametrize("env_id", sorted(EXPERTS))
def test_experts_return_actions_the_env_accepts(env_id):
    register(env_id)
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
    ("LunarLanderContinuous-v3", 150, "terminated"),  # landed (Box actions)
    ("MinAtar/Breakout-v1", 2, "terminated"),  # seeds 0..4 score 2 to 19 (random play: 0.4 on average)
    # MinAtar's Freeway ends itself after 2500 steps, as a termination
    ("MinAtar/Freeway-v1", 30, "terminated"),  # seeds 0..4 cross 31 to 53 times (always up: 15.7, random: 0.4)
    # 5 episodes take about 15 s: slow (test_atari_minatar.py records one episode in the ALE pipeline test)
    pytest.param("ALE/Breakout-v5", 10, "terminated", marks=pytest.mark.slow),  # lost its 5 lives (random: ~2)
]


@pytest.mark.parametrize("env_id, floor, end", LEVELS)
def test_experts_play_well(env_id, floor, end):
    register(env_id)
    demos = record_demonstrations(env_id, env_id, n_episodes=5, seed=0)
    assert demos.episode_returns.min() >= floor, demos.episode_returns
    assert all(getattr(episode, end) for episode in demos)


def test_every_expert_is_covered_by_the_level_check():
    covered = [level.values[0] if hasattr(level, "values") else level[0] for level in LEVELS]
    assert sorted(EXPERTS) == sorted(covered)


def test_unknown_expert_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"No built-in expert for 'Pong-v5'; known: \['ALE/Breakout-v5', 'Acrobot-v1'"):
        get_expert("Pong-v5")


@pytest.mark.slow
@pytest.mark.parametrize("env_id", sorted(EXPERTS))
def test_docstring_numbers_match_a_new_measurement(env_id):
    """The docstrings state mean, min and max over seeds 0..N-1: measure again and compare."""
    pattern = r"seeds 0\.\.(\d+): mean (-?[\d.]+),\s+min (-?[\d.]+),\s+max (-?[\d.]+)"
    stated = re.search(pattern, get_expert(env_id).__doc__ or "")
    assert stated is not None, "the docstring must state the measured mean, min and max"
    register(env_id)
    last_seed, *numbers = stated.groups()
    returns = record_demonstrations(env_id, env_id, n_episodes=int(last_seed) + 1, seed=0).episode_returns
    measured = (returns.mean(), returns.min(), returns.max())
    np.testing.assert_allclose(measured, [float(value) for value in numbers], atol=0.051)
