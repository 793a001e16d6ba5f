"""Demonstrations with Dict observation spaces: Episode, Demonstrations, transitions, our .npz, Minari and recording."""

import json
import re
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from sb3_dqfd.common.demonstrations import (
    NPZ_FORMAT,
    Demonstrations,
    Episode,
    load_demonstrations,
    record_demonstrations,
    save_demonstrations,
)

IMAGE = spaces.Box(0, 255, (8, 8, 1), np.uint8)
VECTOR = spaces.Box(-1, 1, (3,), np.float32)
DICT_SPACE = spaces.Dict({"image": IMAGE, "vector": VECTOR})
TIME_LIMIT = 5


class DictEnv(gym.Env):
    """
    Observations ``{"image": [8, 8, 1] uint8, "vector": [3] float32}``, actions Discrete(2) (left, right).

    Each episode draws a start value; the image holds ``start + t``, the vector ``[position / 4, t / 8, start % 2]``
    (exact in float32). The episode terminates when the position reaches -3 or 3.
    """

    observation_space = DICT_SPACE
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        self.start, self.t, self.position = int(self.np_random.integers(0, 200)), 0, 0
        return self._observation(), {}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        self.t += 1
        self.position += 1 if int(action) == 1 else -1
        return self._observation(), float(self.t), abs(self.position) >= 3, False, {}

    def _observation(self) -> dict[str, np.ndarray]:
        return {
            "image": np.full((8, 8, 1), self.start + self.t, dtype=np.uint8),
            "vector": np.array([self.position / 4, self.t / 8, self.start % 2], dtype=np.float32),
        }


def make_dict_env() -> gym.Env:
    return TimeLimit(DictEnv(), TIME_LIMIT)


def dict_expert(observation: dict[str, np.ndarray]) -> int:
    """An even start always goes right (terminated at step 3); an odd one zigzags to the time limit (truncated)."""
    assert isinstance(observation, dict) and observation["image"].shape == (8, 8, 1) and observation["vector"].shape == (3,)
    return int(observation["vector"][2] == 0 or round(float(observation["vector"][1]) * 8) % 2 == 0)


def replay(episodes: list[Episode], seed: int) -> None:
    """Play the episodes again in one env (seeded at its first reset only, as a VecEnv does) and compare every step."""
    env = make_dict_env()
    for index, episode in enumerate(episodes):
        observation, _ = env.reset(seed=seed if index == 0 else None)
        observations, rewards, terminated, truncated = [observation], [], False, False
        for action in episode.actions:
            observation, reward, terminated, truncated, _ = env.step(action)
            observations.append(observation)
            rewards.append(reward)
        assert isinstance(episode.observations, dict) and list(episode.observations) == ["image", "vector"]
        for key in ("image", "vector"):
            np.testing.assert_array_equal(episode.observations[key], np.stack([step[key] for step in observations]))
        np.testing.assert_array_equal(episode.rewards, rewards)
        assert (episode.terminated, episode.truncated) == (terminated, truncated and not terminated)


def dict_episode(n_steps: int = 2, offset: int = 0, terminated: bool = True, **changes: Any) -> Episode:
    """An episode of distinct values; ``changes`` replaces (or, as None, removes) observation keys."""
    observations: dict[str, Any] = {
        "image": (offset + np.arange(n_steps + 1)).reshape(-1, 1, 1, 1).repeat(8, 1).repeat(8, 2),  # int64
        "vector": np.linspace(-1, 1, (n_steps + 1) * 3).reshape(n_steps + 1, 3) * (1 - offset / 100),  # float64
    }
    observations = {key: value for key, value in (observations | changes).items() if value is not None}
    return Episode(observations, np.arange(n_steps) % 2, np.arange(n_steps) + offset, terminated, not terminated)


def assert_same_dict_episodes(first: Demonstrations | list[Episode], second: Demonstrations | list[Episode]) -> None:
    """Same episodes, arrays equal with equal dtypes, observation keys in the same order."""
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert isinstance(a.observations, dict) and isinstance(b.observations, dict)
        assert list(a.observations) == list(b.observations)
        for key in a.observations:
            np.testing.assert_array_equal(a.observations[key], b.observations[key])
            assert a.observations[key].dtype == b.observations[key].dtype, key
        for name in ("actions", "rewards"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
            assert getattr(a, name).dtype == getattr(b, name).dtype, name
        assert (a.terminated, a.truncated) == (b.terminated, b.truncated)


@pytest.fixture(scope="module")
def dict_demos() -> Demonstrations:
    return record_demonstrations(dict_expert, make_dict_env(), n_episodes=4, seed=0)


# ---------------------------------------------------------------------------------------------------------------------
# Episode, Demonstrations, transitions
# ---------------------------------------------------------------------------------------------------------------------


def test_episode_stores_a_plain_dict_of_arrays():
    # A list of per-step dicts (what a Dict env returns) is stacked key by key, in the first step's key order
    steps = [{"vector": [0.0, 1.0, 0.5], "image": np.full((8, 8, 1), t)} for t in range(3)]
    episode = Episode(steps, [0, 1], [1.0, 2.0], False, True)
    assert type(episode.observations) is dict and list(episode.observations) == ["vector", "image"]
    assert episode.observations["image"].shape == (3, 8, 8, 1) and episode.observations["vector"].shape == (3, 3)
    np.testing.assert_array_equal(episode.observations["image"][:, 0, 0, 0], [0, 1, 2])
    # A mapping of array-likes: np.asarray, dtypes untouched
    from_mapping = Episode({"a": [[1], [2]], "b": np.zeros((2, 2), np.float32)}, [0], [0.0], True, False)
    assert type(from_mapping.observations) is dict
    assert from_mapping.observations["a"].dtype == np.int64 and from_mapping.observations["b"].dtype == np.float32


def test_to_transitions_lays_dict_observations_end_to_end():
    # The space lists "vector" first: the conformed episodes and the transitions follow it
    space = spaces.Dict([("vector", VECTOR), ("image", IMAGE)])
    episodes = [dict_episode(3, 0, terminated=True), dict_episode(1, 10, terminated=False), dict_episode(2, 20)]
    demos = Demonstrations(episodes, space, spaces.Discrete(2))
    transitions = demos.to_transitions()
    assert isinstance(transitions.observations, dict) and isinstance(transitions.next_observations, dict)
    assert list(transitions.observations) == list(transitions.next_observations) == ["vector", "image"]
    assert transitions.observations["image"].dtype == np.uint8 and transitions.observations["vector"].dtype == np.float32
    assert transitions.observations["image"].shape == (6, 8, 8, 1) and transitions.next_observations["vector"].shape == (6, 3)
    row = 0
    for episode in episodes:
        for step in range(len(episode)):
            for key in ("image", "vector"):
                expected, following = episode.observations[key][step], episode.observations[key][step + 1]
                np.testing.assert_array_equal(transitions.observations[key][row], expected.astype(space[key].dtype))
                np.testing.assert_array_equal(transitions.next_observations[key][row], following.astype(space[key].dtype))
            assert transitions.actions[row] == episode.actions[step] and transitions.rewards[row] == episode.rewards[step]
            assert transitions.episode_ends[row] == (step == len(episode) - 1)
            assert transitions.terminations[row] == (step == len(episode) - 1 and episode.terminated)
            row += 1
    assert row == len(transitions.actions) == demos.n_transitions


def test_without_a_space_the_first_episodes_key_order_is_kept():
    first = dict_episode(2)
    second = Episode(dict(reversed(list(dict_episode(3, 5).observations.items()))), [0, 1, 0], [0.0] * 3, True, False)
    assert list(second.observations) == ["vector", "image"]
    demos = Demonstrations([first, second])
    assert [list(episode.observations) for episode in demos] == [["image", "vector"]] * 2
    transitions = demos.to_transitions()
    assert list(transitions.observations) == ["image", "vector"]
    np.testing.assert_array_equal(transitions.observations["image"][2:], second.observations["image"][:-1])
    np.testing.assert_array_equal(transitions.next_observations["vector"][2:], second.observations["vector"][1:])
    # Slicing and the summary work on dict observations
    assert list(demos[1:][0].observations) == ["image", "vector"]
    assert "2 episodes, 5 transitions" in repr(demos)


def test_each_key_is_conformed_to_its_subspace():
    space = spaces.Dict({"image": IMAGE, "vector": VECTOR, "cell": spaces.Discrete(5), "flags": spaces.MultiBinary(2)})
    episode = dict_episode(2, cell=np.array([[0], [4], [2]]), flags=np.array([[True, False], [False, True], [True, True]]))
    demos = Demonstrations([episode], space, spaces.Discrete(2))
    observations = demos[0].observations
    assert isinstance(observations, dict) and list(observations) == list(space.spaces)
    expected = {
        "cell": (np.int64, (3,)),
        "flags": (np.int8, (3, 2)),
        "image": (np.uint8, (3, 8, 8, 1)),
        "vector": (np.float32, (3, 3)),
    }
    assert {key: (values.dtype, values.shape) for key, values in observations.items()} == expected
    np.testing.assert_array_equal(observations["cell"], [0, 4, 2])
    np.testing.assert_array_equal(observations["image"], episode.observations["image"])
    Demonstrations([episode]).validate(space, spaces.Discrete(2))


# ---------------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------------

DICT_REPR = re.escape(repr(DICT_SPACE))


@pytest.mark.parametrize(
    "episodes, observation_space, error, message",
    [
        pytest.param(
            [dict_episode(vector=None, pos=np.zeros((3, 2)))],
            DICT_SPACE,
            ValueError,
            r"^episode 0: observation keys \['image', 'pos'\] do not match the observation space's keys "
            r"\['image', 'vector'\] \(missing 'vector', unexpected 'pos'\)$",
            id="keys differ from the space's",
        ),
        pytest.param(
            [dict_episode(extra=np.zeros((3, 1)))],
            DICT_SPACE,
            ValueError,
            r"^episode 0: observation keys \['image', 'vector', 'extra'\] do not match the observation space's keys "
            r"\['image', 'vector'\] \(unexpected 'extra'\)$",
            id="extra key",
        ),
        pytest.param(
            [dict_episode(), dict_episode(vector=None)],
            None,
            ValueError,
            r"^episode 1: observation keys \['image'\] do not match episode 0's keys \['image', 'vector'\] "
            r"\(missing 'vector'\)$",
            id="keys differ from episode 0's",
        ),
        pytest.param(
            [dict_episode(vector=np.zeros((3, 4)))],
            DICT_SPACE,
            ValueError,
            r"^episode 0: observations\['vector'\] have shape \(4,\) per step, but Box\(-1.0, 1.0, \(3,\), float32\) "
            r"expects \(3,\)$",
            id="key of the wrong shape for the space",
        ),
        pytest.param(
            [dict_episode(), dict_episode(vector=np.zeros((3, 4)))],
            None,
            ValueError,
            r"^episode 1: observations\['vector'\] have shape \(4,\) per step, episode 0 has \(3,\)$",
            id="key of another shape than episode 0's",
        ),
        pytest.param(
            [dict_episode(image=np.full((3, 8, 8, 1), 0.5))],
            DICT_SPACE,
            TypeError,
            r"^episode 0: observations\['image'\] of dtype float64 do not fit Box\(0, 255, \(8, 8, 1\), uint8\)",
            id="float data for an integer key",
        ),
        pytest.param(
            [dict_episode(image=np.full((3, 8, 8, 1), 256))],
            DICT_SPACE,
            ValueError,
            r"^episode 0, step 0: observation\['image'\] \[\[\[256\]",
            id="integer key out of bounds",
        ),
        pytest.param(
            [dict_episode(vector=np.where(np.arange(9).reshape(3, 3) == 7, np.nan, 0.0))],
            None,
            ValueError,
            r"^episode 0, step 2: observations\['vector'\] contain NaN or inf",
            id="NaN in a key",
        ),
        pytest.param(
            [dict_episode()],
            spaces.Dict({"image": IMAGE, "inner": spaces.Dict({"vector": VECTOR})}),
            TypeError,
            r"^the observation space's key 'inner' is a Dict space: nested Dict and Tuple spaces are not supported",
            id="nested Dict space",
        ),
        pytest.param(
            [dict_episode()],
            spaces.Dict({"image": IMAGE, "pair": spaces.Tuple([VECTOR, VECTOR])}),
            TypeError,
            r"^the observation space's key 'pair' is a Tuple space: nested Dict and Tuple spaces are not supported",
            id="Tuple inside a Dict space",
        ),
        pytest.param(
            [Episode(np.zeros((3, 3)), [0, 1], [0.0, 0.0], True, False)],
            DICT_SPACE,
            TypeError,
            rf"^episode 0: observations are one array of shape \(3,\) per step, but {DICT_REPR} needs a dict of arrays "
            r"with the keys \['image', 'vector'\]",
            id="array episode, Dict space",
        ),
        pytest.param(
            [dict_episode()],
            VECTOR,
            TypeError,
            r"^episode 0: observations are a dict of arrays with the keys \['image', 'vector'\], but "
            r"Box\(-1.0, 1.0, \(3,\), float32\) needs one array",
            id="dict episode, Box space",
        ),
        pytest.param(
            [dict_episode(), Episode(np.zeros((3, 3)), [0, 1], [0.0, 0.0], True, False)],
            None,
            TypeError,
            r"^episode 1: observations are one array of shape \(3,\) per step, episode 0 has a dict of arrays with the "
            r"keys \['image', 'vector'\]$",
            id="array episode after a dict one",
        ),
    ],
)
def test_bad_dict_observations_are_refused(episodes, observation_space, error, message):
    with pytest.raises(error, match=message):
        Demonstrations(episodes, observation_space, None if observation_space is None else spaces.Discrete(2))
    if observation_space is not None:  # validate says the same
        with pytest.raises(error, match=message):
            Demonstrations(episodes).validate(observation_space, spaces.Discrete(2))


@pytest.mark.parametrize(
    "observations, error, message",
    [
        ({}, ValueError, r"^observations is a dict without any key"),
        (
            {"a": np.zeros((2, 1)), "b": np.zeros((3, 1))},
            ValueError,
            r"needs 2 observations \(T \+ 1\), got 3 in observations\['b'\]$",
        ),
        ({"a": np.zeros(2), "inner": {"b": np.zeros(2)}}, TypeError, r"^observations\['inner'\] is a dict: nested dict"),
        ({0: np.zeros(2)}, TypeError, r"^observation keys must be strings, got 0 \(int\)$"),
        ({"a": np.array(["x", "y"])}, TypeError, r"^observations\['a'\] must be a numeric array, got dtype <U1$"),
        ({"a": [np.zeros(2), np.zeros(3)]}, ValueError, r"^observations\['a'\] cannot be stacked"),
        (
            [{"a": 0.0}, {"b": 1.0}],
            ValueError,
            r"^observations: step 1: observation keys \['b'\] do not match step 0's keys \['a'\] "
            r"\(missing 'a', unexpected 'b'\)$",
        ),
        ([{"a": 0.0}, 1.0], TypeError, r"^observations: step 1 is a float, expected a dict like step 0$"),
    ],
)
def test_malformed_dict_episode_is_refused(observations, error, message):
    with pytest.raises(error, match=message):
        Episode(observations, [0], [0.0], True, False)


# ---------------------------------------------------------------------------------------------------------------------
# Our .npz
# ---------------------------------------------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path, dict_demos):
    path = tmp_path / "dict.npz"
    save_demonstrations(dict_demos, path)
    with np.load(path, allow_pickle=False) as archive:  # plain arrays only
        assert str(archive["format"]) == NPZ_FORMAT and int(archive["format_version"]) == 2
        assert "observations" not in archive.files and archive["observation_keys"].tolist() == ["image", "vector"]
        assert archive["observations.image"].shape == (dict_demos.n_transitions + len(dict_demos), 8, 8, 1)
        assert json.loads(str(archive["observation_space"])) == {"type": "Dict", "keys": ["image", "vector"]}
        np.testing.assert_array_equal(archive["observation_space.vector_low"], VECTOR.low)
    loaded = load_demonstrations(path)
    assert_same_dict_episodes(dict_demos, loaded)
    assert loaded.observation_space == DICT_SPACE and loaded.action_space == spaces.Discrete(2)
    assert list(loaded.observation_space.spaces) == ["image", "vector"]
    # Validated against an env's spaces on the way in, too
    assert_same_dict_episodes(dict_demos, load_demonstrations(path, env=make_dict_env()))


def test_npz_round_trip_keeps_key_order_and_every_subspace(tmp_path):
    space = spaces.Dict(
        [
            ("vector", VECTOR),
            ("image", IMAGE),
            ("cell", spaces.Discrete(5, start=-1)),
            ("grid", spaces.MultiDiscrete([[2, 3], [4, 5]])),
            ("flags", spaces.MultiBinary(2)),
        ]
    )
    episodes = [
        dict_episode(2, cell=np.array([-1, 3, 0]), grid=np.ones((3, 2, 2), int), flags=np.ones((3, 2), int)),
        dict_episode(
            1, 7, terminated=False, cell=np.array([2, 2]), grid=np.zeros((2, 2, 2), int), flags=np.zeros((2, 2), int)
        ),
    ]
    demos = Demonstrations(episodes, space, spaces.Discrete(2))
    save_demonstrations(demos, tmp_path / "spaces.npz")
    loaded = load_demonstrations(tmp_path / "spaces.npz")
    assert loaded.observation_space == space and list(loaded.observation_space.spaces) == list(space.spaces)
    assert_same_dict_episodes(demos, loaded)
    # Without spaces: the keys keep their order, the arrays their dtypes
    bare = Demonstrations(episodes)
    save_demonstrations(bare, tmp_path / "bare.npz")
    loaded_bare = load_demonstrations(tmp_path / "bare.npz")
    assert loaded_bare.observation_space is None
    assert_same_dict_episodes(bare, loaded_bare)


def write_version_1(path: Path, demos: Demonstrations) -> None:
    """Write array demonstrations as format version 1 describes them (what releases before dict support wrote)."""
    np.savez(
        path,
        format=np.array(NPZ_FORMAT),
        format_version=np.array(1),
        observations=np.concatenate([episode.observations for episode in demos]),
        actions=np.concatenate([episode.actions for episode in demos]),
        rewards=np.concatenate([episode.rewards for episode in demos]),
        episode_lengths=demos.episode_lengths,
        terminated=np.array([episode.terminated for episode in demos]),
        truncated=np.array([episode.truncated for episode in demos]),
        observation_space=np.array(json.dumps({"type": "Box", "dtype": "float32"})),
        observation_space_low=demos.observation_space.low,
        observation_space_high=demos.observation_space.high,
        action_space=np.array(json.dumps({"type": "Discrete", "dtype": "int64", "n": 2, "start": 0})),
    )


def test_version_1_files_still_load_and_array_files_are_still_written_as_version_1(tmp_path):
    demos = record_demonstrations("CartPole-v1", gym.make("CartPole-v1", max_episode_steps=10), n_episodes=2, seed=0)
    write_version_1(tmp_path / "v1.npz", demos)
    loaded = load_demonstrations(tmp_path / "v1.npz")
    assert loaded.observation_space == demos.observation_space and loaded.action_space == demos.action_space
    for a, b in zip(demos, loaded, strict=True):
        assert isinstance(b.observations, np.ndarray) and b.observations.dtype == np.float32
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
    # Array observations need nothing of version 2: releases that read only version 1 read the file
    save_demonstrations(demos, tmp_path / "arrays.npz")
    with np.load(tmp_path / "arrays.npz", allow_pickle=False) as archive:
        assert int(archive["format_version"]) == 1 and "observation_keys" not in archive.files
        assert sorted(archive.files) == sorted(np.load(tmp_path / "v1.npz").files)


def our_dict_npz(tmp_path: Path, **changes: Any) -> Path:
    """A valid dict-observation file (2 episodes of 1 and 2 steps: 5 observations) with ``changes`` (None removes)."""
    arrays: dict[str, Any] = {
        "format": np.array(NPZ_FORMAT),
        "format_version": np.array(2),
        "observation_keys": np.array(["image", "vector"]),
        "observations.image": np.zeros((5, 8, 8, 1), np.uint8),
        "observations.vector": np.zeros((5, 3), np.float32),
        "actions": np.zeros(3, dtype=np.int64),
        "rewards": np.zeros(3),
        "episode_lengths": np.array([1, 2]),
        "terminated": np.array([True, False]),
        "truncated": np.array([False, True]),
    }
    arrays |= changes
    np.savez(tmp_path / "bad.npz", **{key: value for key, value in arrays.items() if value is not None})
    return tmp_path / "bad.npz"


def dict_space_arrays(**changes: Any) -> dict[str, Any]:
    """The arrays describing DICT_SPACE in our .npz, with ``changes``."""
    arrays = {
        "observation_space": np.array(json.dumps({"type": "Dict", "keys": ["image", "vector"]})),
        "observation_space.image": np.array(json.dumps({"type": "Box", "dtype": "uint8"})),
        "observation_space.image_low": IMAGE.low,
        "observation_space.image_high": IMAGE.high,
        "observation_space.vector": np.array(json.dumps({"type": "Box", "dtype": "float32"})),
        "observation_space.vector_low": VECTOR.low,
        "observation_space.vector_high": VECTOR.high,
    }
    return arrays | changes


def test_hand_written_dict_file_loads(tmp_path):
    # The layout documented in save_demonstrations, written without it
    loaded = load_demonstrations(our_dict_npz(tmp_path, **dict_space_arrays()))
    assert loaded.observation_space == DICT_SPACE and loaded.episode_lengths.tolist() == [1, 2]
    assert loaded[1].observations["vector"].shape == (3, 3)


@pytest.mark.parametrize(
    "changes, message",
    [
        pytest.param(
            {"observations.vector": np.zeros((4, 3), np.float32)},
            r"bad.npz: key 'observations.vector' has 4 entries, episode_lengths imply 5$",
            id="key of the wrong length",
        ),
        pytest.param(
            {"observations.vector": None},
            r"bad.npz: missing key\(s\) \['observations.vector'\] for the sb3_dqfd layout",
            id="listed key missing",
        ),
        pytest.param(
            {"observations.extra": np.zeros(5)},
            r"bad.npz: key\(s\) \['observations.extra'\] are not listed in 'observation_keys' \['image', 'vector'\]$",
            id="unlisted key",
        ),
        pytest.param(
            {"observation_keys": None},
            r"bad.npz: key\(s\) \['observations.image', 'observations.vector'\] need the key 'observation_keys'",
            id="no observation_keys",
        ),
        pytest.param(
            {"observations": np.zeros((5, 3))},
            r"bad.npz: the file has both 'observations' and 'observation_keys'",
            id="both layouts",
        ),
        pytest.param(
            {"observation_keys": np.array([1, 2])},
            r"bad.npz: key 'observation_keys' must be a non-empty 1-D array of distinct strings",
            id="observation_keys not strings",
        ),
        pytest.param(
            {"observation_keys": np.array(["image", "image"])},
            r"bad.npz: key 'observation_keys' must be a non-empty 1-D array of distinct strings",
            id="observation_keys repeated",
        ),
        pytest.param(
            {"format_version": np.array(4)},
            r"bad.npz: format_version 4 is not supported \(this version reads 1..3\)",
            id="future version",
        ),
        pytest.param(
            dict_space_arrays(**{"observation_space.vector": None}),
            r"bad.npz: key 'observation_space' lists the key 'vector', but the file has no 'observation_space.vector'$",
            id="space key without its subspace",
        ),
        pytest.param(
            dict_space_arrays(**{"observation_space.speed": np.array(json.dumps({"type": "Discrete", "n": 2, "start": 0}))}),
            r"bad.npz: key\(s\) \['observation_space.speed'\] belong to no key listed in 'observation_space' "
            r"\['image', 'vector'\]$",
            id="subspace of an unlisted key",
        ),
        pytest.param(
            dict_space_arrays(**{"observation_space.vector": np.array(json.dumps({"type": "Dict", "keys": ["x"]}))}),
            r"bad.npz: key 'observation_space.vector': a Dict inside a Dict space: nested Dict spaces are not supported",
            id="nested Dict space",
        ),
        pytest.param(
            dict_space_arrays(observation_space=np.array(json.dumps({"type": "Dict", "keys": []}))),
            r"bad.npz: key 'observation_space': the space description cannot be read .*'keys' must be a non-empty list of",
            id="Dict space without keys",
        ),
        pytest.param(
            dict_space_arrays(observation_space=np.array(json.dumps({"type": "Dict", "keys": ["image", "vector", "image"]}))),
            r"bad.npz: key 'observation_space': the space description cannot be read .*'keys' must be a non-empty list "
            r"of distinct strings, got \['image', 'vector', 'image'\]",
            id="Dict space with a key twice",
        ),
        pytest.param(
            dict_space_arrays(
                observation_space=np.array(json.dumps({"type": "Dict", "keys": ["image", "pos"]})),
                **{"observation_space.pos": np.array(json.dumps({"type": "Discrete", "n": 2, "start": 0}))},
                **{f"observation_space.vector{suffix}": None for suffix in ("", "_low", "_high")},
            ),
            r"bad.npz: episode 0: observation keys \['image', 'vector'\] do not match the observation space's keys "
            r"\['image', 'pos'\] \(missing 'pos', unexpected 'vector'\)$",
            id="file's keys differ from its space's",
        ),
    ],
)
def test_bad_dict_npz_is_refused(tmp_path, changes, message):
    path = our_dict_npz(tmp_path, **changes)
    with pytest.raises(ValueError, match=message):
        load_demonstrations(path)


def test_save_refuses_keys_whose_arrays_would_collide(tmp_path):
    space = spaces.Dict([("x", spaces.Box(0, 1, (1,))), ("x_low", spaces.Discrete(2))])
    demos = Demonstrations([Episode({"x": np.zeros((2, 1)), "x_low": [0, 1]}, [0], [0.0], True, False)], space)
    with pytest.raises(ValueError, match=r"its keys 'x' and 'x_low' would both write the array 'observation_space.x_low'"):
        save_demonstrations(demos, tmp_path / "collide.npz")
    assert not (tmp_path / "collide.npz").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Minari
# ---------------------------------------------------------------------------------------------------------------------


def minari_dict(episode: Episode) -> dict[str, Any]:
    """An episode in Minari's EpisodeData layout: a dict of observation arrays, per-step end flags."""
    flags = np.arange(len(episode)) == len(episode) - 1
    return {
        "observations": episode.observations,
        "actions": episode.actions,
        "rewards": episode.rewards,
        "terminations": flags & episode.terminated,
        "truncations": flags & episode.truncated,
    }


def test_minari_episode_data_dicts(dict_demos):
    loaded = load_demonstrations([minari_dict(episode) for episode in dict_demos], env=make_dict_env())
    assert_same_dict_episodes(dict_demos, loaded)
    nested = minari_dict(dict_demos[0]) | {"observations": {"outer": dict_demos[0].observations}}
    with pytest.raises(TypeError, match=r"^episode dicts: episode 0: observations\['outer'\] is a dict: nested dict"):
        load_demonstrations([nested])


def test_minari_dataset_with_dict_observations(tmp_path, monkeypatch, dict_demos):
    minari = pytest.importorskip("minari")
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    buffers = [
        EpisodeBuffer(
            id=index,
            observations=dict(episode.observations),
            actions=episode.actions,
            rewards=list(episode.rewards),
            terminations=list(minari_dict(episode)["terminations"]),
            truncations=list(minari_dict(episode)["truncations"]),
        )
        for index, episode in enumerate(dict_demos)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # minari asks for author, description, ...
        dataset = minari.create_dataset_from_buffers(
            "dictenv/expert-v0", buffers, observation_space=DICT_SPACE, action_space=spaces.Discrete(2)
        )
    for loaded in (load_demonstrations(dataset), load_demonstrations("dictenv/expert-v0")):
        assert_same_dict_episodes(dict_demos, loaded)
        assert loaded.observation_space == DICT_SPACE and loaded.action_space == spaces.Discrete(2)


# ---------------------------------------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------------------------------------


def test_recording_a_single_env(dict_demos):
    assert dict_demos.observation_space == DICT_SPACE and dict_demos.action_space == spaces.Discrete(2)
    # Even starts terminate at step 3, odd ones are truncated at the time limit: both kinds of end are recorded
    assert {(episode.terminated, len(episode)) for episode in dict_demos} == {(True, 3), (False, TIME_LIMIT)}
    for index, episode in enumerate(dict_demos):
        replay([episode], seed=index)  # episode i is reset with seed + i
        assert episode.observations["image"].dtype == np.uint8 and episode.observations["vector"].dtype == np.float32
        assert episode.actions.tolist() == [
            dict_expert({k: v[t] for k, v in episode.observations.items()}) for t in range(len(episode))
        ]


class DictModel:
    """An SB3-like model: ``predict`` gets the VecEnv's batch, a dict of ``[n_envs, ...]`` arrays."""

    def __init__(self) -> None:
        self.batch_shapes: list[dict[str, tuple[int, ...]]] = []

    def predict(self, observation: dict[str, np.ndarray], deterministic: bool = False) -> tuple[np.ndarray, None]:
        self.batch_shapes.append({key: values.shape for key, values in observation.items()})
        n_envs = len(observation["image"])
        return np.array([dict_expert({key: values[i] for key, values in observation.items()}) for i in range(n_envs)]), None


@pytest.mark.parametrize("use_model", [False, True])
def test_recording_a_vec_env_keeps_the_terminal_observation_dicts(use_model):
    venv = DummyVecEnv([make_dict_env, make_dict_env])
    model = DictModel()
    demos = record_demonstrations(model if use_model else dict_expert, venv, n_episodes=5, seed=3)
    assert demos.observation_space == venv.observation_space and len(demos) == 5
    # Env i records (5 + i) // 2 episodes, env by env; each replays in a single env seeded as the VecEnv seeds env i
    replay(demos[:2].episodes, seed=3)
    replay(demos[2:].episodes, seed=4)
    # The last observation is the episode's own final one (infos[i]["terminal_observation"]), not the next reset's
    for episode in demos:
        final = {key: values[-1] for key, values in episode.observations.items()}
        assert round(float(final["vector"][1]) * 8) == len(episode)
        assert abs(final["vector"][0]) == (0.75 if episode.terminated else 0.25)
    assert {episode.terminated for episode in demos} == {True, False}
    if use_model:
        assert model.batch_shapes and all(shapes == {"image": (2, 8, 8, 1), "vector": (2, 3)} for shapes in model.batch_shapes)
    transitions = demos.to_transitions()
    assert (
        list(transitions.observations) == ["image", "vector"] and len(transitions.observations["image"]) == demos.n_transitions
    )


class NestedDictObservations(VecEnvWrapper):
    """A VecEnv whose observation space is a nested Dict (SB3's own VecEnvs refuse those: custom VecEnvs may not)."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv, observation_space=spaces.Dict({"image": IMAGE, "inner": spaces.Dict({"vector": VECTOR})}))

    def reset(self) -> Any:
        raise AssertionError("must be refused before any reset")

    def step_wait(self) -> Any:
        raise AssertionError("must be refused before any step")


def test_recording_refuses_a_nested_dict_vec_env_before_stepping():
    venv = NestedDictObservations(DummyVecEnv([make_dict_env]))
    with pytest.raises(TypeError, match=r"^record_demonstrations: the VecEnv: the observation space's key 'inner' is a Dict"):
        record_demonstrations(dict_expert, venv, n_episodes=1)
