"""Frame-stacked demonstrations: recorded through VecFrameStack with their stacking (FrameStack), written one frame per
step (format version 3) and stacked again on loading, as VecFrameStack stacks them."""

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from image_env import BrightSideEnv, lit_side
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper, VecFrameStack, VecTransposeImage

from sb3_dqfd.common.demonstrations import (
    NPZ_FORMAT,
    Demonstrations,
    Episode,
    FrameStack,
    frame_stack_demonstrations,
    load_demonstrations,
    record_demonstrations,
    save_demonstrations,
    unstack_demonstrations,
)
from sb3_dqfd.dqfd.dqfd import _frame_stacked


class DictFramesEnv(gym.Env):
    """Observations ``{"image": [1, 6, 6] uint8 (channel-first), "vector": [2] float32}`` of noise, 5 steps an episode."""

    observation_space = spaces.Dict(
        {"image": spaces.Box(0, 255, (1, 6, 6), np.uint8), "vector": spaces.Box(-1, 1, (2,), np.float32)}
    )
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._observation(), {}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        self.t += 1
        return self._observation(), float(action), False, self.t >= 5, {}

    def _observation(self) -> dict[str, np.ndarray]:
        return {
            "image": self.np_random.integers(0, 256, self.observation_space["image"].shape, dtype=np.uint8),
            "vector": self.np_random.uniform(-1, 1, 2).astype(np.float32),
        }


class ChannelLastDictFramesEnv(DictFramesEnv):
    """:class:`DictFramesEnv` with a channel-last image, ``[6, 6, 1]``, that SB3 transposes for its CNN."""

    observation_space = spaces.Dict(
        {"image": spaces.Box(0, 255, (6, 6, 1), np.uint8), "vector": spaces.Box(-1, 1, (2,), np.float32)}
    )


class NoiseEnv(gym.Env):
    """84x84 grey frames of noise (the size of preprocessed Atari frames), 15 steps an episode."""

    observation_space = spaces.Box(0, 255, (84, 84, 1), np.uint8)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.integers(0, 256, (84, 84, 1), dtype=np.uint8), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return self.np_random.integers(0, 256, (84, 84, 1), dtype=np.uint8), 0.0, False, self.t >= 15, {}


def cartpole() -> gym.Env:
    return gym.make("CartPole-v1", max_episode_steps=12)


def stacked_by_hand(frames: np.ndarray, n_stack: int, axis: int) -> np.ndarray:
    """Brute force: step t holds frames t-n+1 .. t side by side along ``axis`` of a frame, zeros before the first."""
    padded = np.concatenate([np.zeros((n_stack - 1, *frames.shape[1:]), frames.dtype), frames])
    return np.stack([np.concatenate(padded[t : t + n_stack], axis=axis) for t in range(len(frames))])


def assert_same(first: Demonstrations, second: Demonstrations) -> None:
    """Both hold the same episodes (observations, dtypes included), spaces (bounds exactly) and stacking."""
    assert len(first) == len(second) and first.frame_stack == second.frame_stack
    for a, b in zip(first, second, strict=True):
        if isinstance(a.observations, dict):
            assert list(b.observations) == list(a.observations)
            pairs = [(a.observations[key], b.observations[key]) for key in a.observations]
        else:
            pairs = [(a.observations, b.observations)]
        for x, y in [*pairs, (a.actions, b.actions), (a.rewards, b.rewards)]:
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype
        assert (a.terminated, a.truncated) == (b.terminated, b.truncated)
    for space, other in ((first.observation_space, second.observation_space), (first.action_space, second.action_space)):
        assert space == other
        subspaces = space.spaces if isinstance(space, spaces.Dict) else {"": space}
        for key, subspace in subspaces.items():
            if isinstance(subspace, spaces.Box):  # Box.__eq__ compares bounds up to float tolerance
                other_subspace = other[key] if key else other
                np.testing.assert_array_equal(subspace.low, other_subspace.low)
                np.testing.assert_array_equal(subspace.high, other_subspace.high)


def image_venv(n_stack: int = 4) -> VecFrameStack:
    return VecFrameStack(DummyVecEnv([BrightSideEnv, BrightSideEnv]), n_stack)


def newest_lit_side(observation: np.ndarray) -> int:
    return lit_side(observation[..., -1:])


# ---------------------------------------------------------------------------------------------------------------------
# Recording and converting
# ---------------------------------------------------------------------------------------------------------------------


def test_image_stacks_recorded_through_vec_frame_stack_carry_their_stacking():
    venv = image_venv()
    stacked = record_demonstrations(newest_lit_side, venv, n_episodes=3, seed=0)
    # The same episodes in single frames: the same seeds, and the expert reads the newest frame of a stack
    frames = record_demonstrations(lit_side, DummyVecEnv([BrightSideEnv, BrightSideEnv]), n_episodes=3, seed=0)
    assert stacked.frame_stack == FrameStack(4, "last") and frames.frame_stack is None
    assert stacked.observation_space == venv.observation_space
    for stacks, single in zip(stacked, frames, strict=True):
        np.testing.assert_array_equal(stacks.observations, stacked_by_hand(single.observations, 4, axis=-1))
    assert_same(unstack_demonstrations(stacked), frames)
    assert unstack_demonstrations(stacked).observation_space == BrightSideEnv.observation_space
    # Stacking the frames again gives the recording, from VecFrameStack's arguments or from its stacked_obs
    assert_same(frame_stack_demonstrations(frames, 4), stacked)
    assert_same(frame_stack_demonstrations(frames, venv.stacked_obs), stacked)
    # Slices, copies through load_demonstrations and a load against the VecEnv keep the stacking
    assert stacked[1:].frame_stack == stacked.frame_stack
    assert_same(load_demonstrations(stacked), stacked)
    assert_same(load_demonstrations(stacked, env=venv), stacked)
    assert "frame stack: 4 frames, channels_order 'last'" in repr(stacked)


def test_transposed_image_stacks_are_channel_first_stacks_of_transposed_frames():
    # SB3 puts VecTransposeImage outside VecFrameStack: [40, 40, 4] stacks become [4, 40, 40]
    venv = VecTransposeImage(image_venv())
    stacked = record_demonstrations(lambda observation: lit_side(observation[-1][..., None]), venv, n_episodes=2, seed=0)
    frames = record_demonstrations(lit_side, DummyVecEnv([BrightSideEnv, BrightSideEnv]), n_episodes=2, seed=0)
    assert stacked.frame_stack == FrameStack(4, "first") and stacked.observation_space.shape == (4, 40, 40)
    for stacks, single in zip(stacked, frames, strict=True):
        transposed = np.transpose(single.observations, (0, 3, 1, 2))  # [T + 1, 1, 40, 40]
        np.testing.assert_array_equal(stacks.observations, stacked_by_hand(transposed, 4, axis=0))
    assert unstack_demonstrations(stacked).observation_space == spaces.Box(0, 255, (1, 40, 40), np.uint8)


def test_vector_and_dict_stacks_carry_their_stacking():
    venv = VecFrameStack(DummyVecEnv([cartpole]), 3)
    stacked = record_demonstrations(lambda observation: int(observation[-2] > 0), venv, n_episodes=2, seed=0)
    assert stacked.frame_stack == FrameStack(3, "last") and stacked[0].observations.shape[1:] == (12,)
    frames = unstack_demonstrations(stacked)
    assert frames.observation_space == cartpole().observation_space
    for stacks, single in zip(stacked, frames, strict=True):
        np.testing.assert_array_equal(stacks.observations, stacked_by_hand(single.observations, 3, axis=-1))
    # Every key of a Dict space along its own axis: the channel-first image on the first, the vector on the last
    venv = VecFrameStack(DummyVecEnv([DictFramesEnv]), 2)
    stacked = record_demonstrations(lambda observation: 1, venv, n_episodes=2, seed=0)
    assert stacked.frame_stack == FrameStack(2, {"image": "first", "vector": "last"})
    frames = unstack_demonstrations(stacked)
    assert frames.observation_space == DictFramesEnv.observation_space
    for stacks, single in zip(stacked, frames, strict=True):
        np.testing.assert_array_equal(stacks.observations["image"], stacked_by_hand(single.observations["image"], 2, 0))
        np.testing.assert_array_equal(stacks.observations["vector"], stacked_by_hand(single.observations["vector"], 2, -1))
    assert_same(frame_stack_demonstrations(frames, 2), stacked)


@pytest.mark.parametrize(
    "make_env, n_stack",
    [(cartpole, 3), (BrightSideEnv, 2), (DictFramesEnv, 2)],
    ids=["vector", "image", "dict"],
)
def test_stacking_matches_what_dqfd_does_for_a_vec_frame_stack_env(make_env, n_stack):
    frames = record_demonstrations(lambda observation: 0, DummyVecEnv([make_env]), n_episodes=2, seed=0)
    venv = VecFrameStack(DummyVecEnv([make_env]), n_stack)
    expected = _frame_stacked(frames, venv)
    stacked = frame_stack_demonstrations(frames, venv.stacked_obs)
    assert_same(
        stacked, Demonstrations(expected.episodes, expected.observation_space, expected.action_space, stacked.frame_stack)
    )
    assert stacked.observation_space == venv.observation_space


# ---------------------------------------------------------------------------------------------------------------------
# Our .npz, format version 3
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_venv, expert, frame_shape, frame_stack",
    [
        (image_venv, newest_lit_side, (40, 40, 1), {"n_stack": 4, "channels_order": "last"}),
        (
            lambda: VecTransposeImage(image_venv()),
            lambda observation: lit_side(observation[-1][..., None]),
            (1, 40, 40),
            {"n_stack": 4, "channels_order": "first"},
        ),
        (lambda: VecFrameStack(DummyVecEnv([cartpole, cartpole]), 3), lambda observation: 0, (4,), None),
        (lambda: VecFrameStack(DummyVecEnv([DictFramesEnv]), 2), lambda observation: 1, None, None),
        (
            lambda: VecTransposeImage(VecFrameStack(DummyVecEnv([ChannelLastDictFramesEnv]), 2)),
            lambda observation: 1,
            None,
            {"n_stack": 2, "channels_order": {"image": "first", "vector": "last"}},
        ),
    ],
    ids=["image", "transposed image", "vector", "dict", "transposed dict"],
)
def test_a_file_holds_each_frame_once_and_loads_as_recorded(tmp_path, make_venv, expert, frame_shape, frame_stack):
    venv = make_venv()
    demos = record_demonstrations(expert, venv, n_episodes=2, seed=0)
    save_demonstrations(demos, tmp_path / "stacked.npz")
    with np.load(tmp_path / "stacked.npz", allow_pickle=False) as archive:
        assert str(archive["format"]) == NPZ_FORMAT and int(archive["format_version"]) == 3
        assert json.loads(str(archive["frame_stack"])) == json.loads(demos.frame_stack.to_json())
        if frame_stack is not None:
            assert json.loads(str(archive["frame_stack"])) == frame_stack
        n_frames = demos.n_transitions + len(demos)
        if frame_shape is not None:
            assert archive["observations"].shape == (n_frames, *frame_shape)
        else:
            assert archive["observations.image"].shape == (n_frames, 1, 6, 6)
            assert archive["observations.vector"].shape == (n_frames, 2)
    loaded = load_demonstrations(tmp_path / "stacked.npz")
    assert_same(loaded, demos)
    assert_same(load_demonstrations(tmp_path / "stacked.npz", env=venv), demos)


def test_a_stacked_image_file_is_a_fraction_of_the_stacks(tmp_path):
    venv = VecFrameStack(DummyVecEnv([NoiseEnv]), 4)  # [84, 84, 4] stacks, as an Atari pipeline
    demos = record_demonstrations(lambda observation: 0, venv, n_episodes=2, seed=0)
    whole = Demonstrations(demos.episodes, demos.observation_space, demos.action_space)  # the same, without stacking
    save_demonstrations(demos, tmp_path / "frames.npz")
    save_demonstrations(whole, tmp_path / "stacks.npz")
    # Noise does not compress: the ratio is the one of the raw sizes, 1/4 but for the zeros of the episode starts
    ratio = (tmp_path / "frames.npz").stat().st_size / (tmp_path / "stacks.npz").stat().st_size
    assert ratio < 0.35, ratio
    assert_same(load_demonstrations(tmp_path / "frames.npz"), demos)
    with np.load(tmp_path / "stacks.npz", allow_pickle=False) as archive:
        assert int(archive["format_version"]) == 1 and "frame_stack" not in archive.files


@pytest.fixture(scope="module")
def image_demos() -> Demonstrations:
    return record_demonstrations(newest_lit_side, image_venv(), n_episodes=2, seed=0)


@pytest.fixture(scope="module")
def dict_demos() -> Demonstrations:
    return record_demonstrations(lambda observation: 1, VecFrameStack(DummyVecEnv([DictFramesEnv]), 2), 2, seed=0)


def corrupted(tmp_path: Path, demos: Demonstrations, **changes: Any) -> Path:
    """The file of ``demos`` with ``changes`` (None removes a key; a dict is written as the JSON ``frame_stack``)."""
    save_demonstrations(demos, tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz", allow_pickle=False) as archive:
        arrays = dict(archive)
    for key, value in changes.items():
        arrays[key] = np.array(json.dumps(value)) if isinstance(value, dict) else value
    np.savez(tmp_path / "bad.npz", **{key: value for key, value in arrays.items() if value is not None})
    return tmp_path / "bad.npz"


@pytest.mark.parametrize(
    "demos_name, changes, message",
    [
        pytest.param(
            "image_demos",
            {"frame_stack": {"n_stack": 0, "channels_order": "last"}},
            r"bad.npz: key 'frame_stack': the stacking cannot be read .*n_stack must be a whole number >= 1, got 0",
            id="n_stack 0",
        ),
        pytest.param(
            "image_demos",
            {"frame_stack": {"n_stack": 4, "channels_order": "middle"}},
            r"bad.npz: key 'frame_stack': .*channels_order must be 'first' or 'last' .*got 'middle'",
            id="unknown axis",
        ),
        pytest.param(
            "image_demos",
            {"frame_stack": {"n_stack": 3, "channels_order": "last"}},
            r"bad.npz: key 'frame_stack' .*the observation space Box\(0, 255, \(40, 40, 4\), uint8\) cannot hold 3 frames "
            r"along its last axis",
            id="n_stack that does not divide the space",
        ),
        pytest.param(
            "image_demos",
            {"frame_stack": {"n_stack": 4, "channels_order": "first"}},
            r"bad.npz: the frames must fit one frame of the stacked observation space, Box\(0, 255, \(10, 40, 4\), uint8\): "
            r"episode 0: observations have shape \(40, 40, 1\) per step",
            id="other axis",
        ),
        pytest.param(
            "image_demos",
            {"frame_stack": {"n_stack": 4}},
            r"bad.npz: key 'frame_stack': the stacking cannot be read \(KeyError\('channels_order'\)\)",
            id="no channels_order",
        ),
        pytest.param(
            "image_demos",
            {"frame_stack": np.array("4 frames")},
            r"bad.npz: key 'frame_stack': the stacking cannot be read \(JSONDecodeError",
            id="not JSON",
        ),
        pytest.param("image_demos", {"frame_stack": None}, r"format_version 3 needs the key 'frame_stack'", id="no stacking"),
        pytest.param(
            "image_demos",
            {"format_version": np.array(1)},
            r"bad.npz: key 'frame_stack' needs format_version 3, the file has format_version 1",
            id="stacking in a version 1 file",
        ),
        pytest.param(
            "image_demos",
            {"format_version": np.array(4)},
            r"bad.npz: format_version 4 is not supported \(this version reads 1..3\)",
            id="future version",
        ),
        pytest.param(
            "image_demos",
            {"observation_space": None, "observation_space_low": None, "observation_space_high": None},
            r"bad.npz: key 'frame_stack' .*needs the observation space of the stacks \(got none\)",
            id="no observation space",
        ),
        pytest.param(
            "dict_demos",
            {"frame_stack": {"n_stack": 2, "channels_order": {"image": "middle", "vector": "last"}}},
            r"bad.npz: key 'frame_stack': .*channels_order\['image'\] must be 'first' or 'last'",
            id="unknown axis of a key",
        ),
        pytest.param(
            "dict_demos",
            {"frame_stack": {"n_stack": 2, "channels_order": {"image": "first"}}},
            r"bad.npz: key 'frame_stack' .*channels_order has the keys \['image'\], the observation space "
            r"\['image', 'vector'\]",
            id="missing key",
        ),
        pytest.param(
            "dict_demos",
            {"frame_stack": {"n_stack": 3, "channels_order": {"image": "first", "vector": "last"}}},
            r"bad.npz: key 'frame_stack' .*the observation space's key 'image' Box\(0, 255, \(2, 6, 6\), uint8\) cannot hold "
            r"3 frames along its first axis",
            id="n_stack that does not divide a key",
        ),
    ],
)
def test_a_corrupted_stacking_is_refused_naming_the_key(request, tmp_path, demos_name, changes, message):
    path = corrupted(tmp_path, request.getfixturevalue(demos_name), **changes)
    with pytest.raises(ValueError, match=message):
        load_demonstrations(path)


def test_frames_that_do_not_fit_the_space_are_refused_naming_the_key(tmp_path, image_demos, dict_demos):
    n_frames = image_demos.n_transitions + len(image_demos)
    path = corrupted(tmp_path, image_demos, observations=np.zeros((n_frames, 40, 40, 2), np.uint8))
    with pytest.raises(ValueError, match=r"bad.npz: the frames must fit .*: episode 0: observations have shape \(40, 40, 2\)"):
        load_demonstrations(path)
    n_frames = dict_demos.n_transitions + len(dict_demos)
    path = corrupted(tmp_path, dict_demos, **{"observations.vector": np.zeros((n_frames, 3), np.float32)})
    with pytest.raises(ValueError, match=r"the frames must fit .*: episode 0: observations\['vector'\] have shape \(3,\)"):
        load_demonstrations(path)


# ---------------------------------------------------------------------------------------------------------------------
# Observations that are not stacks, bad arguments
# ---------------------------------------------------------------------------------------------------------------------


class Brighten(VecEnvWrapper):
    """Adds 1 to every pixel: above VecFrameStack, its stacks no longer start with zeros."""

    def reset(self) -> np.ndarray:
        return self.venv.reset() + 1

    def step_wait(self) -> Any:
        observations, rewards, dones, infos = self.venv.step_wait()
        for info in infos:
            if "terminal_observation" in info:
                info["terminal_observation"] = info["terminal_observation"] + 1
        return observations + 1, rewards, dones, infos


def test_observations_that_are_not_stacks_are_recorded_whole(tmp_path):
    # No VecFrameStack: no stacking, and the file stays version 1
    demos = record_demonstrations(lit_side, DummyVecEnv([BrightSideEnv]), n_episodes=1, seed=0)
    assert demos.frame_stack is None
    with pytest.warns(UserWarning, match=r"VecFrameStack.*\(episode 0, step 0: observations hold more than the episode's"):
        brightened = record_demonstrations(newest_lit_side, Brighten(image_venv()), n_episodes=1, seed=0)
    assert brightened.frame_stack is None
    save_demonstrations(brightened, tmp_path / "whole.npz")
    with np.load(tmp_path / "whole.npz", allow_pickle=False) as archive:
        assert int(archive["format_version"]) == 1 and archive["observations"].shape[1:] == (40, 40, 4)
    # A channel-first stack that VecTransposeImage moves to a middle axis: [160, 40, 1] -> [1, 160, 40]
    venv: VecEnv = VecTransposeImage(VecFrameStack(DummyVecEnv([BrightSideEnv]), 4, channels_order="first"))
    with pytest.warns(UserWarning, match=r"VecTransposeImage moves the stacking axis of the observations from the first"):
        assert record_demonstrations(lambda observation: 0, venv, n_episodes=1, seed=0).frame_stack is None


def test_a_stacking_the_observations_do_not_follow_is_refused(image_demos):
    episodes, space, actions = image_demos.episodes, image_demos.observation_space, image_demos.action_space
    with pytest.raises(ValueError, match=r"episode 0, step 0: observations hold more than the episode's first frame"):
        Demonstrations([Episode(e.observations + 1, e.actions, e.rewards, e.terminated, e.truncated) for e in episodes],
                       space, actions, FrameStack(4, "last"))  # fmt: skip
    with pytest.raises(ValueError, match=r"episode 0, step 1: observations are not the previous step's shifted by one"):
        Demonstrations(episodes, space, actions, FrameStack(2, "last"))  # 4 frames taken as 2 stacks of 2
    with pytest.raises(ValueError, match=r"needs the observation space of the stacks \(got none\)"):
        Demonstrations(episodes, None, actions, FrameStack(4, "last"))
    with pytest.raises(TypeError, match=r"frame_stack must be a FrameStack or None, got int"):
        Demonstrations(episodes, space, actions, 4)  # type: ignore[arg-type]
    # Stacks without their stacking can be given it, checked, and unstacked
    whole = Demonstrations(episodes, space, actions)
    assert_same(unstack_demonstrations(Demonstrations(whole.episodes, space, actions, FrameStack(4, "last"))),
                unstack_demonstrations(image_demos))  # fmt: skip
    with pytest.raises(ValueError, match=r"unstack_demonstrations: the demonstrations carry no frame_stack"):
        unstack_demonstrations(whole)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ((0,), ValueError, r"frame_stack_demonstrations: n_stack must be a whole number >= 1, got 0"),
        ((True,), ValueError, r"n_stack must be a whole number >= 1, got True"),
        ((2, "middle"), ValueError, r"channels_order must be 'first', 'last' or None .*got 'middle'"),
        ((2, {"image": "last"}), ValueError, r"channels_order is a dict by key, but the observation space Box"),
    ],
)
def test_bad_stacking_arguments_are_refused(image_demos, arguments, error, message):
    frames = unstack_demonstrations(image_demos)
    with pytest.raises(error, match=message):
        frame_stack_demonstrations(frames, *arguments)


def test_frame_stack_demonstrations_needs_a_space_that_stacks(dict_demos):
    frames = unstack_demonstrations(dict_demos)
    with pytest.raises(
        ValueError, match=r"channels_order has the keys \['image'\], the observation space \['image', 'vector'\]"
    ):
        frame_stack_demonstrations(frames, 2, {"image": "first"})
    with pytest.raises(ValueError, match=r"needs the demonstrations' observation space"):
        frame_stack_demonstrations(Demonstrations(frames.episodes), 2)
    discrete = record_demonstrations(lambda observation: 0, "FrozenLake-v1", n_episodes=1, seed=0)
    with pytest.raises(ValueError, match=r"the observation space is Discrete\(16\): VecFrameStack stacks Box spaces"):
        frame_stack_demonstrations(discrete, 2)
    venv = VecFrameStack(DummyVecEnv([BrightSideEnv]), 2)
    with pytest.raises(TypeError, match=r"channels_order is taken from the stacked_obs given"):
        frame_stack_demonstrations(frames, venv.stacked_obs, "last")
    with pytest.raises(ValueError, match=r"the stacked_obs stacks frames of Box\(0, 255, \(40, 40, 1\), uint8\), the "):
        frame_stack_demonstrations(frames, venv.stacked_obs)


@pytest.mark.parametrize(
    "n_stack, channels_order, message",
    [
        (0, "last", r"FrameStack: n_stack must be a whole number >= 1, got 0"),
        (2.0, "last", r"FrameStack: n_stack must be a whole number >= 1, got 2.0"),
        (2, None, r"FrameStack: channels_order must be 'first' or 'last' \(or a dict of them by key\), got None"),
        (2, {}, r"FrameStack: channels_order is a dict without any key"),
        (2, {"image": "up"}, r"FrameStack: channels_order\['image'\] must be 'first' or 'last'"),
    ],
)
def test_a_bad_frame_stack_is_refused(n_stack, channels_order, message):
    with pytest.raises(ValueError, match=message):
        FrameStack(n_stack, channels_order)
