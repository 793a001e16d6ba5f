"""load_demonstrations from the offline-RL layouts (D4RL, Minari episode dicts) and from a built-in expert (expert:N)."""

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from demonstration_helpers import assert_same_episodes, episode_lists
from gymnasium import spaces
from gymnasium.envs.classic_control import CartPoleEnv
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_util import make_vec_env

from sb3_dqfd import DQfD
from sb3_dqfd.common.demonstrations import Demonstrations, Episode, load_demonstrations, record_demonstrations


def without_final_observation(episode: Episode) -> Episode:
    """
    What a layout without the observation after an episode's last step keeps: a terminated episode repeats its last
    observation (never bootstrapped from), a truncated one loses its last step.
    """
    observations = episode.observations[:-1]
    if episode.terminated:
        return Episode(np.concatenate([observations, observations[-1:]]), episode.actions, episode.rewards, True, False)
    return Episode(observations, episode.actions[:-1], episode.rewards[:-1], False, True)


@pytest.fixture(scope="module")
def cartpole_demos() -> Demonstrations:
    # Short time limit: truncated episodes; a falling expert: terminated ones
    truncated = record_demonstrations("CartPole-v1", gym.make("CartPole-v1", max_episode_steps=12), n_episodes=2, seed=0)
    terminated = record_demonstrations(lambda observation: 0, "CartPole-v1", n_episodes=2, seed=5)
    return Demonstrations([*truncated, *terminated], truncated.observation_space, truncated.action_space)


# ---------------------------------------------------------------------------------------------------------------------
# D4RL: flat arrays, episodes split at terminals | timeouts
# ---------------------------------------------------------------------------------------------------------------------


def to_d4rl(episodes: Demonstrations | list[Episode], next_observations: bool = True) -> dict[str, np.ndarray]:
    """The arrays of D4RL's ``env.get_dataset()``: one row per step, no row for the observation after an episode."""
    last_steps = [np.arange(len(episode)) == len(episode) - 1 for episode in episodes]
    data = {
        "observations": np.concatenate([episode.observations[:-1] for episode in episodes]),
        "actions": np.concatenate([episode.actions for episode in episodes]),
        "rewards": np.concatenate([episode.rewards for episode in episodes]),
        "terminals": np.concatenate([last & episode.terminated for last, episode in zip(last_steps, episodes, strict=True)]),
        "timeouts": np.concatenate([last & episode.truncated for last, episode in zip(last_steps, episodes, strict=True)]),
    }
    if next_observations:
        data["next_observations"] = np.concatenate([episode.observations[1:] for episode in episodes])
    return data


def test_d4rl_with_next_observations_loads_every_step(tmp_path, cartpole_demos):
    data = to_d4rl(cartpole_demos)
    assert_same_episodes(cartpole_demos, load_demonstrations(data, env="CartPole-v1"))
    np.savez(tmp_path / "d4rl.npz", **data)
    assert_same_episodes(cartpole_demos, load_demonstrations(tmp_path / "d4rl.npz", env="CartPole-v1"))


def test_d4rl_without_next_observations(tmp_path, cartpole_demos):
    data = to_d4rl(cartpole_demos, next_observations=False)
    dropped = "the last step of the 2 episodes that ended by a timeout or unfinished was dropped"
    with pytest.warns(UserWarning, match=dropped) as record:
        demos = load_demonstrations(data, env="CartPole-v1")
    assert record[0].filename == __file__ and "\n" not in str(record[0].message)  # one line, pointing at the call
    assert_same_episodes([without_final_observation(episode) for episode in cartpole_demos], demos)
    np.testing.assert_array_equal(demos.episode_returns[2:], cartpole_demos.episode_returns[2:])  # terminal ends kept
    np.savez(tmp_path / "d4rl.npz", **data)
    with pytest.warns(UserWarning, match="d4rl.npz: without 'next_observations', a D4RL dataset holds no observation"):
        assert_same_episodes(demos, load_demonstrations(tmp_path / "d4rl.npz", env="CartPole-v1"))


@pytest.mark.parametrize("next_observations", [True, False])
def test_d4rl_trailing_unfinished_episode_is_truncated(cartpole_demos, next_observations):
    episodes = [cartpole_demos[2], cartpole_demos[0]]  # terminated, then cut by the time limit
    data = to_d4rl(episodes, next_observations)
    data["timeouts"][-1] = False  # the recording stopped before the episode ended
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        demos = load_demonstrations(data)
    expected = episodes if next_observations else [without_final_observation(episode) for episode in episodes]
    assert_same_episodes(expected, demos)
    assert len(caught) == (0 if next_observations else 1)  # nothing dropped, nothing to warn about


def test_d4rl_row_both_terminal_and_timeout_is_a_termination(cartpole_demos):
    data = to_d4rl(cartpole_demos[2:3])
    data["timeouts"][-1] = True
    assert load_demonstrations(data)[0].terminated


def test_d4rl_flags_may_be_floats(cartpole_demos):
    data = to_d4rl(cartpole_demos)
    data["terminals"], data["timeouts"] = data["terminals"].astype(np.float32), data["timeouts"].astype(np.float32)
    assert_same_episodes(cartpole_demos, load_demonstrations(data))


def test_d4rl_without_any_episode_left(cartpole_demos):
    data = {key: value[-1:] for key, value in to_d4rl(cartpole_demos[:1], next_observations=False).items()}
    with pytest.raises(ValueError, match="D4RL dataset: no episode left"), pytest.warns(UserWarning):
        load_demonstrations(data)


@settings(max_examples=30, deadline=None)
@given(episodes=episode_lists(obs_dim=3, n_actions=4, every_end_flagged=True), unflagged_end=st.booleans())
def test_d4rl_split_matches_the_episodes(episodes, unflagged_end):
    data = to_d4rl(episodes)
    if unflagged_end and episodes[-1].truncated:
        data["timeouts"][-1] = False  # the recording stopped: the same episode, truncated
    assert_same_episodes(episodes, load_demonstrations(data))
    kept = [episode for episode in episodes if episode.terminated or len(episode) >= 2]
    expected = [without_final_observation(episode) for episode in kept]
    data.pop("next_observations")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # about the dropped last steps
        if not expected:
            with pytest.raises(ValueError, match="no episode left"):
                load_demonstrations(data)
            return
        assert_same_episodes(expected, load_demonstrations(data))


def d4rl(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "observations": np.zeros((4, 2)),
        "actions": np.zeros(4, dtype=np.int64),
        "rewards": np.ones(4),
        "terminals": np.array([False, True, False, False]),
        "timeouts": np.array([False, False, False, True]),
    }
    return {key: value for key, value in (data | changes).items() if value is not None}


@pytest.mark.parametrize(
    "source, message",
    [
        (
            d4rl(timeouts=None),
            r"D4RL dataset: missing key\(s\) \['timeouts'\] for the D4RL layout .*qlearning_dataset.*a list of episode dicts",
        ),
        (d4rl(rewards=np.ones(3)), "D4RL dataset: key 'rewards' has 3 entries but 'observations' has 4"),
        (d4rl(next_observations=np.zeros((3, 2))), "key 'next_observations' has 3 entries but 'observations' has 4"),
        (d4rl(terminals=np.array([0, 2, 0, 0])), r"D4RL dataset, row 1: terminals must hold booleans \(0/1\), got 2"),
        (d4rl(timeouts=np.zeros((4, 2))), r"timeouts must be a 1-D array of flags, got shape \(4, 2\)"),
        (d4rl(**{key: np.zeros(0) for key in d4rl()}), "D4RL dataset: the dataset is empty"),
        (d4rl(rewards=np.array([1.0, np.nan, 1.0, 1.0])), "D4RL dataset: episode 0, step 1: rewards contain NaN"),
    ],
)
@pytest.mark.filterwarnings("ignore:.*without 'next_observations'")  # the NaN case warns before failing
def test_bad_d4rl_input_is_refused(source, message):
    with pytest.raises(ValueError, match=message):
        load_demonstrations(source)


def test_unknown_npz_layout_lists_every_layout(tmp_path):
    np.savez(tmp_path / "odd.npz", observations=np.zeros((3, 2)), actions=np.zeros(3), rewards=np.zeros(3))
    with pytest.raises(ValueError) as caught:
        load_demonstrations(tmp_path / "odd.npz")
    for expected in ("'format'", "'episode_starts'", "'terminals', 'timeouts'"):
        assert expected in str(caught.value)


# ---------------------------------------------------------------------------------------------------------------------
# Episode dicts in Minari's EpisodeData layout: per-step terminations and truncations
# ---------------------------------------------------------------------------------------------------------------------


def minari_dict(episode: Episode) -> dict[str, Any]:
    last = np.arange(len(episode)) == len(episode) - 1
    return {
        "observations": episode.observations,
        "actions": episode.actions,
        "rewards": episode.rewards,
        "terminations": last & episode.terminated,
        "truncations": last & episode.truncated,
    }


def test_minari_style_episode_dicts(cartpole_demos):
    assert_same_episodes(cartpole_demos, load_demonstrations([minari_dict(episode) for episode in cartpole_demos]))
    # An end flagged neither way is a recording cut short: it bootstraps, as in a Minari dataset
    unflagged = minari_dict(cartpole_demos[0]) | {"truncations": np.zeros(len(cartpole_demos[0]), dtype=bool)}
    assert load_demonstrations([unflagged])[0].truncated
    both = minari_dict(cartpole_demos[2]) | {"truncations": np.arange(len(cartpole_demos[2])) == len(cartpole_demos[2]) - 1}
    assert load_demonstrations([both])[0].terminated  # terminated and truncated on the same step: a termination


def minari_steps(**changes: Any) -> list[dict[str, Any]]:
    episode = {
        "observations": np.zeros((4, 2)),
        "actions": np.zeros(3, dtype=np.int64),
        "rewards": np.ones(3),
        "terminations": np.array([False, False, True]),
        "truncations": np.array([False, False, False]),
    }
    return [{key: value for key, value in (episode | changes).items() if value is not None}]


@pytest.mark.parametrize(
    "source, message",
    [
        (
            minari_steps(terminations=np.array([False, True, True])),
            "episode dicts: episode 0, step 1: terminations is set before the last step",
        ),
        (
            minari_steps(truncations=np.array([True, False, False])),
            "episode 0, step 0: truncations is set before the last step",
        ),
        (
            minari_steps(terminations=np.array([False, True])),
            r"episode dicts: episode 0: terminations has 2 entries, expected one per step \(3\)",
        ),
        (minari_steps(truncations=np.array(False)), r"episode 0: truncations must be a 1-D array of flags, got shape \(\)"),
        (
            minari_steps(truncations=None),
            r"episode 0: missing key\(s\) \['truncations'\] for the Minari EpisodeData layout .*'terminated', 'truncated'",
        ),
        (
            [{"observations": np.zeros((2, 2)), "actions": [0], "rewards": [1.0]}],
            r"missing key\(s\) \['terminated', 'truncated'\] .*'terminations', 'truncations'",
        ),
    ],
)
def test_bad_minari_style_episode_dicts_are_refused(source, message):
    with pytest.raises(ValueError, match=message):
        load_demonstrations(source)


# ---------------------------------------------------------------------------------------------------------------------
# expert:N
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_env",
    [lambda: "CartPole-v1", lambda: gym.make("CartPole-v1"), lambda: make_vec_env("CartPole-v1", n_envs=2)],
    ids=["id", "Env", "VecEnv"],
)
def test_expert_source_records_the_built_in_expert(make_env):
    demos = load_demonstrations("expert:2", env=make_env())
    assert_same_episodes(record_demonstrations("CartPole-v1", "CartPole-v1", n_episodes=2, seed=0), demos)
    assert demos.action_space == spaces.Discrete(2)


def test_expert_source_takes_a_seed():
    demos = load_demonstrations("expert:1", env="MountainCar-v0", seed=4)
    assert_same_episodes(record_demonstrations("MountainCar-v0", "MountainCar-v0", n_episodes=1, seed=4), demos)


def test_dqfd_accepts_an_expert_source():
    model = DQfD("MlpPolicy", "CartPole-v1", demonstrations="expert:1", device="cpu")
    assert model.demonstrations is not None and len(model.demonstrations) == 1


@pytest.mark.parametrize(
    "source, env, message",
    [
        ("expert:2", None, "'expert:2' records the built-in expert of an environment: pass env="),
        ("expert:2", "Pendulum-v1", r"'expert:2': no built-in expert for 'Pendulum-v1' \(known: \[.*'Acrobot-v1'"),
        ("expert:2", CartPoleEnv(), r"'expert:2': the env has no id \(env.spec is None\)"),
        *[
            (spec, "CartPole-v1", f"'{spec}': expected expert:N with N a positive whole number of episodes")
            for spec in ("expert:0", "expert:x", "expert:", "expert:-1", "expert:1.5", "expert:\u00b2")
        ],
    ],
)
def test_bad_expert_source_is_refused(source, env, message):
    with pytest.raises(ValueError, match=message):
        load_demonstrations(source, env=env)
