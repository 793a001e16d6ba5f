"""DQfD across learn() calls, load, set_env and load_replay_buffer: episodes cut at env resets, demonstrations back at
load, buffers and envs that do not fit refused before anything changes, and fps that counts interaction only."""

import time
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_dqfd.common.demonstrations import Demonstrations, record_demonstrations, save_demonstrations
from sb3_dqfd.common.experts import get_expert
from sb3_dqfd.dqfd import DQfD
from sb3_dqfd.wrappers.reward_scaling import RewardScaling


class EndlessEnv(gym.Env):
    """Never ends. Observation ``[episode, t]``; the reward of step t (from 1) of episode e is ``100 e + t``."""

    observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self) -> None:
        self.episode, self.t = 0, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return self._observation(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return self._observation(), float(100 * self.episode + self.t), False, False, {}

    def _observation(self) -> np.ndarray:
        return np.array([self.episode, self.t], dtype=np.float32)


def endless_model(**kwargs: Any) -> DQfD:
    """n = 3, gamma = 0.5, no pre-training and no update (learning_starts above the budget): only storage runs."""
    with pytest.warns(UserWarning, match="no demonstrations"):
        return DQfD(
            "MlpPolicy",
            DummyVecEnv([EndlessEnv]),
            n_steps=3,
            gamma=0.5,
            pretrain_steps=0,
            learning_starts=1_000,
            buffer_size=100,
            policy_kwargs=dict(net_arch=[8]),
            seed=0,
            **kwargs,
        )


def assert_window_stops_at_the_reset(model: DQfD, next_episode: int = 2) -> None:
    """Rows 0-4 are episode 1, rows 5-7 the next one (the env was reset in between): row 3's window is r3 + 0.5 r4."""
    buffer = model.replay_buffer
    np.testing.assert_array_equal(buffer.rewards[:8, 0], [101, 102, 103, 104, 105, *(100 * next_episode + np.arange(1, 4))])
    samples = buffer._get_samples(np.array([3, 4, 2]))
    np.testing.assert_allclose(samples.n_step_returns.numpy().ravel(), [104 + 0.5 * 105, 105, 103 + 0.5 * 104 + 0.25 * 105])
    np.testing.assert_allclose(samples.n_step_discounts.numpy().ravel(), [0.25, 0.5, 0.125])
    np.testing.assert_array_equal(samples.n_step_dones.numpy().ravel(), [0, 0, 0])  # cut by a reset: bootstrap
    # ... from the true observation after step 5 of episode 1, not from episode 2
    np.testing.assert_array_equal(samples.n_step_next_observations.numpy(), [[1, 5], [1, 5], [1, 5]])
    assert samples.dones.numpy().ravel().tolist() == [0, 0, 0]  # the 1-step transition of row 4 bootstraps too


def test_n_step_windows_stop_where_a_second_learn_resets_the_env() -> None:
    model = endless_model()
    model.learn(5)
    model.learn(3)  # reset_num_timesteps=True: SB3 resets the env in the middle of episode 1
    assert_window_stops_at_the_reset(model)


def test_n_step_windows_stop_where_the_first_learn_after_load_resets_the_env(tmp_path) -> None:
    model = endless_model()
    model.learn(5)
    model.save(tmp_path / "model")
    model.save_replay_buffer(tmp_path / "buffer")
    loaded = DQfD.load(tmp_path / "model", env=DummyVecEnv([EndlessEnv]))
    loaded.load_replay_buffer(tmp_path / "buffer")
    loaded.learn(3, reset_num_timesteps=False)  # load() dropped the last observation: the env is reset
    assert_window_stops_at_the_reset(loaded, next_episode=1)  # a new env instance: its first episode again


def test_continuing_learn_does_not_cut_the_episode() -> None:
    model = endless_model()
    model.learn(5)
    model.learn(3, reset_num_timesteps=False)  # same episode goes on: row 3's window reads rows 3, 4, 5
    samples = model.replay_buffer._get_samples(np.array([3]))
    np.testing.assert_allclose(samples.n_step_returns.numpy().ravel(), [104 + 0.5 * 105 + 0.25 * 106])


def test_a_terminated_episode_end_stays_terminal_when_the_env_is_reset() -> None:
    model = DQfD("MlpPolicy", "CartPole-v1", demonstrations=None, pretrain_steps=0, learning_starts=10_000, seed=0)
    model.learn(300)
    buffer = model.replay_buffer
    terminal_rows = np.flatnonzero(buffer.dones[:300, 0] * (1 - buffer.timeouts[:300, 0]))
    model.learn(10)
    newest_of_first_learn = 299
    expected_terminal = set(terminal_rows.tolist())
    after = set(np.flatnonzero(buffer.dones[:300, 0] * (1 - buffer.timeouts[:300, 0])).tolist())
    assert after == expected_terminal  # no termination turned into a truncation
    if newest_of_first_learn not in expected_terminal:
        assert buffer.timeouts[newest_of_first_learn, 0] == 1


@pytest.fixture(scope="module")
def demos() -> Demonstrations:
    return record_demonstrations(get_expert("CartPole-v1"), gym.make("CartPole-v1"), 2, seed=1)


def small_model(env: Any, demonstrations: Any, **kwargs: Any) -> DQfD:
    params = dict(buffer_size=5_000, batch_size=32, pretrain_steps=0, policy_kwargs=dict(net_arch=[16]), seed=0)
    return DQfD("MlpPolicy", env, demonstrations=demonstrations, **(params | kwargs))


class RecordingWriter(KVWriter):
    def __init__(self) -> None:
        self.dumps: list[dict[str, Any]] = []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        self.dumps.append(dict(key_values))


def test_fps_counts_interaction_only_and_pretraining_has_its_own_timing(demos, monkeypatch) -> None:
    model = small_model("CartPole-v1", demos, pretrain_steps=30)
    pretraining_ended: list[int] = []
    pretrain = model.pretrain

    def timed_pretrain(*args: Any, **kwargs: Any) -> None:
        pretrain(*args, **kwargs)
        pretraining_ended.append(time.time_ns())

    monkeypatch.setattr(model, "pretrain", timed_pretrain)
    writer = RecordingWriter()
    model.set_logger(Logger(folder=None, output_formats=[writer]))
    model.learn(50, log_interval=1)
    assert len(pretraining_ended) == 1
    assert model.start_time >= pretraining_ended[0]  # the clock of time/fps starts after pre-training
    pretraining = [values for values in writer.dumps if "pretrain/time_elapsed" in values]
    assert pretraining and pretraining[-1]["pretrain/updates_per_second"] > 0


def test_load_puts_the_demonstrations_back_into_the_buffer_at_once(tmp_path, demos) -> None:
    small_model("CartPole-v1", demos).save(tmp_path / "model")
    loaded = DQfD.load(tmp_path / "model", env=gym.make("CartPole-v1"))
    assert loaded.replay_buffer.n_demonstrations == demos.n_transitions
    samples = loaded.replay_buffer.sample(16)  # before any learn(): demonstrations are there to train on
    assert samples.is_demo.numpy().all()
    loaded.train(gradient_steps=2, batch_size=8)


def test_load_accepts_every_demonstrations_form_of_the_constructor(tmp_path, demos) -> None:
    path = tmp_path / "demos.npz"
    save_demonstrations(demos, path)
    small_model("CartPole-v1", demos).save(tmp_path / "with")
    for source in (str(path), path, demos):
        loaded = DQfD.load(tmp_path / "with", env=gym.make("CartPole-v1"), demonstrations=source)
        assert loaded.replay_buffer.n_demonstrations == demos.n_transitions
    other = record_demonstrations(get_expert("CartPole-v1"), gym.make("CartPole-v1"), 1, seed=7)
    with pytest.raises(ValueError, match="differ from the ones saved"):
        DQfD.load(tmp_path / "with", env=gym.make("CartPole-v1"), demonstrations=other)

    with pytest.warns(UserWarning, match="no demonstrations"):
        small_model("CartPole-v1", None).save(tmp_path / "without")
    loaded = DQfD.load(tmp_path / "without", env=gym.make("CartPole-v1"), demonstrations=str(path))
    assert loaded.replay_buffer.n_demonstrations == demos.n_transitions
    loaded.save(tmp_path / "now_with")  # and they travel from now on
    recorded = DQfD.load(tmp_path / "without", env=gym.make("CartPole-v1"), demonstrations="expert:1")
    assert recorded.replay_buffer.n_demonstrations == 500  # one episode of the built-in expert
    assert DQfD.load(tmp_path / "now_with").replay_buffer.n_demonstrations == demos.n_transitions


def test_load_replay_buffer_refuses_a_buffer_that_does_not_fit(tmp_path, demos) -> None:
    dqn = DQN("MlpPolicy", "CartPole-v1", learning_starts=1_000, buffer_size=1_000)
    dqn.learn(20)
    dqn.save_replay_buffer(tmp_path / "dqn_buffer")
    model = small_model("CartPole-v1", demos)
    buffer = model.replay_buffer
    with pytest.raises(ValueError, match=r"holds a ReplayBuffer .* needs a DQfDReplayBuffer"):
        model.load_replay_buffer(tmp_path / "dqn_buffer")
    assert model.replay_buffer is buffer  # nothing changed
    small_model("CartPole-v1", demos, n_steps=3).save_replay_buffer(tmp_path / "n3")
    with pytest.raises(ValueError, match=r"n_steps 3 \(model: 10\)"):
        model.load_replay_buffer(tmp_path / "n3")
    model.learn(10)  # still trains on its own buffer


def test_discrete_actions_must_start_at_zero(demos) -> None:
    class ShiftedActions(gym.Env):
        observation_space = spaces.Box(-1, 1, (2,), np.float32)
        action_space = spaces.Discrete(3, start=-1)

    with pytest.raises(ValueError, match=r"start at 0.*ActionWrapper"):
        DQfD("MlpPolicy", DummyVecEnv([ShiftedActions]), demonstrations=None)


def test_running_reward_normalization_is_refused_without_demonstrations_too() -> None:
    env = make_vec_env("CartPole-v1", n_envs=1, wrapper_class=RewardScaling, wrapper_kwargs=dict(normalize=True))
    with pytest.raises(ValueError, match="running normalization"):
        DQfD("MlpPolicy", env, demonstrations=None)


def test_set_env_rescales_the_demonstration_rewards(demos) -> None:
    def scaled(scale: float) -> Any:
        return make_vec_env("CartPole-v1", n_envs=1, wrapper_class=RewardScaling, wrapper_kwargs=dict(scale=scale))

    model = small_model(scaled(0.01), demos)
    np.testing.assert_allclose(model.replay_buffer.sample(32, demo_only=True).rewards.numpy(), 0.01)
    model.set_env(scaled(0.1))
    np.testing.assert_allclose(model.replay_buffer.sample(32, demo_only=True).rewards.numpy(), 0.1, rtol=1e-6)
    model.set_env(make_vec_env("CartPole-v1", n_envs=1))  # no scaling: back to the raw rewards
    np.testing.assert_allclose(model.replay_buffer.sample(32, demo_only=True).rewards.numpy(), 1.0)
    normalizing = make_vec_env("CartPole-v1", n_envs=1, wrapper_class=RewardScaling, wrapper_kwargs=dict(normalize=True))
    env = model.env
    with pytest.raises(ValueError, match="running normalization"):
        model.set_env(normalizing)
    assert model.env is env  # refused before anything changed
    model.learn(20)
    with pytest.warns(UserWarning, match="agent transitions in the replay buffer keep the old scale"):
        model.set_env(scaled(0.5))
