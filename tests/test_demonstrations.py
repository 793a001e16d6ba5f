"""The Demonstrations type (checks, dtype normalization, transitions) and record_demonstrations in a single env
(VecEnvs: test_record_vec_env.py)."""

import gymnasium as gym
import numpy as np
import pytest
from demonstration_helpers import episode_lists
from gymnasium import spaces
from hypothesis import given, settings
from stable_baselines3 import DQN

from sb3_dqfd.common.demonstrations import Demonstrations, Episode, record_demonstrations

ANY4 = spaces.Box(-np.inf, np.inf, (4,))


def make_episode(n_steps: int, obs_dim: int = 4, terminated: bool = True, offset: float = 0.0) -> Episode:
    observations = offset + np.arange((n_steps + 1) * obs_dim, dtype=np.float32).reshape(n_steps + 1, obs_dim)
    return Episode(observations, np.arange(n_steps) % 2, np.ones(n_steps), terminated, not terminated)


# ---------------------------------------------------------------------------------------------------------------------
# Episode and Demonstrations
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "observations, actions, rewards, terminated, truncated, message",
    [
        (np.zeros((1, 2)), np.zeros(0), np.zeros(0), True, False, "at least one transition"),
        (np.zeros((3, 2)), np.zeros(3), np.zeros(3), True, False, "needs 4 observations"),
        (np.zeros((4, 2)), np.zeros(3), np.zeros(2), True, False, "rewards of shape"),
        (np.zeros((4, 2)), np.zeros(3), np.zeros(3), True, True, "both termination and truncation"),
        (np.zeros((4, 2)), np.array(1), np.zeros(3), True, False, "scalar"),
        (np.zeros((4, 2)), np.zeros(3), np.zeros(3), [False, True], False, "single bool"),
        ([np.zeros(2), np.zeros(3)], np.zeros(1), np.zeros(1), True, False, "cannot be stacked"),
        (np.array(["a", "b"]), np.zeros(1), np.zeros(1), True, False, "numeric"),
    ],
)
def test_episode_rejects_malformed(observations, actions, rewards, terminated, truncated, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Episode(observations, actions, rewards, terminated, truncated)


def test_episode_accepts_lists():
    episode = Episode([[0.0, 1.0], [1.0, 2.0]], [1], [0.5], True, False)
    assert isinstance(episode.observations, np.ndarray) and episode.observations.shape == (2, 2)
    assert len(episode) == 1 and episode.episode_return == 0.5


def test_demonstrations_sequence_and_summary():
    demos = Demonstrations(
        [make_episode(3), make_episode(5, terminated=False)], spaces.Box(-np.inf, np.inf, (4,)), spaces.Discrete(2)
    )
    assert len(demos) == 2 and demos.n_transitions == 8
    assert [len(episode) for episode in demos] == [3, 5]
    assert isinstance(demos[1:], Demonstrations) and len(demos[1:]) == 1
    summary = str(demos)
    for expected in ("2 episodes", "8 transitions", "mean 4.00", "min 3.00", "max 5.00", "Discrete(2)", "1 truncated"):
        assert expected in summary


def test_demonstrations_rejects_empty_and_foreign_items():
    with pytest.raises(ValueError, match="at least one episode"):
        Demonstrations([])
    with pytest.raises(TypeError, match="episode 1: expected an Episode"):
        Demonstrations([make_episode(2), {"observations": []}])  # type: ignore[list-item]


def test_demonstrations_rejects_non_finite_with_location():
    bad = make_episode(4)
    bad.observations[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"episode 1, step 2: observations contain NaN"):
        Demonstrations([make_episode(3), bad])
    bad = make_episode(4)
    bad.rewards[3] = np.inf
    with pytest.raises(ValueError, match=r"episode 0, step 3: rewards contain NaN or inf"):
        Demonstrations([bad])


def test_demonstrations_rejects_inconsistent_shapes_without_spaces():
    with pytest.raises(ValueError, match=r"episode 1: observations have shape \(3,\) per step, episode 0 has \(4,\)"):
        Demonstrations([make_episode(2), make_episode(2, obs_dim=3)])


def test_dtypes_are_normalized_to_the_spaces():
    observations = np.zeros((4, 2), dtype=np.float64)
    discrete = Episode(observations, np.array([[0], [1], [1]], dtype=np.int32), np.array([1, 2, 3]), True, False)
    demos = Demonstrations([discrete], spaces.Box(-1, 1, (2,), dtype=np.float32), spaces.Discrete(2))
    episode = demos[0]
    assert episode.observations.dtype == np.float32
    assert episode.actions.dtype == np.int64 and episode.actions.shape == (3,)
    assert episode.rewards.dtype == np.float64
    continuous = Episode(observations, np.full((3, 1), 0.5), np.ones(3, dtype=np.float32), True, False)
    demos = Demonstrations([continuous], spaces.Box(-1, 1, (2,)), spaces.Box(-1, 1, (1,)))
    assert demos[0].actions.dtype == np.float32 and demos[0].rewards.dtype == np.float32
    image = Episode(np.full((2, 3, 3), 200, dtype=np.int64), np.zeros(1, dtype=np.int64), np.zeros(1), True, False)
    demos = Demonstrations([image], spaces.Box(0, 255, (3, 3), dtype=np.uint8), spaces.Discrete(2))
    assert demos[0].observations.dtype == np.uint8 and demos[0].observations[0, 0, 0] == 200


@pytest.mark.parametrize(
    "observation_space, action_space, episode, error, message",
    [
        (spaces.Box(-10, 10, (3,)), spaces.Discrete(2), make_episode(2), ValueError, r"observations have shape \(4,\)"),
        (spaces.Box(0, 255, (4,), np.uint8), spaces.Discrete(2), make_episode(2), TypeError, "float32 do not fit"),
        (
            spaces.Box(0, 255, (4,), np.uint8),
            spaces.Discrete(2),
            Episode(np.full((2, 4), 300), [0], [0.0], True, False),
            ValueError,
            "step 0: observation .* is outside",
        ),
        (spaces.Discrete(8), spaces.Discrete(2), make_episode(2), ValueError, "observations have shape"),
        (
            ANY4,
            spaces.Discrete(2),
            Episode(np.zeros((3, 4)), [0, 3], [0, 0], True, False),
            ValueError,
            r"^episode 0, step 1: action 3 is outside Discrete\(2\)",
        ),
        (
            ANY4,
            spaces.Discrete(2),
            Episode(np.zeros((3, 4)), [0.0, 1.0], [0, 0], True, False),
            TypeError,
            "actions must be integers",
        ),
        (
            ANY4,
            spaces.Box(-2, 2, (1,)),
            Episode(np.zeros((3, 4)), [[0.0], [2.5]], [0, 0], True, False),
            ValueError,
            r"step 1: action \[2.5\] is outside Box",
        ),
        (
            ANY4,
            spaces.MultiDiscrete([2, 3]),
            Episode(np.zeros((2, 4)), [[1, 3]], [0], True, False),
            ValueError,
            "step 0: action .* is outside MultiDiscrete",
        ),
        (ANY4, spaces.Dict({"a": spaces.Discrete(2)}), make_episode(2), TypeError, "not supported"),
    ],
)
def test_validate_reports_mismatches(observation_space, action_space, episode, error, message):
    with pytest.raises(error, match=message):
        Demonstrations([episode]).validate(observation_space, action_space)
    with pytest.raises(error, match=message):
        Demonstrations([episode], observation_space, action_space)


def test_validate_accepts_fitting_spaces():
    demos = Demonstrations([make_episode(3), make_episode(2)])
    demos.validate(spaces.Box(-np.inf, np.inf, (4,)), spaces.Discrete(2))
    multi = Demonstrations([Episode(np.zeros((2, 4)), [[1, 2]], [0.0], True, False)])
    multi.validate(spaces.Box(-1, 1, (4,)), spaces.MultiDiscrete([2, 3]))
    binary = Demonstrations([Episode(np.zeros((2, 4)), [[True, False, True]], [0.0], True, False)])
    binary.validate(spaces.Box(-1, 1, (4,)), spaces.MultiBinary(3))


@settings(max_examples=40, deadline=None)
@given(episode_lists())
def test_to_transitions_matches_episodes(episodes):
    demos = Demonstrations(episodes)
    transitions = demos.to_transitions()
    assert len(transitions.observations) == demos.n_transitions == sum(len(e) for e in episodes)
    start = 0
    for episode in episodes:
        end = start + len(episode)
        np.testing.assert_array_equal(transitions.observations[start:end], episode.observations[:-1])
        np.testing.assert_array_equal(transitions.next_observations[start:end], episode.observations[1:])
        np.testing.assert_array_equal(transitions.actions[start:end], episode.actions)
        np.testing.assert_allclose(transitions.rewards[start:end], episode.rewards.astype(np.float32))
        assert transitions.episode_ends[start:end].tolist() == [False] * (len(episode) - 1) + [True]
        assert transitions.terminations[start:end].tolist() == [False] * (len(episode) - 1) + [episode.terminated]
        start = end
    assert np.isclose(demos.episode_returns.sum(), sum(float(e.rewards.sum()) for e in episodes))


# ---------------------------------------------------------------------------------------------------------------------
# record_demonstrations
# ---------------------------------------------------------------------------------------------------------------------


def angle_rule(observation: np.ndarray) -> int:
    return int(observation[2] > 0)


def assert_same_demonstrations(first: Demonstrations, second: Demonstrations) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        for name in ("observations", "actions", "rewards"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
            assert getattr(a, name).dtype == getattr(b, name).dtype
        assert (a.terminated, a.truncated) == (b.terminated, b.truncated)


def test_seeded_recording_is_reproducible():
    first = record_demonstrations(angle_rule, "CartPole-v1", n_episodes=3, seed=7)
    second = record_demonstrations(angle_rule, "CartPole-v1", n_episodes=3, seed=7)
    assert_same_demonstrations(first, second)
    # Episode i is reset with seed + i: a shorter recording is a prefix of a longer one
    assert_same_demonstrations(record_demonstrations(angle_rule, "CartPole-v1", n_episodes=2, seed=8), first[1:])
    other = record_demonstrations(angle_rule, "CartPole-v1", n_episodes=1, seed=99)
    assert not np.array_equal(other[0].observations[0], first[0].observations[0])


def test_recording_layout_spaces_and_ends():
    demos = record_demonstrations("CartPole-v1", gym.make("CartPole-v1", max_episode_steps=30), n_episodes=2, seed=0)
    assert isinstance(demos.observation_space, spaces.Box) and demos.action_space == spaces.Discrete(2)
    for episode in demos:
        assert len(episode) == 30 and episode.truncated and not episode.terminated
        assert episode.observations.shape == (31, 4) and episode.observations.dtype == np.float32
        assert episode.actions.dtype == np.int64 and episode.rewards.shape == (30,)
        # the stored actions are what the expert does on the stored observations
        assert episode.actions.tolist() == [int(o[2] + 0.5 * o[3] > 0) for o in episode.observations[:-1]]
    falling = record_demonstrations(lambda observation: 0, "CartPole-v1", n_episodes=1, seed=0)
    assert falling[0].terminated and not falling[0].truncated and len(falling[0]) < 30


def test_recording_an_sb3_model_matches_its_predictions():
    model = DQN("MlpPolicy", "CartPole-v1", buffer_size=100, seed=0, device="cpu")
    demos = record_demonstrations(model, "CartPole-v1", n_episodes=1, seed=0)
    predicted, _ = model.predict(demos[0].observations[:-1], deterministic=True)
    np.testing.assert_array_equal(demos[0].actions, predicted)


class CountingRecurrentModel:
    """Stands in for RecurrentPPO: returns the number of steps since the episode start as its state."""

    def __init__(self) -> None:
        self.states: list[int] = []

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        state = 0 if episode_start[0] else state + 1
        self.states.append(state)
        return np.array(state % 2), state


def test_recording_carries_the_state_of_recurrent_models():
    model = CountingRecurrentModel()
    demos = record_demonstrations(model, gym.make("CartPole-v1", max_episode_steps=5), n_episodes=2, seed=0)
    assert model.states == [0, 1, 2, 3, 4] * 2
    assert demos[0].actions.tolist() == [0, 1, 0, 1, 0]


def test_recording_with_box_actions_and_a_progress_bar():
    demos = record_demonstrations(
        lambda observation: np.array([-observation[2]]),  # float64 and beyond the bounds: clipped to [-2, 2]
        gym.make("Pendulum-v1", max_episode_steps=10),
        n_episodes=2,
        seed=0,
        progress_bar=True,
    )
    assert demos[0].actions.shape == (10, 1) and demos[0].actions.dtype == np.float32
    np.testing.assert_allclose(demos[0].actions[:, 0], np.clip(-demos[0].observations[:-1, 2], -2, 2))
    assert all(episode.truncated for episode in demos)


def test_recording_leaves_a_given_env_open():
    env = gym.make("CartPole-v1", max_episode_steps=3)
    record_demonstrations(angle_rule, env, n_episodes=1, seed=0)
    env.reset(seed=0)  # still usable


@pytest.mark.parametrize(
    "expert, env, n_episodes, error, message",
    [
        (angle_rule, 3, 1, TypeError, "an environment id, a gymnasium.Env or a VecEnv, got int"),
        (angle_rule, "CartPole-v1", 0, ValueError, "positive integer"),
        ("Pong-v5", "CartPole-v1", 1, ValueError, "No built-in expert for 'Pong-v5'"),
        (42, "CartPole-v1", 1, TypeError, "expert must be"),
        (lambda observation: 3, "CartPole-v1", 1, ValueError, "episode 0, step 0: the environment rejected"),
    ],
)
def test_recording_rejects_bad_arguments(expert, env, n_episodes, error, message):
    with pytest.raises(error, match=message):
        record_demonstrations(expert, env, n_episodes=n_episodes, seed=0)
