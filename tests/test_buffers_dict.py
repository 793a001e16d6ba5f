"""
Dict observation spaces in DQfDReplayBuffer and CompactDQfDReplayBuffer.

References: a Dict buffer must sample exactly what one plain buffer per key (over that key's space alone, fed the same
transitions) samples; a compact Dict buffer behind VecFrameStack-style stacking exactly what a plain Dict buffer holding
the full stacks samples. Then SB3's own transition storage, pickling, VecNormalize and bad input.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3 import DQN
from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecNormalize
from stable_baselines3.common.vec_env.stacked_observations import StackedObservations

from sb3_dqfd.common.buffers import CompactDQfDReplayBuffer, DQfDReplayBuffer, DQfDReplayBufferSamples
from sb3_dqfd.common.demonstrations import Demonstrations, Episode

ACTION_SPACE = spaces.Discrete(3)
# Every kind of key a flat Dict observation space may have
KEY_SPACES: dict[str, spaces.Space] = {
    "image": spaces.Box(0, 255, shape=(6, 6, 1), dtype=np.uint8),
    "image_first": spaces.Box(0, 255, shape=(1, 6, 6), dtype=np.uint8),
    "vector": spaces.Box(-1, 1, shape=(3,), dtype=np.float32),
    "discrete": spaces.Discrete(5),
    "multi_discrete": spaces.MultiDiscrete([3, 4]),
    "multi_binary": spaces.MultiBinary(4),
}
# Keys VecFrameStack can stack (Box only), with the channels order to give it explicitly
FRAME_KEYS = {"image": "last", "image_first": "first", "vector": None, "bytes": None}
FRAME_SPACES: dict[str, spaces.Box] = {
    "image": spaces.Box(0, 255, shape=(6, 6, 1), dtype=np.uint8),
    "image_first": spaces.Box(0, 255, shape=(1, 6, 6), dtype=np.uint8),
    "vector": spaces.Box(-1, 1, shape=(3,), dtype=np.float32),
    "bytes": spaces.Box(0, 255, shape=(2,), dtype=np.uint8),  # uint8 but not an image: stacked on its last axis
}
OBSERVATION_FIELDS = ("observations", "next_observations", "n_step_next_observations")


def random_observations(space: spaces.Space, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random observations of one key, as a VecEnv gives them (``[n]`` for Discrete)."""
    if isinstance(space, spaces.Discrete):
        return rng.integers(0, space.n, size=n)
    if isinstance(space, spaces.MultiDiscrete):
        return rng.integers(0, space.nvec, size=(n, len(space.nvec)))
    if isinstance(space, spaces.MultiBinary):
        return rng.integers(0, 2, size=(n, *space.shape)).astype(np.int8)
    if space.dtype == np.uint8:
        return rng.integers(0, 256, size=(n, *space.shape)).astype(np.uint8)
    return rng.uniform(-1, 1, size=(n, *space.shape)).astype(np.float32)


def random_dict(space: spaces.Dict, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {key: random_observations(subspace, n, rng) for key, subspace in space.spaces.items()}


def assert_tensors_equal(got: th.Tensor, expected: th.Tensor, name: str) -> None:
    assert got.dtype == expected.dtype and got.shape == expected.shape, name
    assert th.equal(got, expected), name


def assert_same_batch(got: DQfDReplayBufferSamples, expected: DQfDReplayBufferSamples) -> None:
    """Every field identical (values, dtypes, shapes), dict observation fields key by key."""
    for name in expected._fields:
        value = getattr(expected, name)
        if name == "indices":
            np.testing.assert_array_equal(got.indices, value)
        elif isinstance(value, dict):
            assert list(getattr(got, name)) == list(value), name
            for key in value:
                assert_tensors_equal(getattr(got, name)[key], value[key], f"{name}[{key!r}]")
        else:
            assert_tensors_equal(getattr(got, name), value, name)


def assert_matches_per_key(got: DQfDReplayBufferSamples, references: dict[str, DQfDReplayBufferSamples]) -> None:
    """Each key of the observation fields as the buffer of that key alone, every other field as each of them."""
    for key, expected in references.items():
        for name in expected._fields:
            value = getattr(expected, name)
            if name in OBSERVATION_FIELDS:
                assert_tensors_equal(getattr(got, name)[key], value, f"{name}[{key!r}]")
            elif name == "indices":
                np.testing.assert_array_equal(got.indices, value)
            else:
                assert_tensors_equal(getattr(got, name), value, name)


def split_demonstrations(demonstrations: Demonstrations, key: str, space: spaces.Space) -> Demonstrations:
    """The same episodes with only the observations of ``key``."""
    episodes = [
        Episode(episode.observations[key], episode.actions, episode.rewards, episode.terminated, episode.truncated)
        for episode in demonstrations
    ]
    return Demonstrations(episodes, space, ACTION_SPACE)


# --------------------------------------------------------------------------------------------------------------------
# DQfDReplayBuffer: a Dict buffer samples what one buffer per key samples
# --------------------------------------------------------------------------------------------------------------------
def events_strategy(n_envs: int) -> st.SearchStrategy:
    step = st.lists(
        st.sampled_from(["continue", "continue", "continue", "terminated", "truncated"]), min_size=n_envs, max_size=n_envs
    )
    # "cut": the algorithm resets the envs mid-episode (truncate_running_episodes); "reset": the buffer drops its agent data
    return st.tuples(st.integers(0, 24), step).map(lambda op: "reset" if op[0] == 0 else "cut" if op[0] <= 2 else op[1])


@st.composite
def common_scenario(draw, keys: list[str]) -> dict:
    n_envs = draw(st.integers(1, 3))
    n_steps = draw(st.integers(1, 4))
    n_episodes = draw(st.integers(0, 3))
    rows = draw(st.integers(n_steps + 1, n_steps + 6))
    # Drawn first: list lengths drawn directly are mostly short, and the ring must often wrap around
    n_operations = draw(st.integers(0, 4 * rows + 4))
    return {
        "keys": draw(st.lists(st.sampled_from(keys), min_size=1, max_size=len(keys), unique=True)),
        "n_envs": n_envs,
        "n_steps": n_steps,
        "rows": rows,
        "slack": draw(st.integers(0, n_envs - 1)),
        "demo_lengths": draw(st.lists(st.integers(1, 6), min_size=n_episodes, max_size=n_episodes)),
        "demo_terminated": draw(st.lists(st.booleans(), min_size=n_episodes, max_size=n_episodes)),
        # Demonstrations added in two calls (the second appends to the first)
        "demo_split": draw(st.integers(1, max(n_episodes, 1))),
        "operations": draw(st.lists(events_strategy(n_envs), min_size=n_operations, max_size=n_operations)),
        "gamma": draw(st.sampled_from([0.5, 0.99])),
        "handle_timeout": draw(st.booleans()),
        "prioritized": draw(st.booleans()),
        "demo_ratio": draw(st.sampled_from([None, 0.5])),
        "seed": draw(st.integers(0, 2**16)),
    }


def buffer_kwargs(scenario: dict) -> dict:
    return dict(
        device="cpu",
        n_envs=scenario["n_envs"],
        handle_timeout_termination=scenario["handle_timeout"],
        n_steps=scenario["n_steps"],
        gamma=scenario["gamma"],
        prioritized=scenario["prioritized"],
        demo_ratio=scenario["demo_ratio"],
    )


def add_demonstrations(buffers: list[DQfDReplayBuffer], demonstrations: list[Demonstrations], split: int) -> None:
    """Each buffer gets its demonstrations in two calls, episodes ``[0, split)`` then the rest."""
    for buffer, demos in zip(buffers, demonstrations, strict=True):
        buffer.add_demonstrations(Demonstrations(demos.episodes[:split], demos.observation_space, ACTION_SPACE))
        if split < len(demos):
            buffer.add_demonstrations(Demonstrations(demos.episodes[split:], demos.observation_space, ACTION_SPACE))


def build_per_key(scenario: dict) -> tuple[DQfDReplayBuffer, dict[str, DQfDReplayBuffer]]:
    """A Dict buffer and one buffer per key, fed the same transitions (SB3's ``_store_transition`` layout)."""
    rng = np.random.default_rng(scenario["seed"])
    n_envs = scenario["n_envs"]
    space = spaces.Dict({key: KEY_SPACES[key] for key in scenario["keys"]})
    episodes = []
    for length, terminated in zip(scenario["demo_lengths"], scenario["demo_terminated"], strict=True):
        observations = random_dict(space, length + 1, rng)
        actions, rewards = rng.integers(0, 3, size=length), rng.integers(-3, 4, size=length).astype(np.float32)
        episodes.append(Episode(observations, actions, rewards, terminated, not terminated))
    n_demo = sum(scenario["demo_lengths"])
    capacity = n_demo + scenario["rows"] * n_envs + scenario["slack"]
    buffer = DQfDReplayBuffer(capacity, space, ACTION_SPACE, **buffer_kwargs(scenario))
    references = {
        key: DQfDReplayBuffer(capacity, subspace, ACTION_SPACE, **buffer_kwargs(scenario))
        for key, subspace in space.spaces.items()
    }
    if episodes:
        demonstrations = Demonstrations(episodes, space, ACTION_SPACE)
        per_key = [split_demonstrations(demonstrations, key, subspace) for key, subspace in space.spaces.items()]
        add_demonstrations([buffer, *references.values()], [demonstrations, *per_key], scenario["demo_split"])
    obs = random_dict(space, n_envs, rng)
    for operation in scenario["operations"]:
        if operation in ("cut", "reset"):
            if operation == "cut":
                running = buffer.truncate_running_episodes()
                for reference in references.values():
                    np.testing.assert_array_equal(reference.truncate_running_episodes(), running)
            else:
                for each in (buffer, *references.values()):
                    each.reset()
            obs = random_dict(space, n_envs, rng)
            continue
        done = np.array([event != "continue" for event in operation])
        infos = [{"TimeLimit.truncated": True} if event == "truncated" else {} for event in operation]
        # On a done step next_obs is the terminal observation, and the next step starts from a reset observation
        next_obs = random_dict(space, n_envs, rng)
        action, reward = rng.integers(0, 3, size=(n_envs, 1)), rng.integers(-3, 4, size=n_envs).astype(np.float32)
        buffer.add(obs, next_obs, action, reward, done, infos)
        for key, reference in references.items():
            reference.add(obs[key], next_obs[key], action, reward, done, infos)
        reset_obs = random_dict(space, n_envs, rng)
        obs = {
            key: np.where(done.reshape(-1, *[1] * (value.ndim - 1)), reset_obs[key], value) for key, value in next_obs.items()
        }
    return buffer, references


@settings(max_examples=60, deadline=None)
@given(scenario=common_scenario(list(KEY_SPACES)))
def test_dict_buffer_samples_as_one_buffer_per_key(scenario: dict) -> None:
    buffer, references = build_per_key(scenario)
    reference = next(iter(references.values()))
    assert (buffer.size(), buffer.pos, buffer.full, buffer.buffer_size) == (
        reference.size(),
        reference.pos,
        reference.full,
        reference.buffer_size,
    )
    # SB3's layout: one [buffer_size, n_envs, *shape_k] agent view per key, sharing the flat storage
    assert list(buffer.observations) == list(buffer.observation_space.spaces)
    for key, each in references.items():
        for name in ("observations", "next_observations"):
            view = getattr(buffer, name)[key]
            assert view.shape == getattr(each, name).shape and view.dtype == getattr(each, name).dtype
            assert np.shares_memory(view, buffer._storage[name][key])
            np.testing.assert_array_equal(view, getattr(each, name))
    if buffer.size() == 0:
        return
    everything = np.arange(buffer.size())
    for indices in (everything, np.random.default_rng(0).permutation(everything)):
        assert_matches_per_key(
            buffer._get_samples(indices), {key: each._get_samples(indices) for key, each in references.items()}
        )
    # Public sampling with the same random state and priorities picks the same rows
    td_errors = np.random.default_rng(1).normal(size=buffer.size())
    for each in (buffer, *references.values()):
        each.update_priorities(everything, td_errors)
    for demo_only in (False, True) if buffer.n_demonstrations else (False,):
        expected = {}
        for key, each in references.items():
            np.random.seed(scenario["seed"])
            expected[key] = each.sample(16, demo_only=demo_only)
        np.random.seed(scenario["seed"])
        assert_matches_per_key(buffer.sample(16, demo_only=demo_only), expected)


# --------------------------------------------------------------------------------------------------------------------
# CompactDQfDReplayBuffer: a compact Dict buffer samples what a plain Dict buffer holding the full stacks samples
# --------------------------------------------------------------------------------------------------------------------
def terminal_infos(events: list[str], frames: dict[str, np.ndarray]) -> list[dict]:
    """SB3 VecEnv infos: the terminal observation (a dict of one env's frames) where the episode ended."""
    return [
        {"terminal_observation": {key: value[env] for key, value in frames.items()}}
        | ({"TimeLimit.truncated": True} if event == "truncated" else {})
        if event != "continue"
        else {}
        for env, event in enumerate(events)
    ]


class DictFrameStacker:
    """VecFrameStack's stacking of a Dict space (SB3's ``StackedObservations``, key by key) over random frames."""

    def __init__(self, n_envs: int, n_stack: int, keys: list[str], channels_order, rng: np.random.Generator) -> None:
        self.frame_space = spaces.Dict({key: FRAME_SPACES[key] for key in keys})
        self.stacker = StackedObservations(n_envs, n_stack, self.frame_space, channels_order)
        self.space = self.stacker.stacked_observation_space
        self.n_envs, self.rng = n_envs, rng
        self.reset()

    def reset(self) -> dict[str, np.ndarray]:
        """Reset every env (zero padding), as ``VecFrameStack.reset``."""
        stacked = self.stacker.reset(random_dict(self.frame_space, self.n_envs, self.rng))
        self.obs = {key: value.copy() for key, value in stacked.items()}
        return self.obs

    def step(self, events: list[str]) -> tuple[dict, dict, np.ndarray, list[dict]]:
        """
        One step of every env; ``events[i]`` is "continue", "terminated" or "truncated".

        :return: ``obs, next_obs, done, infos`` as SB3's ``_store_transition`` passes them to ``add``
        """
        done = np.array([event != "continue" for event in events])
        infos = terminal_infos(events, random_dict(self.frame_space, self.n_envs, self.rng))
        stacked, infos = self.stacker.update(random_dict(self.frame_space, self.n_envs, self.rng), done, infos)
        next_obs = {key: value.copy() for key, value in stacked.items()}
        for env in np.flatnonzero(done):
            for key in next_obs:
                next_obs[key][env] = infos[env]["terminal_observation"][key]
        obs, self.obs = self.obs, {key: value.copy() for key, value in stacked.items()}
        return obs, next_obs, done, infos


def stacked_demonstrations(
    lengths: list[int], terminated: list[bool], n_stack: int, keys: list[str], channels_order, rng: np.random.Generator
) -> Demonstrations:
    """Episodes of T + 1 stacked dict observations, zero-padded at the start as VecFrameStack records them."""
    episodes = []
    for length, is_terminated in zip(lengths, terminated, strict=True):
        stacker = DictFrameStacker(1, n_stack, keys, channels_order, rng)
        steps = [stacker.obs] + [stacker.step(["continue"])[1] for _ in range(length)]
        observations = {key: np.concatenate([step[key] for step in steps]) for key in steps[0]}
        actions, rewards = rng.integers(0, 3, size=length), rng.integers(-3, 4, size=length).astype(np.float32)
        episodes.append(Episode(observations, actions, rewards, is_terminated, not is_terminated))
    return Demonstrations(episodes, stacker.space, ACTION_SPACE)


@st.composite
def compact_scenarios(draw) -> dict:
    scenario = draw(common_scenario(list(FRAME_KEYS)))
    scenario["n_stack"] = draw(st.integers(1, 3))
    # None: detected per key as VecFrameStack does; a dict: given per key, to both VecFrameStack and the buffer
    scenario["channels_order"] = draw(st.sampled_from([None, {key: FRAME_KEYS[key] for key in scenario["keys"]}]))
    return scenario


def build_compact(scenario: dict) -> tuple[CompactDQfDReplayBuffer, DQfDReplayBuffer, DictFrameStacker]:
    """Both buffers fed the same transitions: the reference stores the full stacks, the compact one the frames."""
    rng = np.random.default_rng(scenario["seed"])
    n_envs, n_stack, keys, channels_order = (
        scenario["n_envs"],
        scenario["n_stack"],
        scenario["keys"],
        scenario["channels_order"],
    )
    stacker = DictFrameStacker(n_envs, n_stack, keys, channels_order, rng)
    n_demo = sum(scenario["demo_lengths"])
    capacity = n_demo + scenario["rows"] * n_envs + scenario["slack"]
    reference = DQfDReplayBuffer(capacity, stacker.space, ACTION_SPACE, **buffer_kwargs(scenario))
    compact = CompactDQfDReplayBuffer(
        capacity, stacker.space, ACTION_SPACE, n_stack=n_stack, channels_order=channels_order, **buffer_kwargs(scenario)
    )
    if scenario["demo_lengths"]:
        demonstrations = stacked_demonstrations(
            scenario["demo_lengths"], scenario["demo_terminated"], n_stack, keys, channels_order, rng
        )
        add_demonstrations([reference, compact], [demonstrations, demonstrations], scenario["demo_split"])
    for operation in scenario["operations"]:
        if operation == "cut":
            np.testing.assert_array_equal(compact.truncate_running_episodes(), reference.truncate_running_episodes())
            stacker.reset()
        elif operation == "reset":
            reference.reset()
            compact.reset()
            stacker.reset()
        else:
            obs, next_obs, done, infos = stacker.step(operation)
            action, reward = rng.integers(0, 3, size=(n_envs, 1)), rng.integers(-3, 4, size=n_envs).astype(np.float32)
            for buffer in (reference, compact):
                buffer.add(obs, next_obs, action, reward, done, infos)
    return compact, reference, stacker


@settings(max_examples=80, deadline=None)
@given(scenario=compact_scenarios())
def test_compact_dict_buffer_samples_as_full_stack_reference(scenario: dict) -> None:
    compact, reference, stacker = build_compact(scenario)
    assert (compact.size(), compact.pos, compact.full, compact.buffer_size) == (
        reference.size(),
        reference.pos,
        reference.full,
        reference.buffer_size,
    )
    # Frames only, one layout per key, with the axis VecFrameStack stacked it along
    assert not hasattr(compact, "observations") and "observations" not in compact._storage
    for key, substack in stacker.stacker.sub_stacked_observations.items():
        assert compact.stack_axis[key] == (0 if substack.channels_first else len(FRAME_SPACES[key].shape) - 1), key
        assert compact.frame_shape[key] == FRAME_SPACES[key].shape, key
    if reference.size() == 0:
        return
    everything = np.arange(reference.size())
    for indices in (everything, np.random.default_rng(0).permutation(everything)):
        assert_same_batch(compact._get_samples(indices), reference._get_samples(indices))
    td_errors = np.random.default_rng(1).normal(size=reference.size())
    for buffer in (reference, compact):
        buffer.update_priorities(everything, td_errors)
    np.random.seed(scenario["seed"])
    expected = reference.sample(16)
    np.random.seed(scenario["seed"])
    assert_same_batch(compact.sample(16), expected)


# --------------------------------------------------------------------------------------------------------------------
# SB3's own transition storage (VecEnv auto-reset with dict terminal observations, TimeLimit.truncated, VecFrameStack)
# --------------------------------------------------------------------------------------------------------------------
class DictCounterEnv(gym.Env):
    """
    Dict observations encoding (env, episode, t); episode e of env i terminates after 2 + (e + i) % 4 steps. The image
    is large enough for SB3's NatureCNN, and channels last: SB3 puts VecTransposeImage around the env.
    """

    observation_space = spaces.Dict(
        {
            "image": spaces.Box(0, 255, shape=(36, 36, 1), dtype=np.uint8),
            "vector": spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32),
        }
    )
    action_space = spaces.Discrete(2)

    def __init__(self, env_id: int) -> None:
        self.env_id, self.episode, self.t = env_id, -1, 0

    def _obs(self) -> dict[str, np.ndarray]:
        image = np.full((36, 36, 1), (40 * self.episode + 7 * self.t) % 256, dtype=np.uint8)
        image[0, 0, 0] = self.env_id
        return {"image": image, "vector": np.array([self.env_id, self.episode, self.t], dtype=np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), float(self.t), self.t >= 2 + (self.episode + self.env_id) % 4, False, {}


class DictRecorder(gym.Wrapper):
    """Logs every step (outside TimeLimit, so truncations are visible): obs, next obs, reward, terminated, truncated."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.log: list[tuple[dict, dict, float, bool, bool]] = []

    def reset(self, **kwargs):
        self.last_obs, info = self.env.reset(**kwargs)
        return self.last_obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.log.append((self.last_obs, obs, float(reward), terminated, truncated))
        self.last_obs = obs
        return obs, reward, terminated, truncated, info


def dict_vec_env(n_envs: int) -> DummyVecEnv:
    return DummyVecEnv(
        [lambda i=i: DictRecorder(gym.wrappers.TimeLimit(DictCounterEnv(i), max_episode_steps=4)) for i in range(n_envs)]
    )


def collect(env, replay_buffer_class: type, n_steps: int = 60, **kwargs) -> DQfDReplayBuffer:
    """Fill a buffer through SB3 DQN's collect_rollouts (storage only: DQN never trains)."""
    model = DQN(
        "MultiInputPolicy",
        env,
        buffer_size=1_000,
        learning_starts=100_000,
        replay_buffer_class=replay_buffer_class,
        replay_buffer_kwargs={"n_steps": 3, **kwargs},
        device="cpu",
        seed=0,
    )
    model.learn(total_timesteps=env.num_envs * n_steps)
    return model.replay_buffer


def test_sb3_store_transition_with_dict_observations() -> None:
    """Every stored row holds the step SB3 collected: the true final observation on done steps, timeouts marked."""
    vec_env = dict_vec_env(2)
    buffer = collect(vec_env, DQfDReplayBuffer)
    assert isinstance(buffer, DQfDReplayBuffer) and not buffer.full
    # The env as the buffer sees it: SB3's VecTransposeImage made the image channels first
    transposed = {"image": lambda image: np.transpose(image, (2, 0, 1)), "vector": lambda vector: vector}
    for env, recorder in enumerate(vec_env.envs):
        assert len(recorder.log) == buffer.pos
        for row, (obs, next_obs, reward, terminated, truncated) in enumerate(recorder.log):
            for key, transpose in transposed.items():
                np.testing.assert_array_equal(buffer.observations[key][row, env], transpose(obs[key]))
                np.testing.assert_array_equal(buffer.next_observations[key][row, env], transpose(next_obs[key]))
            assert buffer.rewards[row, env] == reward
            assert buffer.dones[row, env] == float(terminated or truncated)
            assert buffer.timeouts[row, env] == float(truncated and not terminated)
    batch = buffer.sample(8)
    assert batch.observations["image"].shape == (8, 1, 36, 36) and batch.n_step_next_observations["vector"].shape == (8, 3)


def test_sb3_store_transition_behind_vec_frame_stack() -> None:
    """The compact buffer accepts what VecFrameStack makes of a Dict env, and holds what a plain buffer holds."""
    reference = collect(VecFrameStack(dict_vec_env(2), 3), DQfDReplayBuffer)
    compact = collect(VecFrameStack(dict_vec_env(2), 3), CompactDQfDReplayBuffer, n_stack=3)
    # VecTransposeImage (outside VecFrameStack) puts the stacked image channels first
    assert isinstance(compact, CompactDQfDReplayBuffer) and compact.stack_axis == {"image": 0, "vector": 0}
    everything = np.arange(reference.size())
    assert compact.size() == reference.size() > 0
    assert_same_batch(compact._get_samples(everything), reference._get_samples(everything))


# --------------------------------------------------------------------------------------------------------------------
# VecNormalize and pickling
# --------------------------------------------------------------------------------------------------------------------
def test_vec_normalize_normalizes_key_by_key() -> None:
    buffer = filled_plain()
    env = VecNormalize(dict_vec_env(1), norm_obs_keys=["vector"], norm_reward=False)
    env.obs_rms["vector"].mean[:] = [0.5, 1.0, -1.0]
    env.obs_rms["vector"].var[:] = [4.0, 0.25, 1.0]
    indices = np.arange(buffer.size())
    raw, normalized = buffer._get_samples(indices), buffer._get_samples(indices, env=env)
    for name in OBSERVATION_FIELDS:
        assert th.equal(getattr(normalized, name)["image"], getattr(raw, name)["image"])  # not in norm_obs_keys
        expected = env.normalize_obs({"vector": getattr(raw, name)["vector"].numpy()})["vector"]
        np.testing.assert_allclose(getattr(normalized, name)["vector"].numpy(), expected)


def filled_plain(n_envs: int = 2) -> DQfDReplayBuffer:
    """A Dict buffer over DictCounterEnv's space with demonstrations and a wrapped-around ring."""
    rng = np.random.default_rng(0)
    space = DictCounterEnv.observation_space
    demonstrations = Demonstrations(
        [
            Episode(random_dict(space, 4, rng), np.array([0, 1, 2]), np.ones(3, np.float32), True, False),
            Episode(random_dict(space, 3, rng), np.array([2, 2]), np.ones(2, np.float32), False, True),
        ],
        space,
        ACTION_SPACE,
    )
    buffer = DQfDReplayBuffer(5 + 6 * n_envs, space, ACTION_SPACE, device="cpu", n_envs=n_envs, n_steps=3)
    buffer.add_demonstrations(demonstrations)
    for step in range(15):
        done = np.array([(step + env) % 4 == 3 for env in range(n_envs)])
        buffer.add(
            random_dict(space, n_envs, rng),
            random_dict(space, n_envs, rng),
            np.ones((n_envs, 1)),
            np.ones(n_envs),
            done,
            [{}] * n_envs,
        )
    return buffer


def filled_compact(n_envs: int = 2) -> tuple[CompactDQfDReplayBuffer, DictFrameStacker]:
    """A compact Dict buffer with demonstrations and a wrapped-around ring with episode ends."""
    rng = np.random.default_rng(0)
    keys = ["image", "vector"]
    stacker = DictFrameStacker(n_envs, 3, keys, None, rng)
    demonstrations = stacked_demonstrations([3, 4], [True, False], 3, keys, None, rng)
    buffer = CompactDQfDReplayBuffer(
        7 + 6 * n_envs, stacker.space, ACTION_SPACE, device="cpu", n_envs=n_envs, n_steps=3, n_stack=3
    )
    buffer.add_demonstrations(demonstrations)
    for step in range(20):
        events = ["terminated" if (step + env) % 5 == 4 else "continue" for env in range(n_envs)]
        obs, next_obs, done, infos = stacker.step(events)
        buffer.add(obs, next_obs, np.zeros((n_envs, 1)), np.ones(n_envs), done, infos)
    return buffer, stacker


@pytest.mark.parametrize("compact", [False, True])
def test_pickle_round_trip(tmp_path, compact: bool) -> None:
    """SB3's save_replay_buffer / load_replay_buffer pickle the buffer: every field, the views and adding survive."""
    buffer, stacker = filled_compact() if compact else (filled_plain(), None)
    buffer.update_priorities(np.arange(buffer.size()), np.linspace(-2, 2, buffer.size()))
    save_to_pkl(tmp_path / "buffer.pkl", buffer)
    loaded = load_from_pkl(tmp_path / "buffer.pkl")
    assert type(loaded) is type(buffer)
    assert (loaded.n_demonstrations, loaded.pos, loaded.full, loaded.size()) == (
        buffer.n_demonstrations,
        buffer.pos,
        buffer.full,
        buffer.size(),
    )
    everything = np.arange(buffer.size())
    assert_same_batch(loaded._get_samples(everything), buffer._get_samples(everything))
    np.random.seed(3)
    expected = buffer.sample(16)
    np.random.seed(3)
    assert_same_batch(loaded.sample(16), expected)
    if compact:
        obs, next_obs, done, infos = stacker.step(["continue", "continue"])  # the loaded buffer continues the episodes
    else:
        # The SB3-layout attributes are views of the loaded storage again, not detached copies
        for name in ("observations", "next_observations"):
            for key, view in getattr(loaded, name).items():
                assert np.shares_memory(view, loaded._storage[name][key]), (name, key)
        obs = next_obs = random_dict(DictCounterEnv.observation_space, 2, np.random.default_rng(1))
        done, infos = np.zeros(2, dtype=bool), [{}, {}]
    loaded.add(obs, next_obs, np.zeros((2, 1)), np.ones(2), done, infos)
    newest = loaded._get_samples(loaded.n_demonstrations + (loaded.pos - 1) % loaded.buffer_size * 2 + np.arange(2))
    for key in ("image", "vector"):
        np.testing.assert_array_equal(newest.observations[key].numpy(), obs[key])


# --------------------------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("buffer_class", [DQfDReplayBuffer, CompactDQfDReplayBuffer])
@pytest.mark.parametrize(
    ("inner", "kind"),
    [(spaces.Dict({"x": spaces.Box(0, 1, (2,))}), "Dict"), (spaces.Tuple([spaces.Box(0, 1, (2,))]), "Tuple")],
)
def test_nested_spaces_are_refused(buffer_class: type, inner: spaces.Space, kind: str) -> None:
    space = spaces.Dict({"flat": spaces.Box(0, 1, (2,)), "nested": inner})
    with pytest.raises(ValueError, match=f"observation key 'nested' is a {kind} space .* must be flat"):
        buffer_class(100, space, ACTION_SPACE, device="cpu", n_steps=3)


def test_compact_refuses_keys_vec_frame_stack_cannot_stack() -> None:
    space = spaces.Dict({"image": spaces.Box(0, 255, (6, 6, 2), np.uint8), "discrete": spaces.Discrete(3)})
    with pytest.raises(TypeError, match="observation key 'discrete'"):
        CompactDQfDReplayBuffer(100, space, ACTION_SPACE, n_steps=3, n_stack=2)
    space = spaces.Dict({"image": spaces.Box(0, 255, (6, 6, 2), np.uint8), "vector": spaces.Box(0, 1, (3,))})
    with pytest.raises(ValueError, match=r"shape \(3,\) \(observation key 'vector'\) cannot hold n_stack=2 frames"):
        CompactDQfDReplayBuffer(100, space, ACTION_SPACE, n_steps=3, n_stack=2)
    with pytest.raises(ValueError, match=r"channels_order .* has no entry for the observation keys \['vector'\]"):
        CompactDQfDReplayBuffer(100, space, ACTION_SPACE, n_steps=3, n_stack=1, channels_order={"image": "last"})
    with pytest.raises(ValueError, match="channels_order must be 'first', 'last' or None \\(observation key 'image'\\)"):
        CompactDQfDReplayBuffer(100, space, ACTION_SPACE, n_steps=3, channels_order={"image": "up", "vector": None})


def one_episode(observations: dict[str, np.ndarray], space: spaces.Dict) -> Demonstrations:
    length = len(next(iter(observations.values()))) - 1
    return Demonstrations(
        [Episode(observations, np.zeros(length, np.int64), np.ones(length), True, False)], space, ACTION_SPACE
    )


@pytest.mark.parametrize("compact", [False, True])
def test_demonstrations_must_fit_the_dict_space(compact: bool) -> None:
    space = spaces.Dict({"image": spaces.Box(0, 255, (6, 6, 1), np.uint8), "vector": spaces.Box(-1, 1, (3,), np.float32)})
    buffer_class = CompactDQfDReplayBuffer if compact else DQfDReplayBuffer
    buffer = buffer_class(50, space, ACTION_SPACE, device="cpu", n_steps=3)
    rng = np.random.default_rng(0)
    good = random_dict(space, 4, rng)
    other_keys = spaces.Dict({"image": space["image"], "speed": space["vector"]})
    both_sides = r"have keys \['image', 'speed'\], .* has keys \['image', 'vector'\]"
    with pytest.raises(ValueError, match=both_sides + r" \(missing \['vector'\], unexpected \['speed'\]\)"):
        buffer.add_demonstrations(one_episode({"image": good["image"], "speed": good["vector"]}, other_keys))
    wider = spaces.Dict({"image": space["image"], "vector": spaces.Box(-1, 1, (4,), np.float32)})
    with pytest.raises(ValueError, match=r"'vector' has shape \(4,\) per step, the space needs \(3,\)"):
        buffer.add_demonstrations(one_episode({**good, "vector": random_observations(wider["vector"], 4, rng)}, wider))
    with pytest.raises(ValueError, match="are a single ndarray, the buffer's observation space is a Dict"):
        flat = spaces.Box(-1, 1, (3,), np.float32)
        buffer.add_demonstrations(
            Demonstrations([Episode(good["vector"], np.zeros(3, np.int64), np.ones(3), True, False)], flat, ACTION_SPACE)
        )
    assert buffer.n_demonstrations == 0
    buffer.add_demonstrations(one_episode(good, space))
    assert buffer.n_demonstrations == 3


@pytest.mark.parametrize("compact", [False, True])
def test_add_needs_every_key_with_its_shape(compact: bool) -> None:
    buffer, stacker = filled_compact() if compact else (filled_plain(), None)
    size, pos = buffer.size(), buffer.pos
    if compact:
        obs, next_obs, done, infos = stacker.step(["continue", "continue"])
    else:
        obs = next_obs = random_dict(DictCounterEnv.observation_space, 2, np.random.default_rng(1))
        done, infos = np.zeros(2, dtype=bool), [{}, {}]
    name = type(buffer).__name__
    with pytest.raises(
        ValueError, match=rf"{name}.add: obs has keys \['image'\], .* \(missing \['vector'\], unexpected \[\]\)"
    ):
        buffer.add({"image": obs["image"]}, next_obs, np.zeros((2, 1)), np.ones(2), done, infos)
    with pytest.raises(ValueError, match=r"next_obs has keys .* \(missing \[\], unexpected \['extra'\]\)"):
        buffer.add(obs, {**next_obs, "extra": next_obs["vector"]}, np.zeros((2, 1)), np.ones(2), done, infos)
    width = obs["vector"].shape[1]
    with pytest.raises(ValueError, match=rf"obs\['vector'\] has shape \(2, 2\), the observation space needs \(2, {width}\)"):
        buffer.add({**obs, "vector": obs["vector"][:, :2]}, next_obs, np.zeros((2, 1)), np.ones(2), done, infos)
    with pytest.raises(ValueError, match="obs is a single ndarray, the observation space is a Dict"):
        buffer.add(obs["vector"], next_obs, np.zeros((2, 1)), np.ones(2), done, infos)
    assert (buffer.size(), buffer.pos) == (size, pos)
    buffer.add(obs, next_obs, np.zeros((2, 1)), np.ones(2), done, infos)


def test_compact_checks_the_stacking_of_every_key() -> None:
    buffer, stacker = filled_compact()
    size, pos = buffer.size(), buffer.pos
    obs, next_obs, done, infos = stacker.step(["continue", "continue"])
    # The image is stacked right, the vector is not shifted by one frame
    with pytest.raises(
        ValueError, match="add \\(observation key 'vector'\\): a next observation is not its observation shifted"
    ):
        buffer.add(
            obs, {**next_obs, "vector": np.roll(next_obs["vector"], 1, axis=-1)}, np.zeros((2, 1)), np.ones(2), done, infos
        )
    # A consistent vector stack whose newest frame is not its env's stored next frame
    other_obs, other_next = obs["vector"].copy(), next_obs["vector"].copy()
    other_obs[:, 6:9] += 1  # the newest of its 3 frames of 3 values
    other_next[:, 3:6] += 1  # the same frame, one position older
    with pytest.raises(ValueError, match="add \\(observation key 'vector'\\): an observation does not continue"):
        buffer.add({**obs, "vector": other_obs}, {**next_obs, "vector": other_next}, np.zeros((2, 1)), np.ones(2), done, infos)
    assert (buffer.size(), buffer.pos) == (size, pos)
    buffer.truncate_running_episodes()
    padded = {key: np.full_like(value, 7) for key, value in obs.items()}
    with pytest.raises(ValueError, match="observation key 'image'\\): an observation has non-zero frames before its episode"):
        buffer.add(padded, padded, np.zeros((2, 1)), np.ones(2), done, infos)
    assert (buffer.size(), buffer.pos) == (size, pos)
