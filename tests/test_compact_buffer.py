"""CompactDQfDReplayBuffer: every sampled field identical to a DQfDReplayBuffer holding the full stacks, pickling, DQfD."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl
from stable_baselines3.common.vec_env import VecFrameStack
from stable_baselines3.common.vec_env.stacked_observations import StackedObservations

from sb3_dqfd import DQfD
from sb3_dqfd.common.buffers import CompactDQfDReplayBuffer, DQfDReplayBuffer
from sb3_dqfd.common.demonstrations import Demonstrations, Episode

ACTION_SPACE = spaces.Discrete(3)
# One frame of each observation kind, and the channels order VecFrameStack is given for it
FRAME_SPACES = {
    "vector": (spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32), None),
    "image_last": (spaces.Box(0, 255, shape=(3, 2, 2), dtype=np.uint8), "last"),
    "image_first": (spaces.Box(0, 255, shape=(1, 3, 2), dtype=np.uint8), "first"),
}


def random_frames(frame_space: spaces.Box, n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, *frame_shape]`` random frames of the space's dtype."""
    if frame_space.dtype == np.uint8:
        return rng.integers(0, 256, size=(n, *frame_space.shape)).astype(np.uint8)
    return rng.normal(size=(n, *frame_space.shape)).astype(np.float32)


class FrameStacker:
    """The stacking of ``VecFrameStack`` (SB3's ``StackedObservations``) over random frames, with SB3's auto-reset."""

    def __init__(self, n_envs: int, n_stack: int, kind: str, rng: np.random.Generator) -> None:
        self.frame_space, channels_order = FRAME_SPACES[kind]
        self.stacker = StackedObservations(n_envs, n_stack, self.frame_space, channels_order)
        self.space = self.stacker.stacked_observation_space
        self.n_envs, self.rng = n_envs, rng
        self.obs = self.reset()

    def reset(self) -> np.ndarray:
        """Reset every env (zero padding), as ``VecFrameStack.reset``."""
        self.obs = self.stacker.reset(random_frames(self.frame_space, self.n_envs, self.rng)).copy()
        return self.obs

    def step(self, events: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        """
        One step of every env; ``events[i]`` is "continue", "terminated" or "truncated".

        :return: ``obs, next_obs, done, infos`` as SB3's ``_store_transition`` passes them to ``add``
        """
        done = np.array([event != "continue" for event in events])
        new_frames = random_frames(self.frame_space, self.n_envs, self.rng)  # the reset frame where done
        infos = [
            {"terminal_observation": frame, **({"TimeLimit.truncated": True} if event == "truncated" else {})}
            if event != "continue"
            else {}
            for event, frame in zip(events, random_frames(self.frame_space, self.n_envs, self.rng), strict=True)
        ]
        stacked, infos = self.stacker.update(new_frames, done, infos)
        next_obs = stacked.copy()
        for env in np.flatnonzero(done):
            next_obs[env] = infos[env]["terminal_observation"]
        obs, self.obs = self.obs, stacked.copy()
        return obs, next_obs, done, infos


def make_demonstrations(
    lengths: list[int], terminated: list[bool], n_stack: int, kind: str, rng: np.random.Generator
) -> Demonstrations:
    """Episodes of T + 1 stacked observations, zero-padded at the start as VecFrameStack records them."""
    episodes = []
    for length, is_terminated in zip(lengths, terminated, strict=True):
        stacker = FrameStacker(1, n_stack, kind, rng)
        observations = [stacker.obs[0]] + [stacker.step(["continue"])[1][0] for _ in range(length)]
        episodes.append(
            Episode(
                observations=np.stack(observations),
                actions=rng.integers(0, 3, size=length),
                rewards=rng.integers(-3, 4, size=length).astype(np.float32),
                terminated=is_terminated,
                truncated=not is_terminated,
            )
        )
    return Demonstrations(episodes, stacker.space, ACTION_SPACE)


@st.composite
def scenarios(draw):
    n_envs = draw(st.integers(1, 3))
    n_steps = draw(st.integers(1, 4))
    n_episodes = draw(st.integers(0, 3))
    step = st.lists(
        st.sampled_from(["continue", "continue", "continue", "terminated", "truncated"]), min_size=n_envs, max_size=n_envs
    )
    # "cut": the algorithm resets the envs mid-episode (truncate_running_episodes); "reset": the buffer drops its agent data
    operation = st.tuples(st.integers(0, 24), step).map(lambda op: "reset" if op[0] == 0 else "cut" if op[0] <= 2 else op[1])
    rows = draw(st.integers(n_steps + 1, n_steps + 6))
    # Drawn first: list lengths drawn directly are mostly short, and the ring must often wrap around
    n_operations = draw(st.integers(0, 5 * rows + 5))
    return {
        "kind": draw(st.sampled_from(sorted(FRAME_SPACES))),
        "n_stack": draw(st.integers(1, 4)),
        "n_envs": n_envs,
        "n_steps": n_steps,
        "rows": rows,
        "slack": draw(st.integers(0, n_envs - 1)),
        "demo_lengths": draw(st.lists(st.integers(1, 6), min_size=n_episodes, max_size=n_episodes)),
        "demo_terminated": draw(st.lists(st.booleans(), min_size=n_episodes, max_size=n_episodes)),
        "operations": draw(st.lists(operation, min_size=n_operations, max_size=n_operations)),
        "gamma": draw(st.sampled_from([0.5, 0.99])),
        "handle_timeout": draw(st.booleans()),
        "prioritized": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


def assert_same_samples(compact: CompactDQfDReplayBuffer, reference: DQfDReplayBuffer, indices: np.ndarray) -> None:
    """Every field of ``_get_samples(indices)`` is identical (values, dtypes and shapes)."""
    expected, got = reference._get_samples(indices), compact._get_samples(indices)
    for name in expected._fields:
        if name == "indices":
            np.testing.assert_array_equal(got.indices, expected.indices)
        else:
            assert getattr(got, name).dtype == getattr(expected, name).dtype, name
            assert th.equal(getattr(got, name), getattr(expected, name)), name


def build(scenario: dict) -> tuple[CompactDQfDReplayBuffer, DQfDReplayBuffer]:
    """Both buffers, fed the same transitions: the reference stores the full stacks, the compact one the frames."""
    rng = np.random.default_rng(scenario["seed"])
    n_envs, n_stack, kind = scenario["n_envs"], scenario["n_stack"], scenario["kind"]
    stacker = FrameStacker(n_envs, n_stack, kind, rng)
    demonstrations = None
    if scenario["demo_lengths"]:
        demonstrations = make_demonstrations(scenario["demo_lengths"], scenario["demo_terminated"], n_stack, kind, rng)
    n_demo = 0 if demonstrations is None else demonstrations.n_transitions
    kwargs = dict(
        device="cpu",
        n_envs=n_envs,
        handle_timeout_termination=scenario["handle_timeout"],
        n_steps=scenario["n_steps"],
        gamma=scenario["gamma"],
        prioritized=scenario["prioritized"],
    )
    capacity = n_demo + scenario["rows"] * n_envs + scenario["slack"]
    reference = DQfDReplayBuffer(capacity, stacker.space, ACTION_SPACE, **kwargs)
    compact = CompactDQfDReplayBuffer(
        capacity, stacker.space, ACTION_SPACE, n_stack=n_stack, channels_order=FRAME_SPACES[kind][1], **kwargs
    )
    for buffer in (reference, compact):
        if demonstrations is not None:
            buffer.add_demonstrations(demonstrations)
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
    return compact, reference


@settings(max_examples=150, deadline=None)
@given(scenario=scenarios())
def test_same_samples_as_full_stack_reference(scenario: dict) -> None:
    """Every stored transition reads back exactly as from a buffer holding the stacks VecFrameStack produced."""
    compact, reference = build(scenario)
    assert compact.size() == reference.size()
    assert (compact.pos, compact.full, compact.buffer_size) == (reference.pos, reference.full, reference.buffer_size)
    if reference.size() == 0:
        return
    everything = np.arange(reference.size())
    assert_same_samples(compact, reference, everything)
    assert_same_samples(compact, reference, np.random.default_rng(0).permutation(everything))
    # Public sampling with the same random state and priorities picks the same rows
    td_errors = np.random.default_rng(1).normal(size=reference.size())
    for buffer in (reference, compact):
        buffer.update_priorities(everything, td_errors)
    np.random.seed(scenario["seed"])
    expected = reference.sample(16)
    np.random.seed(scenario["seed"])
    got = compact.sample(16)
    for name in expected._fields:
        value = getattr(expected, name)
        equal = np.array_equal if isinstance(value, np.ndarray) else th.equal
        assert equal(getattr(got, name), value), name


def filled(n_stack: int = 4, rows: int = 7, n_envs: int = 2, seed: int = 0) -> tuple[CompactDQfDReplayBuffer, FrameStacker]:
    """A compact buffer with demonstrations and a wrapped-around ring with episode ends."""
    rng = np.random.default_rng(seed)
    stacker = FrameStacker(n_envs, n_stack, "image_last", rng)
    demonstrations = make_demonstrations([3, 5], [True, False], n_stack, "image_last", rng)
    buffer = CompactDQfDReplayBuffer(
        8 + rows * n_envs,
        stacker.space,
        ACTION_SPACE,
        device="cpu",
        n_envs=n_envs,
        n_steps=3,
        n_stack=n_stack,
        channels_order="last",
    )
    buffer.add_demonstrations(demonstrations)
    for step in range(3 * rows):
        events = ["terminated" if (step + env) % 5 == 4 else "continue" for env in range(n_envs)]
        obs, next_obs, done, infos = stacker.step(events)
        buffer.add(obs, next_obs, np.zeros((n_envs, 1)), np.ones(n_envs), done, infos)
    return buffer, stacker


def test_memory_layout() -> None:
    """Frames only, no stored observations; channels detected as VecFrameStack does."""
    buffer, _ = filled()
    assert not hasattr(buffer, "observations") and not hasattr(buffer, "next_observations")
    assert "observations" not in buffer._storage
    assert buffer.frame_shape == (3, 2, 2) and buffer.stack_axis == 2
    # Agent frames: one per row plus n_stack - 1 rows, the pending next frames and the zero frame
    assert len(buffer._frames) == (buffer.buffer_size + 3) * 2 + 2 + 1
    # Demonstrations: T + 1 frames per episode and the zero frame
    assert len(buffer._demo_frames) == 4 + 6 + 1
    image = spaces.Box(0, 255, shape=(4, 84, 84), dtype=np.uint8)
    assert CompactDQfDReplayBuffer(100, image, ACTION_SPACE, n_steps=3, n_stack=4).stack_axis == 0
    assert CompactDQfDReplayBuffer(100, image, ACTION_SPACE, n_steps=3, n_stack=2, channels_order="first").frame_shape == (
        2,
        84,
        84,
    )


def test_final_frames_are_released() -> None:
    """The final frames of overwritten rows are dropped: the FIFO holds one frame per stored episode end."""
    buffer, _ = filled(rows=6)
    assert buffer._final_head - buffer._final_tail == int(np.count_nonzero(buffer.dones))


def test_pickle_round_trip(tmp_path) -> None:
    buffer, stacker = filled()
    path = tmp_path / "buffer.pkl"
    save_to_pkl(path, buffer)
    loaded = load_from_pkl(path)
    everything = np.arange(buffer.size())
    expected, got = buffer._get_samples(everything), loaded._get_samples(everything)
    for name in expected._fields:
        assert np.array_equal(np.asarray(getattr(got, name)), np.asarray(getattr(expected, name))), name
    assert np.shares_memory(loaded.dones, loaded._storage["dones"])
    # The loaded buffer continues the stored episodes
    obs, next_obs, done, infos = stacker.step(["continue", "continue"])
    loaded.add(obs, next_obs, np.zeros((2, 1)), np.ones(2), done, infos)


def test_add_refuses_stacks_it_cannot_rebuild() -> None:
    buffer, stacker = filled()
    size, pos = buffer.size(), buffer.pos
    obs, next_obs, done, infos = stacker.step(["continue", "continue"])
    with pytest.raises(ValueError, match="shifted by one frame"):
        buffer.add(obs, np.roll(next_obs, 1, axis=-1), np.zeros((2, 1)), np.ones(2), done, infos)
    # A consistent stack (next_obs shifts obs) whose newest frame is not the stored next frame of its env
    other_obs, other_next_obs = obs.copy(), next_obs.copy()
    other_obs[..., -2:] += 1
    other_next_obs[..., -4:-2] += 1
    with pytest.raises(ValueError, match="does not continue"):
        buffer.add(other_obs, other_next_obs, np.zeros((2, 1)), np.ones(2), done, infos)
    # The env was reset without truncate_running_episodes: the new episode's stacks do not continue the stored ones
    with pytest.raises(ValueError, match="does not continue"):
        stacker.reset()
        obs, next_obs, done, infos = stacker.step(["continue", "continue"])
        buffer.add(obs, next_obs, np.zeros((2, 1)), np.ones(2), done, infos)
    assert (buffer.size(), buffer.pos) == (size, pos)
    # After the cut, a new episode must start zero-padded
    buffer.truncate_running_episodes()
    with pytest.raises(ValueError, match="non-zero frames before its episode start"):
        buffer.add(np.full_like(obs, 7), np.full_like(next_obs, 7), np.zeros((2, 1)), np.ones(2), done, infos)
    buffer.add(obs, next_obs, np.zeros((2, 1)), np.ones(2), done, infos)


def test_demonstrations_must_be_zero_padded_stacks() -> None:
    stacked_space = spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
    # Padded with the first frame (gymnasium's FrameStackObservation default), not with zeros
    observations = np.array([[1, 1, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3]], dtype=np.float32)
    demonstrations = Demonstrations(
        [
            Episode(
                observations=observations,
                actions=np.zeros(2, dtype=np.int64),
                rewards=np.ones(2),
                terminated=True,
                truncated=False,
            )
        ],
        stacked_space,
        ACTION_SPACE,
    )
    buffer = CompactDQfDReplayBuffer(20, stacked_space, ACTION_SPACE, n_steps=2, n_stack=2)
    with pytest.raises(ValueError, match="non-zero frames before its episode start"):
        buffer.add_demonstrations(demonstrations)
    assert buffer.n_demonstrations == 0 and len(buffer._demo_frames) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_stack": 0}, ValueError, "n_stack must be an integer >= 1"),
        ({"n_stack": 2.0}, ValueError, "n_stack must be an integer >= 1"),
        ({"n_stack": 3}, ValueError, "cannot hold n_stack=3 frames"),
        ({"channels_order": "middle"}, ValueError, "channels_order"),
        ({"observation_space": spaces.Discrete(4)}, TypeError, "Box observation space"),
        ({"optimize_memory_usage": True}, ValueError, "optimize_memory_usage"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    arguments = {"observation_space": spaces.Box(0, 1, shape=(4,)), "n_stack": 2, **kwargs}
    with pytest.raises(error, match=match):
        CompactDQfDReplayBuffer(100, action_space=ACTION_SPACE, n_steps=3, **arguments)


def test_dqfd_end_to_end() -> None:
    """DQfD trains unchanged with the compact buffer behind VecFrameStack, demonstrations recorded in the same env."""
    env = VecFrameStack(make_vec_env("CartPole-v1", n_envs=2, seed=0), 4)
    rng = np.random.default_rng(0)
    recorder = VecFrameStack(make_vec_env("CartPole-v1", n_envs=1, seed=1), 4)
    episodes, observations, actions = [], [recorder.reset()[0]], []
    while len(episodes) < 3:
        action = rng.integers(0, 2, size=1)
        obs, _, done, infos = recorder.step(action)
        actions.append(int(action[0]))
        if done[0]:
            observations.append(infos[0]["terminal_observation"])
            episodes.append(
                Episode(
                    observations=np.stack(observations),
                    actions=np.array(actions),
                    rewards=np.ones(len(actions), dtype=np.float32),
                    terminated=not infos[0].get("TimeLimit.truncated", False),
                    truncated=infos[0].get("TimeLimit.truncated", False),
                )
            )
            observations, actions = [obs[0]], []
        else:
            observations.append(obs[0])
    demonstrations = Demonstrations(episodes, env.observation_space, env.action_space)
    model = DQfD(
        "MlpPolicy",
        env,
        demonstrations=demonstrations,
        replay_buffer_class=CompactDQfDReplayBuffer,
        replay_buffer_kwargs={"n_stack": 4},
        buffer_size=2_000,
        learning_starts=50,
        pretrain_steps=20,
        n_steps=5,
        device="cpu",
        seed=0,
    )
    model.learn(300)
    buffer = model.replay_buffer
    assert isinstance(buffer, CompactDQfDReplayBuffer)
    assert buffer.n_demonstrations == demonstrations.n_transitions and buffer.n_agent_transitions == 300
    batch = buffer.sample(32)
    assert batch.observations.shape == (32, 16) and batch.n_step_next_observations.shape == (32, 16)
    # A second learn() resets the env mid-episode: the running episodes are cut, and the new ones accepted
    model.learn(100)
    assert buffer.n_agent_transitions == 400
