"""MinAtar and Atari (ALE), the optional extras: the uint8 wrapper, the MinAtar CNN, imitation of the MinAtar expert and
an ALE pipeline (record -> DQfD learn -> save -> load -> predict)."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.wrappers import TransformObservation
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.preprocessing import is_image_space_channels_first

from sb3_dqfd.common.demonstrations import load_demonstrations, record_demonstrations
from sb3_dqfd.common.experts import AleScreenExpert, atari_breakout_expert, get_expert
from sb3_dqfd.dqfd import DQfD
from sb3_dqfd.dqfd.policies import MinAtarCNN
from sb3_dqfd.wrappers import MinAtarImage


@pytest.fixture(scope="module")
def minatar_breakout():
    if "MinAtar/Breakout-v1" not in gym.registry:  # registering again would warn
        pytest.importorskip("minatar.gym").register_envs()
    return lambda: MinAtarImage(gym.make("MinAtar/Breakout-v1"))


def test_minatar_image_is_an_sb3_image_that_keeps_the_cells(minatar_breakout):
    env = minatar_breakout()
    observation, _ = env.reset(seed=0)
    assert env.observation_space == spaces.Box(0, 255, (10, 10, 4), np.uint8)
    assert set(np.unique(observation)) == {0, 255}
    np.testing.assert_array_equal(observation == 255, env.unwrapped.game.state())
    # The expert reads the wrapped channels as it reads MinAtar's bool ones
    assert get_expert("MinAtar/Breakout-v1")(observation) == get_expert("MinAtar/Breakout-v1")(observation == 255)


def test_minatar_image_refuses_other_observations():
    with pytest.raises(TypeError, match="MinAtar's bool observations"):
        MinAtarImage(gym.make("CartPole-v1"))


def test_minatar_cnn_refuses_what_its_kernel_cannot_read():
    with pytest.raises(TypeError, match="image observation space"):
        MinAtarCNN(spaces.Box(0, 1, (4,)))
    with pytest.raises(ValueError, match="at least 3x3"):
        MinAtarCNN(spaces.Box(0, 255, (4, 2, 2), np.uint8))


def test_pretrained_minatar_policy_imitates_the_expert(minatar_breakout):
    demos = record_demonstrations("MinAtar/Breakout-v1", minatar_breakout(), n_episodes=8, seed=0)
    policy_kwargs = dict(features_extractor_class=MinAtarCNN, features_extractor_kwargs=dict(features_dim=64))
    model = DQfD("CnnPolicy", minatar_breakout(), demonstrations=demos, buffer_size=2_000, batch_size=32,
                 pretrain_steps=0, learning_rate=1e-3, policy_kwargs=policy_kwargs, seed=0)  # fmt: skip
    assert isinstance(model.q_net.features_extractor, MinAtarCNN)
    model.pretrain(300)
    transitions = demos.to_transitions()
    states, actions = transitions.observations, transitions.actions
    agreement = np.mean(model.predict(states, deterministic=True)[0] == actions)
    assert agreement > 0.8, agreement  # smoke check: the large-margin loss makes the greedy policy the expert's


def downscaled_breakout(max_episode_steps: int) -> gym.Env:
    """ALE Breakout in grey, every 5th row and 4th column (42x40x1): an image small enough for a fast NatureCNN."""
    if "ALE/Breakout-v5" not in gym.registry:
        gym.register_envs(pytest.importorskip("ale_py"))
    env = gym.make("ALE/Breakout-v5", obs_type="grayscale", max_episode_steps=max_episode_steps)
    space = spaces.Box(0, 255, (42, 40, 1), np.uint8)
    return TransformObservation(env, lambda frame: frame[::5, ::4, None], space)


def test_ale_pipeline_record_learn_save_load_predict(tmp_path):
    env = downscaled_breakout(max_episode_steps=300)
    demos = record_demonstrations(AleScreenExpert(env, atari_breakout_expert), env, n_episodes=1, seed=0)
    assert demos[0].observations.shape[1:] == (42, 40, 1)
    assert demos.episode_returns[0] > 0  # the expert serves and hits bricks from the raw screen
    policy_kwargs = dict(net_arch=[], features_extractor_kwargs=dict(features_dim=32))
    model = DQfD("CnnPolicy", env, demonstrations=demos, buffer_size=1_000, batch_size=32, pretrain_steps=100,
                 learning_starts=50, target_update_interval=100, policy_kwargs=policy_kwargs, seed=0)  # fmt: skip
    model.learn(200)
    model.save(tmp_path / "breakout")
    loaded = DQfD.load(tmp_path / "breakout", env=downscaled_breakout(max_episode_steps=300), demonstrations=demos)
    observation, _ = env.reset(seed=1)
    np.testing.assert_array_equal(
        loaded.predict(observation, deterministic=True)[0], model.predict(observation, deterministic=True)[0]
    )
    assert env.action_space.contains(int(loaded.predict(observation, deterministic=True)[0]))


def test_ale_screen_expert_needs_an_ale_env():
    with pytest.raises(TypeError, match="needs an ALE environment"):
        AleScreenExpert(gym.make("CartPole-v1"), atari_breakout_expert)


def test_readme_atari_pipeline_single_frames_recorded_stacked_env_trained(tmp_path):
    """README's Atari snippet at a tiny budget: 84x84 frames recorded with SB3's AtariWrapper, trained behind
    make_atari_env + VecFrameStack(4) with the buffer DQfD picks for images (frames stored once)."""
    ale_py = pytest.importorskip("ale_py")
    pytest.importorskip("cv2")  # AtariWrapper resizes with OpenCV (the atari extra installs it)
    from stable_baselines3.common.atari_wrappers import AtariWrapper
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    from sb3_dqfd import CompactDQfDReplayBuffer

    gym.register_envs(ale_py)
    recording_env = AtariWrapper(gym.make("BreakoutNoFrameskip-v4"))
    demos = record_demonstrations(AleScreenExpert(recording_env, atari_breakout_expert), recording_env, n_episodes=2, seed=0)
    assert demos[0].observations.shape[1:] == (84, 84, 1)
    assert demos.episode_returns.min() > 0  # the expert hits bricks through the preprocessing
    env = VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", n_envs=1, seed=0), n_stack=4)
    policy_kwargs = dict(features_extractor_kwargs=dict(features_dim=32))
    model = DQfD("CnnPolicy", env, demonstrations=demos, buffer_size=2_000, batch_size=16, pretrain_steps=20,
                 learning_starts=0, train_freq=4, policy_kwargs=policy_kwargs, seed=0)  # fmt: skip
    assert isinstance(model.replay_buffer, CompactDQfDReplayBuffer)
    assert model.replay_buffer.n_stack == 4
    # The single frames were stacked with VecFrameStack's zero padding, then transposed as SB3 transposes the env
    first = model.replay_buffer.sample(1, demo_only=True).observations
    assert first.shape == (1, 4, 84, 84)
    model.learn(40)
    model.save(tmp_path / "breakout")
    loaded = DQfD.load(tmp_path / "breakout", env=env)
    assert loaded.replay_buffer.n_demonstrations == demos.n_transitions
    observation = env.reset()
    np.testing.assert_array_equal(
        loaded.predict(observation, deterministic=True)[0], model.predict(observation, deterministic=True)[0]
    )


def test_minatar_image_puts_ten_channels_first_where_sb3_would_misread_them(minatar_breakout):
    env = MinAtarImage(gym.make("MinAtar/Seaquest-v1"))
    observation, _ = env.reset(seed=0)
    np.testing.assert_array_equal(observation, np.moveaxis(env.unwrapped.game.state(), -1, 0) * 255)
    assert is_image_space_channels_first(env.observation_space)  # SB3 takes it as it is: no transpose
    assert not minatar_breakout().channels_first


def test_minatar_image_is_rebuilt_from_the_env_spec(minatar_breakout):
    rebuilt = gym.make(minatar_breakout().spec)
    assert isinstance(rebuilt, MinAtarImage)
    assert rebuilt.observation_space == spaces.Box(0, 255, (10, 10, 4), np.uint8)


def test_expert_n_records_through_the_envs_own_wrappers(minatar_breakout):
    single = load_demonstrations("expert:2", env=minatar_breakout(), seed=0)
    vectorized = load_demonstrations("expert:2", env=make_vec_env(minatar_breakout, n_envs=2), seed=0)  # under Monitor
    for demos in (single, vectorized):
        assert set(np.unique(np.concatenate([episode.observations for episode in demos]))) == {0, 255}
    model = DQfD("CnnPolicy", minatar_breakout(), demonstrations="expert:2", buffer_size=2_000, pretrain_steps=0, seed=0)
    assert model.demonstrations[0].observations.max() == 255


def test_bool_cells_for_a_uint8_image_space_are_refused(minatar_breakout):
    bool_cells = record_demonstrations("MinAtar/Breakout-v1", gym.make("MinAtar/Breakout-v1"), n_episodes=1, seed=0)
    with pytest.raises(TypeError, match=r"observations are bool, but Box\(0, 255, \(10, 10, 4\), uint8\) is a uint8 image"):
        load_demonstrations(bool_cells, env=minatar_breakout())
