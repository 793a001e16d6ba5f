"""DQfDReplayBuffer: n-step fields against a pure-Python reference, demo permanence, priorities, sampling, errors, pickling."""

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3 import DQN
from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_dqfd.common.buffers import DQfDReplayBuffer, DQfDReplayBufferSamples
from sb3_dqfd.common.demonstrations import Demonstrations, Episode

OBS_SPACE = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
ACTION_SPACE = spaces.Discrete(3)


# --------------------------------------------------------------------------------------------------------------------
# Pure-Python reference: every stream (a demonstration episode, or one env's column in time order) is a list of steps.
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class Step:
    """One transition as the reference sees it; observations are identified by their first coordinate."""

    obs_id: float
    next_obs_id: float
    reward: float
    ended: bool  # the episode ended here (termination or truncation)
    bootstraps: bool  # ...and the end is a truncation that bootstraps from next_obs


def reference_n_step(stream: list[Step], start: int, n_steps: int, gamma: float) -> tuple[float, float, float, float]:
    """(return, id of the bootstrap observation, done, discount) of the window starting at stream[start], by a loop."""
    n_step_return = 0.0
    for k, position in enumerate(range(start, len(stream)), start=1):
        step = stream[position]
        n_step_return += gamma ** (k - 1) * step.reward
        # Stop at an episode end, at the newest step of the stream (the write position), or after n steps
        if step.ended or position == len(stream) - 1 or k == n_steps:
            return n_step_return, step.next_obs_id, float(step.ended and not step.bootstraps), gamma**k
    raise AssertionError("unreachable: the loop always returns on the last step")


def make_demonstrations(lengths: list[int], terminated: list[bool], rng: np.random.Generator) -> Demonstrations:
    """Episodes whose observations are [1000 * (episode + 1) + t, 0], rewards small integers."""
    episodes = []
    for number, (length, is_terminated) in enumerate(zip(lengths, terminated, strict=True)):
        ids = 1000.0 * (number + 1) + np.arange(length + 1)
        observations = np.stack([ids, np.zeros(length + 1)], axis=1).astype(np.float32)
        episodes.append(
            Episode(
                observations=observations,
                actions=rng.integers(0, 3, size=length),
                rewards=rng.integers(-3, 4, size=length).astype(np.float32),
                terminated=is_terminated,
                truncated=not is_terminated,
            )
        )
    return Demonstrations(episodes, OBS_SPACE, ACTION_SPACE)


def demonstration_streams(demonstrations: Demonstrations) -> list[list[Step]]:
    streams = []
    for episode in demonstrations:
        ids = episode.observations[:, 0]
        last = len(episode) - 1
        streams.append(
            [
                Step(ids[t], ids[t + 1], float(episode.rewards[t]), t == last, t == last and episode.truncated)
                for t in range(len(episode))
            ]
        )
    return streams


def add_agent_steps(
    buffer: DQfDReplayBuffer, events: list[list[str]], rng: np.random.Generator, handle_timeout: bool
) -> list[list[Step]]:
    """
    Feed steps to ``buffer.add`` as SB3's ``_store_transition`` does (on a done step, next_obs is the terminal
    observation, not the reset observation that the next step starts from), and return each env's stream.

    Agent observation ids are ``1 + step * n_envs + env`` (positive); a terminal observation has id ``-obs_id``.
    """
    n_envs = buffer.n_envs
    streams: list[list[Step]] = [[] for _ in range(n_envs)]
    for step_number, step_events in enumerate(events):
        obs_ids = 1.0 + step_number * n_envs + np.arange(n_envs)
        next_ids = obs_ids + n_envs  # the next step's observation, unless the episode ends
        done = np.array([event != "continue" for event in step_events])
        next_ids = np.where(done, -obs_ids, next_ids)
        rewards = rng.integers(-3, 4, size=n_envs).astype(np.float32)
        infos = [
            {"TimeLimit.truncated": True, "terminal_observation": np.array([-obs_id, 0.0])}
            if event == "truncated"
            else ({"terminal_observation": np.array([-obs_id, 0.0])} if event == "terminated" else {})
            for event, obs_id in zip(step_events, obs_ids, strict=True)
        ]
        buffer.add(
            np.stack([obs_ids, np.zeros(n_envs)], axis=1),
            np.stack([next_ids, np.zeros(n_envs)], axis=1),
            rng.integers(0, 3, size=(n_envs, 1)),
            rewards,
            done,
            infos,
        )
        for env in range(n_envs):
            streams[env].append(
                Step(
                    obs_ids[env],
                    next_ids[env],
                    float(rewards[env]),
                    bool(done[env]),
                    step_events[env] == "truncated" and handle_timeout,
                )
            )
    return streams


def check_against_reference(
    samples: DQfDReplayBufferSamples, streams: list[list[Step]], n_steps: int, gamma: float, demo_ids: set[float]
) -> None:
    """Every row of ``samples`` matches the reference computed for the transition its observation identifies."""
    where = {step.obs_id: (stream, position) for stream in streams for position, step in enumerate(stream)}
    observations = samples.observations.numpy()
    for row in range(len(observations)):
        obs_id = float(observations[row, 0])
        stream, position = where[obs_id]
        step = stream[position]
        expected_return, bootstrap_id, done, discount = reference_n_step(stream, position, n_steps, gamma)
        assert samples.n_step_returns[row, 0].item() == pytest.approx(expected_return, rel=1e-5, abs=1e-5)
        assert samples.n_step_next_observations[row, 0].item() == bootstrap_id
        assert samples.n_step_dones[row, 0].item() == done
        assert samples.n_step_discounts[row, 0].item() == pytest.approx(discount, rel=1e-6, abs=1e-30)
        # 1-step fields of the same transition
        assert samples.rewards[row, 0].item() == step.reward
        assert samples.next_observations[row, 0].item() == step.next_obs_id
        assert samples.dones[row, 0].item() == float(step.ended and not step.bootstraps)
        assert samples.is_demo[row, 0].item() == float(obs_id in demo_ids)


@st.composite
def scenarios(draw):
    n_envs = draw(st.integers(1, 3))
    n_steps = draw(st.integers(1, 5))
    rows = draw(st.integers(n_steps + 1, n_steps + 6))
    n_episodes = draw(st.integers(0, 3))
    demo_lengths = draw(st.lists(st.integers(1, 6), min_size=n_episodes, max_size=n_episodes))
    demo_terminated = draw(st.lists(st.booleans(), min_size=n_episodes, max_size=n_episodes))
    event = st.sampled_from(["continue", "continue", "continue", "terminated", "truncated"])
    events = draw(st.lists(st.lists(event, min_size=n_envs, max_size=n_envs), max_size=3 * rows + 2))
    return {
        "n_envs": n_envs,
        "n_steps": n_steps,
        "rows": rows,
        # capacity not always a multiple of n_envs: the remainder is left unused, as in SB3
        "slack": draw(st.integers(0, n_envs - 1)),
        "demo_lengths": demo_lengths,
        "demo_terminated": demo_terminated,
        "events": events,
        "gamma": draw(st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0])),
        "handle_timeout": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


def build(
    scenario: dict, prioritized: bool = False, demo_ratio: float | None = None
) -> tuple[DQfDReplayBuffer, list[list[Step]], set[float]]:
    rng = np.random.default_rng(scenario["seed"])
    demonstrations = (
        make_demonstrations(scenario["demo_lengths"], scenario["demo_terminated"], rng) if scenario["demo_lengths"] else None
    )
    n_demo = 0 if demonstrations is None else demonstrations.n_transitions
    buffer = DQfDReplayBuffer(
        n_demo + scenario["rows"] * scenario["n_envs"] + scenario["slack"],
        OBS_SPACE,
        ACTION_SPACE,
        device="cpu",
        n_envs=scenario["n_envs"],
        handle_timeout_termination=scenario["handle_timeout"],
        n_steps=scenario["n_steps"],
        gamma=scenario["gamma"],
        prioritized=prioritized,
        demo_ratio=demo_ratio,
    )
    demo_streams: list[list[Step]] = []
    if demonstrations is not None:
        buffer.add_demonstrations(demonstrations)
        demo_streams = demonstration_streams(demonstrations)
    agent_streams = add_agent_steps(buffer, scenario["events"], rng, scenario["handle_timeout"])
    demo_ids = {step.obs_id for stream in demo_streams for step in stream}
    return buffer, demo_streams + agent_streams, demo_ids


@settings(max_examples=60, deadline=None)
@given(scenario=scenarios())
def test_every_stored_transition_matches_reference(scenario: dict) -> None:
    buffer, streams, demo_ids = build(scenario)
    n_envs, rows = scenario["n_envs"], scenario["rows"]
    assert buffer.buffer_size == rows
    assert buffer.n_demonstrations == sum(scenario["demo_lengths"])
    if buffer.size() == 0:
        return
    samples = buffer._get_samples(np.arange(buffer.size()))
    # The buffer holds exactly the demonstrations and the last `rows` steps of every env (FIFO)
    stored = set(samples.observations[:, 0].tolist())
    kept_steps = scenario["events"][-rows:]
    first_kept = len(scenario["events"]) - len(kept_steps)
    agent_ids = {1.0 + step * n_envs + env for step in range(first_kept, len(scenario["events"])) for env in range(n_envs)}
    assert stored == demo_ids | agent_ids
    assert buffer.size() == len(demo_ids) + len(agent_ids)
    check_against_reference(samples, streams, scenario["n_steps"], scenario["gamma"], demo_ids)
    np.testing.assert_array_equal(samples.indices, np.arange(buffer.size()))


@settings(max_examples=25, deadline=None)
@given(scenario=scenarios(), prioritized=st.booleans(), demo_ratio=st.sampled_from([None, 0.3]))
def test_sampled_rows_are_aligned(scenario: dict, prioritized: bool, demo_ratio: float | None) -> None:
    """Public sample(): each row's fields, is_demo, index and weight belong to the same transition."""
    buffer, streams, demo_ids = build(scenario, prioritized=prioritized, demo_ratio=demo_ratio)
    if buffer.size() == 0:
        return
    np.random.seed(scenario["seed"])
    # Distinct priorities, so that a weight taken from another row would differ
    buffer.update_priorities(np.arange(buffer.size()), np.random.exponential(size=buffer.size()))
    samples = buffer.sample(64)
    check_against_reference(samples, streams, scenario["n_steps"], scenario["gamma"], demo_ids)
    # indices -> the observation stored at that index (SB3 layout [row, env] for the agent region)
    n_demo, n_envs = buffer.n_demonstrations, buffer.n_envs
    for row, index in enumerate(samples.indices):
        if index < n_demo:
            stored = buffer._storage["observations"][index]
        else:
            stored = buffer.observations[(index - n_demo) // n_envs, (index - n_demo) % n_envs]
        np.testing.assert_array_equal(samples.observations[row].numpy(), stored)
    np.testing.assert_array_equal(samples.is_demo[:, 0].numpy(), samples.indices < n_demo)
    assert th.all(samples.weights > 0) and th.all(samples.weights <= 1)
    if demo_ratio is not None and n_demo > 0 and buffer.n_agent_transitions > 0:
        assert samples.is_demo.sum().item() == round(demo_ratio * 64)
    if prioritized:
        # The weight of each row is computed from the priority at that row's index
        population = np.arange(buffer.size())
        if demo_ratio is not None and n_demo > 0 and buffer.n_agent_transitions > 0:
            min_priority = np.where(
                samples.indices < n_demo,
                buffer.priorities(population[:n_demo]).min(),
                buffer.priorities(population[n_demo:]).min(),
            )
        else:
            min_priority = buffer.priorities(population).min()
        expected = (buffer.priorities(samples.indices) / min_priority) ** -buffer.beta
        np.testing.assert_allclose(samples.weights[:, 0].numpy(), expected, rtol=1e-6)


# --------------------------------------------------------------------------------------------------------------------
# Integration with SB3's own transition storage (VecEnv auto-reset, terminal_observation, TimeLimit.truncated)
# --------------------------------------------------------------------------------------------------------------------
class CounterEnv(gym.Env):
    """Observation [1000 * env_id + episode, t]; reward t + 1; episode e terminates after 2 + e % 6 steps."""

    def __init__(self, env_id: int) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.env_id, self.episode, self.t = env_id, -1, 0

    def _obs(self) -> np.ndarray:
        return np.array([1000 * self.env_id + self.episode, self.t], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), float(self.t), self.t >= 2 + self.episode % 6, False, {}


class Recorder(gym.Wrapper):
    """Logs every step as the reference sees it (outside TimeLimit, so truncations are visible)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.log: list[tuple[np.ndarray, np.ndarray, float, bool, bool]] = []

    def reset(self, **kwargs):
        self.last_obs, info = self.env.reset(**kwargs)
        return self.last_obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.log.append((self.last_obs, obs, float(reward), terminated, truncated))
        self.last_obs = obs
        return obs, reward, terminated, truncated, info


def test_sb3_store_transition_integration() -> None:
    """Fill the buffer through SB3 DQN's collect_rollouts (real auto-reset and TimeLimit) and check the n-step fields."""
    n_envs, n_steps, gamma = 2, 3, 0.9
    vec_env = DummyVecEnv(
        [lambda i=i: Recorder(gym.wrappers.TimeLimit(CounterEnv(i), max_episode_steps=5)) for i in range(n_envs)]
    )
    model = DQN(
        "MlpPolicy",
        vec_env,
        buffer_size=n_envs * 20,
        learning_starts=10_000,  # never trains: only storage is exercised
        replay_buffer_class=DQfDReplayBuffer,
        replay_buffer_kwargs={"n_steps": n_steps, "gamma": gamma},
        device="cpu",
        seed=0,
    )
    model.learn(total_timesteps=n_envs * 57)
    buffer = model.replay_buffer
    assert isinstance(buffer, DQfDReplayBuffer) and buffer.full
    streams = []
    for recorder in vec_env.envs:
        # Observation ids: 100 * (1000 * env + episode) + t, unique per step
        encode = lambda obs: float(100 * obs[0] + obs[1])  # noqa: E731
        streams.append(
            [
                Step(encode(obs), encode(next_obs), reward, terminated or truncated, truncated and not terminated)
                for obs, next_obs, reward, terminated, truncated in recorder.log
            ]
        )
    samples = buffer._get_samples(np.arange(buffer.size()))
    # Re-encode the sampled observations the same way, then compare with the reference
    encoded = samples._replace(
        observations=100 * samples.observations[:, :1] + samples.observations[:, 1:],
        next_observations=100 * samples.next_observations[:, :1] + samples.next_observations[:, 1:],
        n_step_next_observations=100 * samples.n_step_next_observations[:, :1] + samples.n_step_next_observations[:, 1:],
    )
    check_against_reference(encoded, streams, n_steps, gamma, demo_ids=set())
    # Truncations (5-step episodes) and terminations both occurred, and were kept apart
    assert any(step.bootstraps for stream in streams for step in stream[-20:])
    assert any(step.ended and not step.bootstraps for stream in streams for step in stream[-20:])


# --------------------------------------------------------------------------------------------------------------------
# Demonstration region
# --------------------------------------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(
    n_envs=st.integers(1, 3),
    n_adds=st.integers(0, 200),
    lengths=st.lists(st.integers(1, 8), min_size=1, max_size=4),
    extra=st.integers(0, 20),
    seed=st.integers(0, 2**16),
)
def test_demonstrations_never_evicted(n_envs: int, n_adds: int, lengths: list[int], extra: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    demonstrations = make_demonstrations(lengths, [True] * len(lengths), rng)
    n_steps = 3
    capacity = demonstrations.n_transitions + n_envs * (n_steps + 1) + extra
    buffer = DQfDReplayBuffer(capacity, OBS_SPACE, ACTION_SPACE, device="cpu", n_envs=n_envs, n_steps=n_steps)
    buffer.add_demonstrations(demonstrations)
    before = {key: array[: buffer.n_demonstrations].copy() for key, array in buffer._storage.items()}
    demo_priorities = buffer.priorities(np.arange(buffer.n_demonstrations)).copy()
    events = [[str(rng.choice(["continue", "terminated", "truncated"])) for _ in range(n_envs)] for _ in range(n_adds)]
    add_agent_steps(buffer, events, rng, handle_timeout=True)
    assert buffer.n_demonstrations == demonstrations.n_transitions
    for key, array in before.items():
        np.testing.assert_array_equal(buffer._storage[key][: buffer.n_demonstrations], array)
    np.testing.assert_array_equal(buffer.priorities(np.arange(buffer.n_demonstrations)), demo_priorities)
    # The agent ring holds what is left, never less than n_steps + 1 rows
    assert buffer.buffer_size == (capacity - buffer.n_demonstrations) // n_envs >= n_steps + 1
    assert buffer.size() == buffer.n_demonstrations + n_envs * min(n_adds, buffer.buffer_size)
    assert buffer.full == (n_adds >= buffer.buffer_size)


def test_agent_layout_is_sb3_layout() -> None:
    """Agent index n_demo + row * n_envs + env <-> buffer.observations[row, env], a view of the flat storage."""
    rng = np.random.default_rng(0)
    buffer, *_ = build(
        {
            "n_envs": 3,
            "n_steps": 2,
            "rows": 5,
            "slack": 2,
            "demo_lengths": [4],
            "demo_terminated": [True],
            "events": [["continue"] * 3] * 7,
            "gamma": 0.9,
            "handle_timeout": True,
            "seed": 0,
        }
    )
    assert buffer.observations.shape == (5, 3, 2)
    assert np.shares_memory(buffer.observations, buffer._storage["observations"])
    for index in rng.integers(4, buffer.size(), size=20):
        row, env = divmod(index - 4, 3)
        np.testing.assert_array_equal(buffer._storage["observations"][index], buffer.observations[row, env])
    # Step 7 overwrote row 0, steps 5 and 6 are in rows 0 and 1
    assert buffer.pos == 2 and buffer.full
    assert buffer.observations[1, 2, 0] == 1 + 6 * 3 + 2


def test_add_demonstrations_appends_and_keeps_priorities() -> None:
    rng = np.random.default_rng(0)
    first, second = make_demonstrations([3], [True], rng), make_demonstrations([2, 2], [False, True], rng)
    buffer = DQfDReplayBuffer(50, OBS_SPACE, ACTION_SPACE, device="cpu", n_steps=2)
    buffer.add_demonstrations(first)
    buffer.update_priorities(np.arange(3), np.array([1.0, 2.0, 3.0]))
    old = buffer.priorities(np.arange(3)).copy()
    buffer.add_demonstrations(second)
    assert buffer.n_demonstrations == 7
    np.testing.assert_array_equal(buffer.priorities(np.arange(3)), old)
    np.testing.assert_array_equal(buffer.priorities(np.arange(3, 7)), buffer.max_priority)
    assert buffer.buffer_size == 43


def test_reset_keeps_demonstrations() -> None:
    rng = np.random.default_rng(0)
    buffer = DQfDReplayBuffer(30, OBS_SPACE, ACTION_SPACE, device="cpu", n_steps=2)
    buffer.add_demonstrations(make_demonstrations([4], [True], rng))
    add_agent_steps(buffer, [["continue"]] * 10, rng, handle_timeout=True)
    buffer.reset()
    assert buffer.size() == 4 and buffer.n_agent_transitions == 0 and buffer.n_demonstrations == 4
    assert buffer.priorities(np.arange(4, 30)).sum() == 0
    assert np.all(buffer.sample(32).is_demo.numpy() == 1)


# --------------------------------------------------------------------------------------------------------------------
# Priorities and sampling
# --------------------------------------------------------------------------------------------------------------------
def filled_buffer(n_agent_steps: int = 12, **kwargs) -> DQfDReplayBuffer:
    rng = np.random.default_rng(0)
    buffer = DQfDReplayBuffer(40, OBS_SPACE, ACTION_SPACE, device="cpu", n_steps=3, **kwargs)
    buffer.add_demonstrations(make_demonstrations([3, 5], [True, False], rng))
    add_agent_steps(buffer, [["continue"]] * n_agent_steps, rng, handle_timeout=True)
    return buffer


def chi_square_ok(counts: np.ndarray, probabilities: np.ndarray) -> bool:
    """Pearson chi-square below mean + 6 standard deviations of its distribution (k - 1 degrees of freedom)."""
    expected = counts.sum() * probabilities
    statistic = ((counts - expected) ** 2 / expected).sum()
    dof = len(counts) - 1
    return statistic < dof + 6 * np.sqrt(2 * dof)


def test_demo_bonus_follows_index_identity() -> None:
    """go2sea bug: the bonus was applied by batch position. Here demo rows are last in the batch."""
    buffer = filled_buffer(alpha=0.5, agent_eps=0.01, demo_eps=1.0)
    indices = np.array([12, 9, 0, 5, 3, 7])  # 8 demo transitions (0..7), then agent
    td_errors = np.array([0.5, -2.0, 0.25, 1.0, -0.5, 3.0])
    buffer.update_priorities(indices, td_errors)
    expected = (np.abs(td_errors) + np.where(indices < 8, 1.0, 0.01)) ** 0.5
    np.testing.assert_allclose(buffer.priorities(indices), expected)
    assert buffer.max_priority == pytest.approx(expected.max())
    # New agent transitions get the largest priority so far
    add_agent_steps(buffer, [["continue"]], np.random.default_rng(1), handle_timeout=True)
    assert buffer.priorities(np.array([8 + 12]))[0] == buffer.max_priority


@pytest.mark.parametrize("demo_ratio", [None, 0.25])
def test_sampling_frequencies_follow_priorities(demo_ratio: float | None) -> None:
    np.random.seed(0)
    rng = np.random.default_rng(0)
    buffer = filled_buffer(demo_ratio=demo_ratio)
    size = buffer.size()
    buffer.update_priorities(np.arange(size), rng.exponential(size=size))
    priorities = buffer.priorities(np.arange(size))
    counts = np.zeros(size)
    for _ in range(400):
        np.add.at(counts, buffer.sample(64).indices, 1)
    if demo_ratio is None:
        assert chi_square_ok(counts, priorities / priorities.sum())
    else:
        for part in (slice(0, 8), slice(8, size)):
            assert chi_square_ok(counts[part], priorities[part] / priorities[part].sum())
        assert counts[:8].sum() == 400 * 16
    # The test can fail: uniform frequencies are rejected
    assert not chi_square_ok(np.full(size, counts.sum() / size), priorities / priorities.sum())


@pytest.mark.parametrize("demo_ratio", [None, 0.5])
def test_importance_weights(demo_ratio: float | None) -> None:
    """w_i = (N P(i))^-beta / max_j (N P(j))^-beta over the sampled population (each part with demo_ratio)."""
    np.random.seed(1)
    rng = np.random.default_rng(1)
    buffer = filled_buffer(demo_ratio=demo_ratio, beta=0.7)
    size = buffer.size()
    buffer.update_priorities(np.arange(size), rng.exponential(size=size))
    priorities = buffer.priorities(np.arange(size))
    samples = buffer.sample(32)
    if demo_ratio is None:
        probabilities = priorities / priorities.sum()
        population = np.full(32, size)
        max_weight = (size * probabilities.min()) ** -0.7
        expected = (population * probabilities[samples.indices]) ** -0.7 / max_weight
    else:
        is_demo = samples.indices < 8
        part_priorities = [priorities[8:], priorities[:8]]
        expected = np.array(
            [
                (len(part_priorities[d]) * priorities[i] / part_priorities[d].sum()) ** -0.7
                / (len(part_priorities[d]) * part_priorities[d].min() / part_priorities[d].sum()) ** -0.7
                for i, d in zip(samples.indices, is_demo.astype(int), strict=True)
            ]
        )
    np.testing.assert_allclose(samples.weights[:, 0].numpy(), expected, rtol=1e-5)
    buffer.beta = 0.0
    assert th.all(buffer.sample(32).weights == 1)


@pytest.mark.parametrize("prioritized", [True, False])
@pytest.mark.parametrize(("demo_ratio", "batch_size"), [(0.0, 32), (0.3, 32), (0.5, 7), (1.0, 16), (0.125, 100)])
def test_demo_ratio_exact_counts(prioritized: bool, demo_ratio: float, batch_size: int) -> None:
    np.random.seed(2)
    buffer = filled_buffer(demo_ratio=demo_ratio, prioritized=prioritized)
    for _ in range(5):
        assert buffer.sample(batch_size).is_demo.sum().item() == round(demo_ratio * batch_size)
    # No agent data yet: every row is a demonstration
    empty = filled_buffer(n_agent_steps=0, demo_ratio=demo_ratio, prioritized=prioritized)
    assert empty.sample(batch_size).is_demo.sum().item() == batch_size


@pytest.mark.parametrize("prioritized", [True, False])
def test_demo_only(prioritized: bool) -> None:
    buffer = filled_buffer(prioritized=prioritized)
    samples = buffer.sample(50, demo_only=True)
    assert th.all(samples.is_demo == 1) and np.all(samples.indices < 8)


def test_uniform_sampling() -> None:
    np.random.seed(3)
    buffer = filled_buffer(prioritized=False)
    buffer.update_priorities(np.arange(4), np.array([100.0, 0.0, 0.0, 0.0]))  # no effect
    counts = np.bincount(np.concatenate([buffer.sample(64).indices for _ in range(300)]), minlength=buffer.size())
    assert chi_square_ok(counts, np.full(buffer.size(), 1 / buffer.size()))
    assert th.all(buffer.sample(8).weights == 1)


def test_zero_priorities_are_never_sampled() -> None:
    np.random.seed(4)
    buffer = filled_buffer(agent_eps=0.0, demo_eps=0.0)
    buffer.update_priorities(np.arange(buffer.size()), np.where(np.arange(buffer.size()) % 2 == 0, 0.0, 1.0))
    indices = np.concatenate([buffer.sample(64).indices for _ in range(50)])
    assert np.all(indices % 2 == 1)


def test_vec_normalize_is_applied() -> None:
    class FakeVecNormalize:
        def normalize_obs(self, obs):
            return obs * 2

        def normalize_reward(self, reward):
            return (reward * 3).astype(np.float32)

    buffer = filled_buffer()
    indices = np.arange(buffer.size())
    raw = buffer._get_samples(indices)
    normalized = buffer._get_samples(indices, env=FakeVecNormalize())  # type: ignore[arg-type]
    for field in ("observations", "next_observations", "n_step_next_observations"):
        th.testing.assert_close(getattr(normalized, field), 2 * getattr(raw, field))
    for field in ("rewards", "n_step_returns"):
        th.testing.assert_close(getattr(normalized, field), 3 * getattr(raw, field))


@pytest.mark.parametrize(
    ("observation_space", "action_space"),
    [(spaces.Discrete(7), spaces.Box(-1, 1, shape=(2,))), (spaces.Box(0, 255, (3, 4), np.uint8), spaces.Discrete(2))],
)
def test_other_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    buffer = DQfDReplayBuffer(40, observation_space, action_space, device="cpu", n_envs=2, n_steps=2)
    observation_space.seed(0)
    action_space.seed(0)
    episode_obs = np.stack([observation_space.sample() for _ in range(4)])
    episode_actions = np.stack([action_space.sample() for _ in range(3)])
    buffer.add_demonstrations(Demonstrations([Episode(episode_obs, episode_actions, np.ones(3, np.float32), True, False)]))
    for _ in range(5):
        obs = np.stack([observation_space.sample() for _ in range(2)])
        actions = np.stack([action_space.sample() for _ in range(2)])
        buffer.add(obs, obs, actions, np.ones(2), np.zeros(2, dtype=bool), [{}, {}])
    samples = buffer.sample(16)
    assert samples.observations.shape == (16, *buffer.obs_shape)
    assert samples.actions.shape == (16, buffer.action_dim)
    assert samples.n_step_next_observations.shape == samples.observations.shape


def test_dtypes_and_shapes() -> None:
    samples = filled_buffer().sample(16)
    assert samples.actions.dtype == th.int64 and samples.actions.shape == (16, 1)
    assert samples.observations.dtype == th.float32
    for field in ("dones", "rewards", "n_step_returns", "n_step_dones", "n_step_discounts", "is_demo", "weights"):
        assert getattr(samples, field).shape == (16, 1) and getattr(samples, field).dtype == th.float32, field
    assert samples.indices.shape == (16,) and samples.indices.dtype == np.int64


# --------------------------------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------------------------------
def test_pickle_round_trip(tmp_path) -> None:
    buffer = filled_buffer(n_agent_steps=50)
    buffer.update_priorities(np.arange(buffer.size()), np.linspace(-2, 2, buffer.size()))
    save_to_pkl(tmp_path / "buffer.pkl", buffer)
    loaded = load_from_pkl(tmp_path / "buffer.pkl")
    assert isinstance(loaded, DQfDReplayBuffer)
    assert (loaded.n_demonstrations, loaded.pos, loaded.full, loaded.size()) == (
        buffer.n_demonstrations,
        buffer.pos,
        buffer.full,
        buffer.size(),
    )
    for key, array in buffer._storage.items():
        np.testing.assert_array_equal(loaded._storage[key], array)
        # The SB3-layout attributes are views of the loaded storage again, not detached copies
        assert np.shares_memory(getattr(loaded, key), loaded._storage[key])
    np.testing.assert_array_equal(loaded.priorities(np.arange(buffer.size())), buffer.priorities(np.arange(buffer.size())))
    assert loaded.max_priority == buffer.max_priority
    np.random.seed(5)
    expected = buffer.sample(32)
    np.random.seed(5)
    got = loaded.sample(32)
    for field, value in expected._asdict().items():
        np.testing.assert_array_equal(np.asarray(getattr(got, field)), np.asarray(value), err_msg=field)
    # Still usable: adding writes through the views into the storage
    add_agent_steps(loaded, [["continue"]], np.random.default_rng(0), handle_timeout=True)
    assert loaded._storage["observations"][8 + ((loaded.pos - 1) % loaded.buffer_size), 0] == 1.0


# --------------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"demo_ratio": 1.5}, "demo_ratio"),
        ({"demo_ratio": -0.1}, "demo_ratio"),
        ({"alpha": -1.0}, "alpha"),
        ({"n_steps": 0}, "n_steps"),
        ({"n_steps": 2.5}, "n_steps"),
        ({"agent_eps": -1e-3}, "agent_eps"),
        ({"demo_eps": -1.0}, "demo_eps"),
        ({"beta": -0.1}, "beta"),
        ({"gamma": 1.5}, "gamma"),
        ({"optimize_memory_usage": True, "handle_timeout_termination": False}, "optimize_memory_usage"),
        ({"buffer_size": 10, "n_envs": 2, "n_steps": 5}, "at least n_envs \\* \\(n_steps \\+ 1\\) = 12"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict, match: str) -> None:
    arguments = {"buffer_size": 100, "observation_space": OBS_SPACE, "action_space": ACTION_SPACE, "device": "cpu"}
    with pytest.raises(ValueError, match=match):
        DQfDReplayBuffer(**{**arguments, **kwargs})


def test_demonstrations_must_fit() -> None:
    rng = np.random.default_rng(0)
    buffer = DQfDReplayBuffer(20, OBS_SPACE, ACTION_SPACE, device="cpu", n_envs=2, n_steps=3)
    with pytest.raises(ValueError, match="must be at least n_demonstrations \\+ n_envs \\* \\(n_steps \\+ 1\\) = 23"):
        buffer.add_demonstrations(make_demonstrations([15], [True], rng))
    buffer.add_demonstrations(make_demonstrations([12], [True], rng))  # 12 + 2 * 4 = 20 fits exactly
    assert buffer.buffer_size == 4


def test_bad_demonstrations() -> None:
    rng = np.random.default_rng(0)
    buffer = DQfDReplayBuffer(40, OBS_SPACE, ACTION_SPACE, device="cpu", n_steps=2)
    with pytest.raises(TypeError, match="Demonstrations"):
        buffer.add_demonstrations([1, 2, 3])  # type: ignore[arg-type]
    wrong_obs = Episode(np.zeros((3, 5), np.float32), np.zeros(2, int), np.zeros(2, np.float32), True, False)
    with pytest.raises(ValueError, match="observations have shape \\(5,\\)"):
        buffer.add_demonstrations(Demonstrations([wrong_obs]))
    wrong_action = Episode(np.zeros((3, 2), np.float32), np.array([0, 3]), np.zeros(2, np.float32), True, False)
    with pytest.raises(ValueError, match="actions must lie in \\[0, 3\\)"):
        buffer.add_demonstrations(Demonstrations([wrong_action]))
    add_agent_steps(buffer, [["continue"]], rng, handle_timeout=True)
    with pytest.raises(ValueError, match="before agent transitions are added"):
        buffer.add_demonstrations(make_demonstrations([2], [True], rng))


def test_bad_sample_and_update_arguments() -> None:
    buffer = DQfDReplayBuffer(40, OBS_SPACE, ACTION_SPACE, device="cpu", n_steps=2)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(4)
    with pytest.raises(ValueError, match="no demonstrations"):
        buffer.sample(4, demo_only=True)
    add_agent_steps(buffer, [["continue"]] * 5, np.random.default_rng(0), handle_timeout=True)
    with pytest.raises(ValueError, match="batch_size"):
        buffer.sample(0)
    with pytest.raises(ValueError, match="2 indices but 3 TD errors"):
        buffer.update_priorities(np.array([0, 1]), np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        buffer.update_priorities(np.array([0]), np.array([np.nan]))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        buffer.update_priorities(np.array([5]), np.array([1.0]))
    with pytest.raises(ValueError, match="integers"):
        buffer.update_priorities(np.array([0.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="beta"):
        buffer.beta = -1.0
    # TD errors as a [B, 1] tensor are accepted
    buffer.update_priorities(np.array([0, 1]), th.tensor([[0.5], [1.5]]))
    np.testing.assert_allclose(buffer.priorities(np.array([0, 1])), (np.array([0.5, 1.5]) + 1e-3) ** 0.4)
