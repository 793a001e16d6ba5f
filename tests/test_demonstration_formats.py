"""save_demonstrations / load_demonstrations: every format in and out, and every kind of bad input."""

import subprocess
import sys
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from demonstration_helpers import assert_same_episodes, episode_lists
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_util import make_vec_env

from sb3_dqfd import DQfD
from sb3_dqfd.common.demonstrations import (
    NPZ_FORMAT,
    Demonstrations,
    Episode,
    load_demonstrations,
    record_demonstrations,
    save_demonstrations,
)


@pytest.fixture(scope="module")
def cartpole_demos() -> Demonstrations:
    # Short time limit: truncated episodes; a falling expert: terminated ones
    truncated = record_demonstrations("CartPole-v1", gym.make("CartPole-v1", max_episode_steps=12), n_episodes=2, seed=0)
    terminated = record_demonstrations(lambda observation: 0, "CartPole-v1", n_episodes=2, seed=5)
    return Demonstrations([*truncated, *terminated], truncated.observation_space, truncated.action_space)


# ---------------------------------------------------------------------------------------------------------------------
# Our .npz
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env_id, expert",
    [
        ("CartPole-v1", "CartPole-v1"),
        ("Pendulum-v1", lambda observation: np.array([observation[0]])),  # Box actions
        ("FrozenLake-v1", lambda observation: 1),  # Discrete observations
    ],
)
def test_npz_round_trip(tmp_path, env_id, expert):
    demos = record_demonstrations(expert, gym.make(env_id, max_episode_steps=20), n_episodes=3, seed=0)
    path = tmp_path / "demos.npz"
    save_demonstrations(demos, path)
    with np.load(path, allow_pickle=False) as archive:  # plain arrays only
        assert str(archive["format"]) == NPZ_FORMAT
    loaded = load_demonstrations(path)
    assert_same_episodes(demos, loaded)
    assert loaded.observation_space == demos.observation_space and loaded.action_space == demos.action_space
    assert_same_episodes(demos, load_demonstrations(str(path), env=env_id))


@pytest.mark.parametrize(
    "observation_space, action_space, actions",
    [
        (spaces.Box(0, 255, (2, 3), np.uint8), spaces.MultiDiscrete([3, 4], start=[1, 0]), [[1, 3], [3, 0]]),
        (spaces.MultiBinary(3), spaces.MultiBinary([2, 2]), [[[0, 1], [1, 1]], [[0, 0], [1, 0]]]),
        (spaces.Discrete(5, start=-2), spaces.Discrete(3, start=1), [1, 3]),
    ],
)
def test_npz_round_trip_of_other_spaces(tmp_path, observation_space, action_space, actions):
    observations = np.stack([observation_space.sample() for _ in range(3)])
    demos = Demonstrations([Episode(observations, actions, [1.0, 2.0], False, True)], observation_space, action_space)
    save_demonstrations(demos, tmp_path / "demos")  # written at that path exactly, no suffix added
    loaded = load_demonstrations(tmp_path / "demos")
    assert loaded.observation_space == observation_space and loaded.action_space == action_space
    assert_same_episodes(demos, loaded)


def test_save_rejects_other_objects(tmp_path):
    with pytest.raises(TypeError, match="takes a Demonstrations"):
        save_demonstrations([{"observations": []}], tmp_path / "x.npz")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------------
# Stable-Baselines2 ExpertDataset
# ---------------------------------------------------------------------------------------------------------------------


def to_sb2(demos: Demonstrations) -> dict[str, np.ndarray]:
    """The arrays SB2's ``generate_expert_traj`` writes: no observation after each episode's last step."""
    starts = [np.arange(len(episode)) == 0 for episode in demos]
    return {
        "obs": np.concatenate([episode.observations[:-1] for episode in demos]),
        "actions": np.concatenate([episode.actions for episode in demos]).reshape(demos.n_transitions, -1),
        "rewards": np.concatenate([episode.rewards for episode in demos]),
        "episode_returns": demos.episode_returns,
        "episode_starts": np.concatenate(starts),
    }


def as_read_from_sb2(episode: Episode) -> Episode:
    """
    What an SB2 file keeps of an episode: no final observation, so a terminated episode repeats its last one (never
    bootstrapped from) and a truncated one loses its last step (it bootstraps from the observation of that step).
    """
    observations = episode.observations[:-1]
    if episode.terminated:
        return Episode(np.concatenate([observations, observations[-1:]]), episode.actions, episode.rewards, True, False)
    return Episode(observations, episode.actions[:-1], episode.rewards[:-1], False, True)


def ended(episode: Episode, how: str) -> Episode:
    return replace(episode, terminated=how == "terminated", truncated=how == "truncated")


def test_hand_built_sb2_dataset(tmp_path):
    # Two episodes of 4 and 3 steps: obs 0..3 and 4..6, actions 10.., rewards 100..
    path = tmp_path / "expert_cartpole.npz"
    np.savez(
        path,
        obs=np.arange(7, dtype=np.float64).reshape(7, 1),
        actions=np.array([[0], [1], [0], [1], [1], [0], [1]]),
        rewards=100.0 + np.arange(7),
        episode_returns=np.array([406.0, 315.0]),
        episode_starts=np.array([True, False, False, False, True, False, False]),
    )
    with pytest.warns(UserWarning, match="2 taken as terminated .*no env given"):
        demos = load_demonstrations(path)
    transitions = demos.to_transitions()
    np.testing.assert_array_equal(transitions.observations[:, 0], [0, 1, 2, 3, 4, 5, 6])
    # A terminated end repeats its last observation: never read, nothing bootstraps from a terminal transition
    np.testing.assert_array_equal(transitions.next_observations[:, 0], [1, 2, 3, 3, 5, 6, 6])  # never across episodes
    np.testing.assert_array_equal(transitions.actions, [0, 1, 0, 1, 1, 0, 1])  # the [N, 1] column became [N]
    np.testing.assert_array_equal(transitions.rewards, 100 + np.arange(7))
    assert transitions.terminations.tolist() == transitions.episode_ends.tolist() == [0, 0, 0, 1, 0, 0, 1]
    np.testing.assert_array_equal(demos.episode_returns, [406.0, 315.0])


def test_sb2_keeps_the_last_reward_of_terminated_episodes(tmp_path):
    # A lander earns its landing bonus on the last step: the loaded returns must be the ones the file records
    returns, lengths = np.array([297.4, 260.9, 254.6]), [5, 4, 6]
    rewards = [
        np.append(np.full(length - 1, (value - 100) / (length - 1)), 100.0)
        for value, length in zip(returns, lengths, strict=True)
    ]
    path = tmp_path / "lander.npz"
    np.savez(
        path,
        obs=np.zeros((15, 8), dtype=np.float32),
        actions=np.zeros((15, 1), dtype=np.int64),
        rewards=np.concatenate(rewards),
        episode_returns=returns,
        episode_starts=np.concatenate([np.arange(length) == 0 for length in lengths]),
    )
    with pytest.warns(UserWarning, match="3 taken as terminated .*their length is not the env's time limit 1000"):
        demos = load_demonstrations(path, env="LunarLander-v3")
    np.testing.assert_allclose(demos.episode_returns, returns)
    assert demos.episode_lengths.tolist() == lengths and all(episode.terminated for episode in demos)


@pytest.mark.parametrize(
    "make_env",
    [
        lambda: gym.make("CartPole-v1", max_episode_steps=12),
        lambda: make_vec_env("CartPole-v1", n_envs=1, env_kwargs={"max_episode_steps": 12}),
    ],
    ids=["Env", "VecEnv"],
)
def test_sb2_round_trip_from_a_recording(tmp_path, cartpole_demos, make_env):
    # The first two episodes were cut by the 12-step time limit, the other two terminated (the pole fell)
    path = tmp_path / "sb2.npz"
    np.savez(path, **to_sb2(cartpole_demos))
    with pytest.warns(UserWarning, match=r"2 taken as terminated .*, 2 taken as truncated at the env's time limit 12"):
        loaded = load_demonstrations(path, env=make_env())
    assert_same_episodes([as_read_from_sb2(episode) for episode in cartpole_demos], loaded)
    assert loaded.action_space == spaces.Discrete(2)
    np.testing.assert_array_equal(loaded.episode_returns[2:], cartpole_demos.episode_returns[2:])


@pytest.mark.parametrize("how", ["terminated", "truncated"])
def test_sb2_episode_end_argument_decides_every_end(tmp_path, cartpole_demos, how):
    path = tmp_path / "sb2.npz"
    np.savez(path, **to_sb2(cartpole_demos))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is assumed, so nothing to warn about
        loaded = load_demonstrations(path, env=gym.make("CartPole-v1", max_episode_steps=12), sb2_episode_end=how)
    assert_same_episodes([as_read_from_sb2(ended(episode, how)) for episode in cartpole_demos], loaded)
    with pytest.raises(ValueError, match="sb2_episode_end must be 'auto', 'terminated' or 'truncated', got 'timeout'"):
        load_demonstrations(path, sb2_episode_end="timeout")


def test_sb2_episode_whose_rewards_do_not_add_up_is_taken_as_cut(tmp_path, cartpole_demos):
    data = to_sb2(cartpole_demos)
    data["episode_returns"][3] += 5.0  # the file lost steps of episode 3: it did not end where the file says
    np.savez(tmp_path / "sb2.npz", **data)
    with pytest.warns(UserWarning, match=r"1 taken as cut short, so truncated .*episode_returns \(episodes \[3\]\)"):
        loaded = load_demonstrations(tmp_path / "sb2.npz", sb2_episode_end="terminated")
    assert_same_episodes([as_read_from_sb2(ended(episode, "terminated")) for episode in cartpole_demos[:3]], loaded[:3])
    assert_same_episodes([as_read_from_sb2(ended(cartpole_demos[3], "truncated"))], loaded[3:])


def test_sb2_returns_are_compared_within_float_tolerance(tmp_path):
    # float32 rewards of a few hundred steps, the return summed in float64 one step at a time (as SB2 did)
    rewards = np.random.default_rng(0).normal(0.0, 100.0, 300)
    np.savez(
        tmp_path / "sb2.npz",
        obs=np.zeros((300, 2)),
        actions=np.zeros((300, 1), dtype=np.int64),
        rewards=rewards.astype(np.float32),
        episode_returns=np.array([sum(rewards.tolist())]),
        episode_starts=np.arange(300) == 0,
    )
    with pytest.warns(UserWarning) as record:
        demos = load_demonstrations(tmp_path / "sb2.npz")
    assert demos[0].terminated and "cut short" not in str(record[0].message)


def test_sb2_one_step_episodes(tmp_path):
    path = tmp_path / "sb2.npz"
    np.savez(
        path,
        obs=np.zeros((4, 2)),
        actions=np.zeros((4, 1), dtype=np.int64),
        rewards=np.ones(4),
        episode_returns=np.array([1.0, 3.0]),
        episode_starts=np.array([True, True, False, False]),
    )
    with pytest.warns(UserWarning, match="2 taken as terminated"):
        demos = load_demonstrations(path)
    assert demos.episode_lengths.tolist() == [1, 3]  # a terminated step needs no next observation
    with pytest.warns(UserWarning, match="1 one-step episodes were dropped entirely"):
        demos = load_demonstrations(path, sb2_episode_end="truncated")
    assert len(demos) == 1 and len(demos[0]) == 2


# ---------------------------------------------------------------------------------------------------------------------
# Minari
# ---------------------------------------------------------------------------------------------------------------------


def test_minari_dataset_loads(tmp_path, monkeypatch, cartpole_demos):
    minari = pytest.importorskip("minari")
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    buffers = [
        EpisodeBuffer(
            id=index,
            observations=episode.observations,
            actions=episode.actions,
            rewards=list(episode.rewards),
            terminations=[False] * (len(episode) - 1) + [episode.terminated],
            truncations=[False] * (len(episode) - 1) + [episode.truncated],
        )
        for index, episode in enumerate(cartpole_demos)
    ]
    with pytest.warns(UserWarning):  # minari asks for author, description, ...
        dataset = minari.create_dataset_from_buffers("cartpole/expert-v0", buffers, env="CartPole-v1")
    from_object = load_demonstrations(dataset)
    from_id = load_demonstrations("cartpole/expert-v0", env=gym.make("CartPole-v1"))
    for loaded in (from_object, from_id):
        assert_same_episodes(cartpole_demos, loaded)
        assert loaded.action_space == spaces.Discrete(2)


def test_missing_minari_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError) as caught:
        load_demonstrations("D4RL/door/human-v2")
    message = str(caught.value)
    assert message.startswith(f"D4RL/door/human-v2: no such file, nor a local Minari dataset in {tmp_path}")
    assert "never downloads" in message and "minari download D4RL/door/human-v2" in message
    assert "download=True" not in message  # Minari's advice contradicts what this package does


# ---------------------------------------------------------------------------------------------------------------------
# imitation trajectories (duck-typed) and episode dicts
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class Trajectory:
    """The fields of imitation's ``Trajectory``."""

    obs: np.ndarray
    acts: np.ndarray
    infos: list[dict[str, Any]] | None
    terminal: bool


@dataclass
class TrajectoryWithRew(Trajectory):
    """The fields of imitation's ``TrajectoryWithRew``."""

    rews: np.ndarray = field(default_factory=lambda: np.zeros(0))


def as_trajectory(episode: Episode, infos: list[dict[str, Any]] | None) -> TrajectoryWithRew:
    return TrajectoryWithRew(episode.observations, episode.actions, infos, True, episode.rewards)


def test_imitation_trajectories_with_truncation_infos(cartpole_demos):
    trajectories = [
        as_trajectory(episode, [{}] * (len(episode) - 1) + [{"TimeLimit.truncated": episode.truncated}])
        for episode in cartpole_demos
    ]
    assert_same_episodes(cartpole_demos, load_demonstrations(trajectories, env="CartPole-v1"))
    trajectories[0].infos = [{"truncated": True}] * len(cartpole_demos[0])  # the other key gymnasium uses
    assert load_demonstrations(trajectories)[0].truncated


def test_imitation_trajectories_without_infos_warn_about_truncation(cartpole_demos):
    trajectories = [as_trajectory(episode, None) for episode in cartpole_demos]
    with pytest.warns(UserWarning, match="4 of 4 had no 'TimeLimit.truncated'"):
        demos = load_demonstrations(trajectories)
    assert all(episode.terminated for episode in demos)  # the truncations of the first two are lost, as warned
    trajectories[0].terminal = False  # a trajectory cut short bootstraps
    with pytest.warns(UserWarning, match="3 of 4"):
        assert load_demonstrations(trajectories)[0].truncated


def test_imitation_trajectory_without_rewards_is_refused(cartpole_demos):
    episode = cartpole_demos[0]
    with pytest.raises(ValueError, match="trajectory 0 has no rewards"):
        load_demonstrations([Trajectory(episode.observations, episode.actions, None, True)])


def test_episode_dicts_and_episode_lists(cartpole_demos):
    dicts = [
        {
            "observations": episode.observations.tolist(),
            "actions": episode.actions.tolist(),
            "rewards": episode.rewards.tolist(),
            "terminated": episode.terminated,
            "truncated": episode.truncated,
        }
        for episode in cartpole_demos
    ]
    assert_same_episodes(cartpole_demos, load_demonstrations(dicts, env="CartPole-v1"))
    assert_same_episodes(cartpole_demos, load_demonstrations(list(cartpole_demos)))


def test_demonstrations_are_returned_validated(cartpole_demos):
    unlabelled = Demonstrations(cartpole_demos.episodes)
    loaded = load_demonstrations(unlabelled, env=make_vec_env("CartPole-v1", n_envs=2))
    assert loaded.action_space == spaces.Discrete(2)
    assert_same_episodes(cartpole_demos, loaded)
    with pytest.raises(ValueError, match=r"observations have shape \(4,\) per step"):
        load_demonstrations(unlabelled, env="MountainCar-v0")


# ---------------------------------------------------------------------------------------------------------------------
# Bad input: each case raises ValueError/TypeError (FileNotFoundError for a missing path) saying what and where
# ---------------------------------------------------------------------------------------------------------------------


def npz_file(**arrays: Any):
    def write(tmp_path: Path) -> Path:
        np.savez(tmp_path / "bad.npz", **{key: value for key, value in arrays.items() if value is not None})
        return tmp_path / "bad.npz"

    return write


def our_npz(**changes: Any):
    arrays: dict[str, Any] = {
        "format": np.array(NPZ_FORMAT),
        "format_version": np.array(1),
        "observations": np.zeros((5, 2)),
        "actions": np.zeros(3, dtype=np.int64),
        "rewards": np.zeros(3),
        "episode_lengths": np.array([1, 2]),
        "terminated": np.array([True, False]),
        "truncated": np.array([False, True]),
    }
    arrays |= changes
    return npz_file(**arrays)


SB2 = {
    "obs": np.zeros((4, 4)),
    "actions": np.zeros((4, 1), dtype=np.int64),
    "rewards": np.ones(4),
    "episode_returns": np.array([4.0]),
    "episode_starts": np.array([True, False, False, False]),
}


def episode_dict(n_steps: int = 3, **changes: Any) -> dict[str, Any]:
    episode = {
        "observations": np.zeros((n_steps + 1, 4)),
        "actions": np.zeros(n_steps, dtype=np.int64),
        "rewards": np.ones(n_steps),
        "terminated": True,
        "truncated": False,
    }
    return {key: value for key, value in (episode | changes).items() if value is not None}


def with_nan(array: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    array = array.astype(np.float64)
    array[index] = np.nan
    return array


def text_file(tmp_path: Path) -> Path:
    (tmp_path / "notes.npz").write_text("not an archive")
    return tmp_path / "notes.npz"


def plain_zip(tmp_path: Path) -> Path:
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as archive:
        archive.writestr("obs", "not an array")
    return tmp_path / "plain.zip"


def corrupted_npz(tmp_path: Path) -> Path:
    np.savez(tmp_path / "corrupted.npz", obs=np.arange(1000.0))
    content = bytearray((tmp_path / "corrupted.npz").read_bytes())
    content[200:260] = b"x" * 60  # inside the compressed member: the CRC check fails
    (tmp_path / "corrupted.npz").write_bytes(bytes(content))
    return tmp_path / "corrupted.npz"


def npy_file(tmp_path: Path) -> Path:
    np.save(tmp_path / "array.npy", np.zeros(3))
    return tmp_path / "array.npy"


BAD_INPUTS = [
    pytest.param(our_npz(rewards=None), None, ValueError, r"bad.npz: missing key\(s\) \['rewards'\]", id="npz missing key"),
    pytest.param(
        npz_file(**(SB2 | {"episode_starts": None})),
        None,
        ValueError,
        r"missing key\(s\) \['episode_starts'\] for the Stable-Baselines2",
        id="SB2 missing key",
    ),
    pytest.param(
        [episode_dict(truncated=None)], None, ValueError, r"episode 0: missing key\(s\) \['truncated'\]", id="dict missing key"
    ),
    pytest.param(
        [episode_dict(), episode_dict(actions=np.zeros(5, dtype=np.int64))],
        None,
        ValueError,
        "episode dicts: episode 1: An episode of 5 actions needs 6 observations",
        id="obs/actions lengths (dict)",
    ),
    pytest.param(
        npz_file(**(SB2 | {"actions": np.zeros((3, 1), dtype=np.int64)})),
        None,
        ValueError,
        "key 'actions' has 3 entries but 'obs' has 4",
        id="obs/actions lengths (SB2)",
    ),
    pytest.param(
        our_npz(actions=np.zeros(4, dtype=np.int64)),
        None,
        ValueError,
        "key 'actions' has 4 entries, episode_lengths imply 3",
        id="obs/actions lengths (npz)",
    ),
    pytest.param(
        [episode_dict(observations=np.zeros((4, 3)))],
        "CartPole-v1",
        ValueError,
        r"episode 0: observations have shape \(3,\) per step, but Box",
        id="obs shape vs env",
    ),
    pytest.param(
        [episode_dict(observations=np.full(4, 0.5), actions=np.zeros(3, dtype=np.int64))],
        "FrozenLake-v1",
        TypeError,
        "episode 0: observations must be integers for Discrete",
        id="obs dtype vs env",
    ),
    pytest.param(
        [episode_dict(), episode_dict(actions=np.array([0, 1, 3]))],
        "CartPole-v1",
        ValueError,
        r"episode 1, step 2: action 3 is outside Discrete\(2\)",
        id="action outside Discrete(2)",
    ),
    pytest.param(
        [episode_dict(actions=np.array([0.0, 1.0, 0.5]))],
        "CartPole-v1",
        TypeError,
        "episode 0: actions must be integers for Discrete",
        id="float action for Discrete",
    ),
    pytest.param(
        [episode_dict(observations=np.zeros((4, 3)), actions=np.full((3, 1), 3.0))],
        "Pendulum-v1",
        ValueError,
        r"episode 0, step 0: action \[3.0\] is outside Box",
        id="action outside Box",
    ),
    pytest.param(
        [episode_dict(), episode_dict(observations=with_nan(np.zeros((4, 4)), (2, 1)))],
        None,
        ValueError,
        "episode dicts: episode 1, step 2: observations contain NaN",
        id="NaN observation",
    ),
    pytest.param(
        our_npz(rewards=np.array([0.0, 0.0, np.inf])),
        None,
        ValueError,
        r"bad.npz: episode 1, step 1: rewards contain NaN or inf",
        id="inf reward (npz)",
    ),
    pytest.param(
        npz_file(**(SB2 | {"rewards": with_nan(np.ones(4), (1,))})),
        None,
        ValueError,
        "episode 0, step 1: rewards contain NaN",
        id="NaN reward (SB2)",
    ),
    pytest.param([], None, ValueError, "the sequence is empty", id="empty list"),
    pytest.param(
        npz_file(**{key: value[:0] for key, value in SB2.items()}), None, ValueError, r"the dataset is empty", id="empty SB2"
    ),
    pytest.param(
        our_npz(episode_lengths=np.array([0, 3])), None, ValueError, "episode 0 has length 0", id="episode of length 0 (npz)"
    ),
    pytest.param(
        [episode_dict(n_steps=0)],
        None,
        ValueError,
        "episode 0: An episode must hold at least one transition",
        id="episode of length 0 (dict)",
    ),
    pytest.param(text_file, None, ValueError, "notes.npz: not a .npz archive", id="not an archive"),
    pytest.param(npy_file, None, ValueError, "array.npy: not a .npz archive", id="a .npy file"),
    pytest.param(plain_zip, None, ValueError, "plain.zip: member 'obs' of the archive is not a numpy array", id="plain zip"),
    pytest.param(corrupted_npz, None, ValueError, "corrupted.npz: the .npz archive cannot be read", id="corrupted archive"),
    pytest.param(
        npz_file(foo=np.zeros(3)), None, ValueError, r"unknown .npz layout with keys \['foo'\]", id="unknown npz layout"
    ),
    pytest.param(
        our_npz(format=np.array("other.tool")),
        None,
        ValueError,
        "unknown format marker 'other.tool'",
        id="unknown format marker",
    ),
    pytest.param(
        our_npz(format_version=np.array(99)),
        None,
        ValueError,
        "format_version 99 is not supported",
        id="future format version",
    ),
    pytest.param(
        npz_file(obs=np.array([{"a": 1}, None], dtype=object)),
        None,
        ValueError,
        "key 'obs' holds Python objects that would need pickle",
        id="needs pickle",
    ),
    pytest.param(42, None, TypeError, "unsupported source int", id="unknown source type"),
    pytest.param([1, 2], None, TypeError, "unknown sequence item int", id="unknown sequence items"),
    pytest.param([episode_dict(), "episode"], None, TypeError, "item 1 is a str", id="mixed sequence"),
    pytest.param([episode_dict()], 3.5, TypeError, "env must be an environment id", id="bad env"),
    pytest.param([episode_dict(truncated=True)], None, ValueError, "both termination and truncation", id="both ends (dict)"),
    pytest.param(
        [episode_dict(observations=[[0.0], [0.0, 1.0], [0.0], [0.0]])],
        None,
        ValueError,
        "episode 0: observations cannot be stacked",
        id="ragged observations (dict)",
    ),
]


@pytest.mark.filterwarnings("ignore:.*Stable-Baselines2 datasets hold no observation")  # SB2 cases warn before failing
@pytest.mark.parametrize("source, env, error, message", BAD_INPUTS)
def test_bad_input_is_refused_with_a_located_message(tmp_path, source, env, error, message):
    if callable(source):
        source = source(tmp_path)
    with pytest.raises(error, match=message) as caught:
        load_demonstrations(source, env=env)
    assert type(caught.value) in (ValueError, TypeError)  # not a KeyError/IndexError subclass from numpy


def test_warnings_are_one_line_and_point_at_the_users_call(tmp_path, cartpole_demos):
    np.savez(tmp_path / "sb2.npz", **to_sb2(cartpole_demos))
    trajectories = [as_trajectory(episode, None) for episode in cartpole_demos]
    calls = {
        "SB2": lambda: load_demonstrations(tmp_path / "sb2.npz"),
        "imitation": lambda: load_demonstrations(trajectories),
        "through DQfD": lambda: DQfD("MlpPolicy", "CartPole-v1", demonstrations=tmp_path / "sb2.npz", device="cpu"),
    }
    for name, call in calls.items():
        with pytest.warns(UserWarning) as record:
            call()
        ours = [
            warning for warning in record if "Stable-Baselines2" in str(warning.message) or "imitation" in str(warning.message)
        ]
        assert len(ours) == 1, name
        assert "\n" not in str(ours[0].message), name
        assert ours[0].filename == __file__, f"{name}: the warning points at {ours[0].filename}:{ours[0].lineno}"


def test_missing_path(tmp_path):
    # Caught as FileNotFoundError (like open) and as ValueError (like every other bad input)
    for error_class in (FileNotFoundError, ValueError):
        with pytest.raises(error_class, match=r"missing\.npz: no such file"):
            load_demonstrations(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="not a file"):
        load_demonstrations(tmp_path)


def test_a_failed_load_changes_nothing(tmp_path, cartpole_demos):
    path = tmp_path / "demos.npz"
    save_demonstrations(cartpole_demos, path)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        load_demonstrations(path, env="MountainCar-v0")
    assert path.read_bytes() == before
    assert zipfile.is_zipfile(path)
    assert_same_episodes(cartpole_demos, load_demonstrations(path))


# ---------------------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------------------


def episode_dicts() -> st.SearchStrategy[list[dict[str, Any]]]:
    """Lists of episode dicts (the keys of :class:`Episode`), drawn as :func:`episode_lists` draws episodes."""
    return episode_lists(obs_dim=3, n_actions=4).map(lambda episodes: [asdict(episode) for episode in episodes])


SPACES = (spaces.Box(-5, 5, (3,)), spaces.Discrete(4))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dicts=episode_dicts())
def test_episode_dicts_survive_save_and_load(tmp_path, dicts):
    demos = load_demonstrations(dicts)
    path = tmp_path / "property.npz"
    save_demonstrations(Demonstrations(demos.episodes, *SPACES), path)
    loaded = load_demonstrations(path)
    assert_same_episodes(demos, loaded)
    assert (loaded.observation_space, loaded.action_space) == SPACES
    for episode, source in zip(loaded, dicts, strict=True):
        np.testing.assert_array_equal(episode.observations, source["observations"])
        assert episode.terminated == source["terminated"] and episode.truncated == source["truncated"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dicts=episode_dicts())
def test_sb2_conversion_keeps_terminated_ends_and_drops_truncated_last_steps(tmp_path, dicts):
    demos = load_demonstrations(dicts)
    path = tmp_path / "sb2.npz"
    np.savez(path, **to_sb2(demos))
    # Without an env no time limit is known: every end is a termination, every step and reward is kept
    with pytest.warns(UserWarning, match=f"{len(demos)} taken as terminated"):
        loaded = load_demonstrations(path)
    assert_same_episodes([as_read_from_sb2(ended(episode, "terminated")) for episode in demos], loaded)
    np.testing.assert_allclose(loaded.episode_returns, demos.episode_returns)
    kept = [as_read_from_sb2(ended(episode, "truncated")) for episode in demos if len(episode) >= 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # about the one-step episodes dropped, if any
        if not kept:
            with pytest.raises(ValueError, match="no episode of at least 2 steps"):
                load_demonstrations(path, sb2_episode_end="truncated")
            return
        assert_same_episodes(kept, load_demonstrations(path, sb2_episode_end="truncated"))


def test_example_runs_every_format():
    example = Path(__file__).parent.parent / "examples" / "record_and_load.py"
    result = subprocess.run(
        [sys.executable, str(example), "--seed", "3", "--episodes", "2", "--max-episode-steps", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.count("same = True") == 4 and "False" not in result.stdout, result.stdout
