"""What DQfD picks when not told: the replay buffer (frames stored once for images, stacked as the env stacks them)
and the CNN (NatureCNN, or MinAtarCNN for images too small for it)."""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from image_env import BrightSideEnv, lit_side
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack
from test_dqfd_dict import LitSideDictEnv, dict_model, lit_half

from sb3_dqfd import CompactDQfDReplayBuffer, DQfDReplayBuffer
from sb3_dqfd.common.demonstrations import record_demonstrations
from sb3_dqfd.dqfd import DQfD, MinAtarCNN, default_cnn


def stacked_bright_side(n_stack: int) -> VecFrameStack:
    return VecFrameStack(DummyVecEnv([BrightSideEnv, BrightSideEnv]), n_stack)


def small_cnn_model(env: Any, demonstrations: Any = None, **kwargs: Any) -> DQfD:
    policy_kwargs = dict(net_arch=[16], features_extractor_kwargs=dict(features_dim=16))
    return DQfD("CnnPolicy", env, demonstrations=demonstrations, buffer_size=400, batch_size=16, pretrain_steps=20,
                learning_starts=0, policy_kwargs=policy_kwargs, seed=0, **kwargs)  # fmt: skip


def test_image_observations_get_the_compact_buffer_and_vectors_the_plain_one() -> None:
    model = small_cnn_model(BrightSideEnv())
    assert type(model.replay_buffer) is CompactDQfDReplayBuffer
    assert model.replay_buffer.n_stack == 1
    vector_model = DQfD("MlpPolicy", "CartPole-v1", buffer_size=400, seed=0)
    assert type(vector_model.replay_buffer) is DQfDReplayBuffer


@pytest.mark.filterwarnings("ignore:DQfD got no demonstrations")
def test_an_explicit_buffer_class_is_kept() -> None:
    model = small_cnn_model(BrightSideEnv(), replay_buffer_class=DQfDReplayBuffer)
    assert type(model.replay_buffer) is DQfDReplayBuffer


def test_the_compact_buffer_stacks_as_the_env_does_and_learns_exactly_as_the_plain_one() -> None:
    # VecFrameStack stacks channel-last frames, then SB3 transposes the stacks to channel-first for the CNN
    demos = record_demonstrations(lit_side, BrightSideEnv(), n_episodes=3, seed=0)
    models = [
        small_cnn_model(stacked_bright_side(3), demos, **kwargs) for kwargs in ({}, dict(replay_buffer_class=DQfDReplayBuffer))
    ]
    compact, plain = models
    assert type(compact.replay_buffer) is CompactDQfDReplayBuffer
    assert (compact.replay_buffer.n_stack, compact.replay_buffer.stack_axis) == (3, 0)
    assert compact.observation_space.shape == (3, 40, 40)
    for model in models:
        model.set_random_seed(0)  # both draw from numpy's global generator: the same draws for each
        model.learn(60)
    # Same seed, same data, identical samples: the same parameters to the last bit
    for compact_parameter, plain_parameter in zip(compact.q_net.parameters(), plain.q_net.parameters(), strict=True):
        assert th.equal(compact_parameter, plain_parameter)
    np.random.seed(1)
    from_compact = compact.replay_buffer.sample(64)
    np.random.seed(1)
    from_plain = plain.replay_buffer.sample(64)
    for field in ("observations", "next_observations", "n_step_next_observations"):
        assert th.equal(getattr(from_compact, field), getattr(from_plain, field))


def test_a_saved_model_keeps_its_buffer_and_refuses_a_buffer_stacked_otherwise(tmp_path) -> None:
    model = small_cnn_model(stacked_bright_side(3), replay_buffer_kwargs=dict(n_stack=3))
    model.learn(30)
    model.save(tmp_path / "model")
    loaded = DQfD.load(tmp_path / "model", env=stacked_bright_side(3))
    assert type(loaded.replay_buffer) is CompactDQfDReplayBuffer
    assert loaded.replay_buffer.n_stack == 3
    # A buffer that keeps whole stacks as frames (n_stack=1) would be refused by add() in this stacked env: refused here
    other = small_cnn_model(stacked_bright_side(3), replay_buffer_kwargs=dict(n_stack=1))
    other.learn(30)
    other.save_replay_buffer(tmp_path / "buffer")
    with pytest.raises(ValueError, match=r"n_stack 1 \(model: 3\)"):
        loaded.load_replay_buffer(tmp_path / "buffer")
    assert loaded.replay_buffer.n_stack == 3  # nothing changed


class TinyImageEnv(gym.Env):
    """A 10x10x4 uint8 image (MinAtar's size): NatureCNN cannot read it."""

    observation_space = spaces.Box(0, 255, (10, 10, 4), np.uint8)
    action_space = spaces.Discrete(3)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return self.observation_space.sample(), float(action == 0), False, False, {}


@pytest.mark.filterwarnings("ignore:DQfD got no demonstrations")
def test_small_images_get_the_minatar_cnn_with_the_heads_on_its_features() -> None:
    model = DQfD("CnnPolicy", TinyImageEnv(), buffer_size=400, seed=0)
    q_net = model.q_net
    assert isinstance(q_net.features_extractor, MinAtarCNN)
    assert q_net.net_arch == []  # the MinAtar paper's network: conv, one dense layer of 128, the heads
    assert q_net.features_extractor.features_dim == 128
    model.learn(20)
    assert isinstance(DQfD("CnnPolicy", BrightSideEnv(), buffer_size=400, seed=0).q_net.features_extractor, NatureCNN)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((4, 10, 10), MinAtarCNN), ((10, 10, 4), MinAtarCNN), ((1, 36, 36), NatureCNN), ((84, 84, 4), NatureCNN)],
)
def test_default_cnn_reads_the_image_side_in_either_layout(shape, expected) -> None:
    assert default_cnn(spaces.Box(0, 255, shape, np.uint8)) is expected


def test_dict_observations_with_an_image_key_get_the_compact_buffer_stacked_key_by_key() -> None:
    demos = record_demonstrations(lit_half, LitSideDictEnv(), n_episodes=2, seed=0)
    models = [
        dict_model(VecFrameStack(DummyVecEnv([LitSideDictEnv, LitSideDictEnv]), 2), demos, **kwargs)
        for kwargs in ({}, dict(replay_buffer_class=DQfDReplayBuffer))
    ]
    compact, plain = models
    assert type(compact.replay_buffer) is CompactDQfDReplayBuffer
    # The image stacks were transposed to channel-first for the CNN; the vector stacks stay on their last axis
    assert compact.replay_buffer.channels_order == {"image": "first", "position": "last"}
    for model in models:
        model.set_random_seed(0)
        model.learn(40)
    for compact_parameter, plain_parameter in zip(compact.q_net.parameters(), plain.q_net.parameters(), strict=True):
        assert th.equal(compact_parameter, plain_parameter)
    assert type(dict_model(LitSideDictEnv(), demos).replay_buffer) is CompactDQfDReplayBuffer
