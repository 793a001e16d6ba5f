"""record_demonstrations and sb3-dqfd record in VecEnvs: wrapper pipelines recorded as the agent sees them."""

import json
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper, VecFrameStack, VecNormalize

from sb3_dqfd import DQfD, cli, load_demonstrations
from sb3_dqfd.common.demonstrations import (
    Demonstrations,
    Episode,
    FrameStack,
    record_demonstrations,
    save_demonstrations,
)
from sb3_dqfd.common.experts import cartpole_expert


def cartpole_envs(*time_limits: int) -> DummyVecEnv:
    """:return: one CartPole env per time limit, in a DummyVecEnv"""
    return DummyVecEnv([partial(gym.make, "CartPole-v1", max_episode_steps=limit) for limit in time_limits])


def replay(episodes: list[Episode], seed: int, time_limit: int = 500) -> list[np.ndarray]:
    """
    Play again, one after the other, the episodes one env of a VecEnv recorded, in a single CartPole env reset as the
    VecEnv resets that env (with ``seed``, the VecEnv's seed + the env's index, at the first reset only), and check
    their rewards and ends.

    :return: the single-frame observations of each episode, ``[T + 1, 4]``
    """
    env = gym.make("CartPole-v1", max_episode_steps=time_limit)
    frames = []
    for index, episode in enumerate(episodes):
        observation, _ = env.reset(seed=seed if index == 0 else None)
        observations, rewards = [observation], []
        for action in episode.actions:
            observation, reward, terminated, truncated, _ = env.step(int(action))
            observations.append(observation)
            rewards.append(reward)
        # The episode ended where the env ended it, on its final observation (not the next episode's first)
        assert (episode.terminated, episode.truncated) == (terminated, truncated and not terminated)
        np.testing.assert_array_equal(episode.rewards, rewards)
        frames.append(np.array(observations))
    return frames


def test_episodes_are_complete_and_their_transitions_consistent():
    venv = cartpole_envs(500, 500)
    demos = record_demonstrations("CartPole-v1", venv, n_episodes=3, seed=0)
    assert len(demos) == 3 and demos.observation_space == venv.observation_space and demos.action_space == spaces.Discrete(2)
    # As in a single env (test_demonstrations.py): the expert holds the pole to the time limit
    assert demos.episode_lengths.tolist() == [500] * 3 and demos.episode_returns.tolist() == [500.0] * 3
    assert all(episode.truncated and not episode.terminated for episode in demos)
    # Env i records (3 + i) // 2 episodes, env by env: env 0 the first, env 1 the next two
    for frames, episode in zip(replay(demos[:1], seed=0) + replay(demos[1:], seed=1), demos, strict=True):
        np.testing.assert_array_equal(episode.observations, frames)
        assert episode.actions.tolist() == [cartpole_expert(observation) for observation in frames[:-1]]


def test_falling_episodes_end_terminated_on_their_terminal_observation():
    demos = record_demonstrations(lambda observation: 0, cartpole_envs(500, 500), n_episodes=4, seed=3)
    assert all(episode.terminated and not episode.truncated for episode in demos)
    for episode in demos:
        final = episode.observations[-1]  # out of bounds: the pole fell or the cart left
        assert abs(final[2]) > 0.2095 or abs(final[0]) > 2.4
    for frames, episode in zip(replay(demos[:2], seed=3) + replay(demos[2:], seed=4), demos, strict=True):
        np.testing.assert_array_equal(episode.observations, frames)


def test_each_env_records_its_share_so_short_episodes_are_not_favoured():
    # Env 0 finishes 10 episodes while env 1 finishes one: the first four to finish would all be env 0's
    demos = record_demonstrations("CartPole-v1", cartpole_envs(5, 50), n_episodes=4, seed=0)
    assert demos.episode_lengths.tolist() == [5, 5, 50, 50]


def test_frame_stacks_are_recorded_as_vec_frame_stack_returns_them():
    venv = VecFrameStack(cartpole_envs(20, 20), n_stack=3)
    demos = record_demonstrations(lambda observation: cartpole_expert(observation[-4:]), venv, n_episodes=3, seed=0)
    assert demos.observation_space == venv.observation_space and demos[0].observations.shape == (21, 12)
    for frames, episode in zip(replay(demos[:1], 0, 20) + replay(demos[1:], 1, 20), demos, strict=True):
        # SB3's stack: the oldest frame first, zeros before the episode's first frame, the final stack in infos
        padded = np.concatenate([np.zeros((2, 4), dtype=np.float32), frames])
        np.testing.assert_array_equal(episode.observations, np.concatenate([padded[:-2], padded[1:-1], padded[2:]], axis=1))
        assert not episode.observations[0, :8].any() and episode.observations[0, 8:].any()
    model = DQfD("MlpPolicy", venv, demonstrations=demos, pretrain_steps=10, batch_size=16, policy_kwargs=dict(net_arch=[8]))
    model.learn(50)
    assert model.demonstration_arrays.lengths.tolist() == [20, 20, 20]


def test_an_sb3_model_predicts_for_every_env_at_once():
    model = DQN("MlpPolicy", "CartPole-v1", buffer_size=100, seed=0, policy_kwargs=dict(net_arch=[8]), device="cpu")
    demos = record_demonstrations(model, cartpole_envs(30, 30), n_episodes=2, seed=0)
    for episode in demos:
        np.testing.assert_array_equal(episode.actions, model.predict(episode.observations[:-1], deterministic=True)[0])


class CountingRecurrentModel:
    """Stands in for RecurrentPPO in a VecEnv: its state, one per env, is the number of steps since that env's start."""

    def __init__(self) -> None:
        self.episode_starts: list[list[bool]] = []

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        self.episode_starts.append(episode_start.tolist())
        state = np.where(episode_start, 0, -1 if state is None else state + 1)  # [n_envs]
        return state % 2, state


def test_recurrent_models_get_the_state_and_episode_start_of_every_env():
    model = CountingRecurrentModel()
    demos = record_demonstrations(model, cartpole_envs(2, 3), n_episodes=2, seed=0)
    # Env 0 ends its episode after 2 steps (then starts another), env 1 after 3, when the recording stops
    assert model.episode_starts == [[True, True], [False, False], [True, False]]
    assert [episode.actions.tolist() for episode in demos] == [[0, 1], [0, 1, 0]]


def test_a_seed_makes_the_recording_reproducible():
    venv = cartpole_envs(40, 40)
    first = record_demonstrations(lambda observation: int(observation[2] > 0), venv, n_episodes=3, seed=7)
    again = record_demonstrations(lambda observation: int(observation[2] > 0), venv, n_episodes=3, seed=7)
    for a, b in zip(first, again, strict=True):
        for name in ("observations", "actions", "rewards"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    other = record_demonstrations(lambda observation: int(observation[2] > 0), venv, n_episodes=1, seed=8)
    assert not np.array_equal(other[0].observations[0], first[0].observations[0])


def test_box_actions_are_clipped_and_a_progress_bar_shown():
    venv = DummyVecEnv([partial(gym.make, "Pendulum-v1", max_episode_steps=10)] * 2)
    demos = record_demonstrations(lambda observation: np.array([-10 * observation[2]]), venv, 2, seed=0, progress_bar=True)
    assert demos[0].actions.shape == (10, 1) and demos[0].actions.dtype == np.float32
    np.testing.assert_allclose(demos[0].actions[:, 0], np.clip(-10 * demos[0].observations[:-1, 2], -2, 2))


class DropTerminalObservation(VecEnvWrapper):
    """A VecEnv wrapper that loses the final observations SB3 keeps in the infos."""

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        observations, rewards, dones, infos = self.venv.step_wait()
        for info in infos:
            info.pop("terminal_observation", None)
        return observations, rewards, dones, infos


@pytest.mark.parametrize(
    "expert, venv, n_episodes, error, message",
    [
        ("CartPole-v1", VecNormalize(cartpole_envs(5)), 1, ValueError, "VecNormalize, whose running statistics"),
        ("CartPole-v1", VecFrameStack(VecNormalize(cartpole_envs(5)), 2), 1, ValueError, "wrapped in VecNormalize"),
        ("CartPole-v1", cartpole_envs(5), 0, ValueError, "n_episodes must be a positive integer, got 0"),
        (lambda observation: 3, cartpole_envs(5, 5), 1, ValueError, r"step 0: the VecEnv rejected the expert's actions"),
        ("CartPole-v1", DropTerminalObservation(cartpole_envs(2)), 1, ValueError, r"infos\[0\]\['terminal_observation'\]"),
    ],
)
def test_bad_input_is_refused(expert, venv: VecEnv, n_episodes, error, message):
    with pytest.raises(error, match=message):
        record_demonstrations(expert, venv, n_episodes=n_episodes, seed=0)


# ---------------------------------------------------------------------------------------------------------------------
# sb3-dqfd record
# ---------------------------------------------------------------------------------------------------------------------


def run(*argv: str) -> int:
    return cli.main(list(argv))


def test_record_with_several_envs(tmp_path):
    output = tmp_path / "x.npz"
    assert run("record", "--env", "CartPole-v1", "--n-envs", "2", "--episodes", "2", "--output", str(output)) == 0
    demos = load_demonstrations(output)
    assert demos.episode_lengths.tolist() == [500, 500] and all(episode.truncated for episode in demos)
    # Env i of the VecEnv is seeded with seed + i (--seed 0): env 1's episode starts as a single env reset with seed 1
    np.testing.assert_array_equal(demos[1].observations[0], gym.make("CartPole-v1").reset(seed=1)[0])


#: A train dqfd entry that stacks 2 frames, for a tiny run
FRAME_STACK_ENTRY = (
    "CartPole-v1:\n  frame_stack: 2\n  pretrain_steps: 10\n  batch_size: 16\n  policy_kwargs: 'dict(net_arch=[8])'\n"
)


def record_frame_stacked() -> Demonstrations:
    """Record 2 episodes with ``--hyperparams x.yml`` (:data:`FRAME_STACK_ENTRY`) and a model of stacked frames."""
    Path("x.yml").write_text(FRAME_STACK_ENTRY)
    stacked = VecFrameStack(DummyVecEnv([partial(gym.make, "CartPole-v1")]), 2)
    DQN("MlpPolicy", stacked, buffer_size=100, policy_kwargs=dict(net_arch=[8]), seed=0).save("stacked_dqn")
    argv = ["record", "--env", "CartPole-v1", "--hyperparams", "x.yml", "--model", "stacked_dqn.zip", "--algo", "dqn"]
    assert run(*argv, "--episodes", "2", "--output", "x.npz") == 0
    return load_demonstrations("x.npz")


def test_record_builds_the_env_of_train_from_the_hyperparams(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    demos = record_frame_stacked()
    assert demos.observation_space.shape == (8,) and demos[0].observations.shape[1:] == (8,)
    assert not demos[0].observations[0, :4].any()  # the older frame of an episode start: zeros
    # The built-in expert reads single frames: it does not fit the stacked observations
    argv = ["record", "--env", "CartPole-v1", "--hyperparams", "x.yml", "--output", "y.npz"]
    error = assert_one_line_error(argv, capsys, "the built-in expert of CartPole-v1 does not fit CartPole-v1 built from x.yml")
    assert "reads observations Box(4,) float32" in error and "x.yml has Box(8,) float32" in error


def test_train_learns_from_what_record_recorded_with_the_same_hyperparams(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    demos = record_frame_stacked()
    argv = ["train", "dqfd", "--env", "CartPole-v1", "--hyperparams", "x.yml", "--demos", "x.npz", "--timesteps", "50"]
    assert run(*argv, "--eval-freq", "50", "--eval-episodes", "1", "--output-dir", "run") == 0
    assert DQfD.load("run/dqfd_CartPole-v1").demonstration_arrays.lengths.tolist() == demos.episode_lengths.tolist()
    # Single frames of the built-in expert are stacked by DQfD as the entry's VecFrameStack stacks the agent's
    argv = ["train", "dqfd", "--env", "CartPole-v1", "--hyperparams", "x.yml", "--demos", "expert:1", "--timesteps", "50"]
    assert run(*argv, "--eval-freq", "50", "--eval-episodes", "1", "--output-dir", "run1") == 0
    assert DQfD.load("run1/dqfd_CartPole-v1").demonstration_arrays.observations.shape[1:] == (8,)


def assert_one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str], message: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run(*argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("sb3-dqfd: error: ") and error.count("\n") == 1 and message in error
    return error


@pytest.mark.parametrize(
    "entry, message",
    [
        ("normalize: true", "normalize: record refuses VecNormalize, whose running statistics"),
        ("vec_env_wrapper: stable_baselines3.common.vec_env.VecMonitor", "does not support: ['vec_env_wrapper']"),
        ("frame_stack: 0", "frame_stack must be a whole number >= 1"),
        ("learning_rat: 0.001", "unknown hyperparameters for DQfD on 'CartPole-v1': ['learning_rat']"),
    ],
)
def test_record_refuses_what_train_would_not_build(tmp_path, monkeypatch, capsys, entry, message):
    monkeypatch.chdir(tmp_path)
    Path("x.yml").write_text(f"CartPole-v1:\n  {entry}\n")
    assert_one_line_error(["record", "--env", "CartPole-v1", "--hyperparams", "x.yml", "--output", "x.npz"], capsys, message)
    assert not Path("x.npz").exists()


def test_an_image_model_fits_the_channel_last_env_it_was_trained_in():
    channel_last = spaces.Box(0, 255, (84, 84, 4), np.uint8)  # as AtariWrapper + VecFrameStack(4)
    env = SimpleNamespace(observation_space=channel_last, action_space=spaces.Discrete(6))
    # SB3 trained it through VecTransposeImage: it reads channel-first images, and predict() transposes
    cli._check_fits("model", spaces.Box(0, 255, (4, 84, 84), np.uint8), spaces.Discrete(6), env, "Pong")
    cli._check_fits("model", channel_last, spaces.Discrete(6), env, "Pong")
    with pytest.raises(cli.UsageError, match=r"model does not fit Pong: it reads observations Box\(84, 4, 84\)"):
        cli._check_fits("model", spaces.Box(0, 255, (84, 4, 84), np.uint8), spaces.Discrete(6), env, "Pong")


# ---------------------------------------------------------------------------------------------------------------------
# Frame stacks in files: one frame per step
# ---------------------------------------------------------------------------------------------------------------------


def test_frame_stacks_are_saved_one_frame_per_step_and_load_as_recorded(tmp_path):
    venv = VecFrameStack(cartpole_envs(20, 20), n_stack=3)
    demos = record_demonstrations(lambda observation: cartpole_expert(observation[-4:]), venv, n_episodes=3, seed=0)
    assert demos.frame_stack == FrameStack(3, "last")
    save_demonstrations(demos, tmp_path / "x.npz")
    with np.load(tmp_path / "x.npz", allow_pickle=False) as archive:
        assert int(archive["format_version"]) == 3 and json.loads(str(archive["frame_stack"])) == dict(
            n_stack=3, channels_order="last"
        )
        # The frames CartPole returned, each once, episodes end to end
        frames = np.concatenate(replay(demos[:1], 0, 20) + replay(demos[1:], 1, 20))
        np.testing.assert_array_equal(archive["observations"], frames)
    loaded = load_demonstrations(tmp_path / "x.npz", env=venv)
    assert loaded.frame_stack == demos.frame_stack and loaded.observation_space == venv.observation_space
    for episode, again in zip(demos, loaded, strict=True):
        np.testing.assert_array_equal(again.observations, episode.observations)


def test_record_with_a_frame_stack_entry_writes_each_frame_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    demos = record_frame_stacked()  # frame_stack: 2
    assert demos.frame_stack == FrameStack(2, "last")
    with np.load("x.npz", allow_pickle=False) as archive:
        assert int(archive["format_version"]) == 3 and archive["observations"].shape == (demos.n_transitions + 2, 4)
