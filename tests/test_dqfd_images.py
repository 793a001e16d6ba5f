"""DQfD with CnnPolicy and image demonstrations in the env's own (channel-last) layout: SB3 transposes the env to
channel-first for the CNN, and the demonstrations get the same transpose once."""

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from image_env import BrightSideEnv, lit_side

from sb3_dqfd.common.demonstrations import Demonstrations, record_demonstrations, save_demonstrations
from sb3_dqfd.dqfd import DQfD


@pytest.fixture(scope="module")
def demos() -> Demonstrations:
    return record_demonstrations(lit_side, BrightSideEnv(), n_episodes=4, seed=0)


def cnn_model(demonstrations: Any, **kwargs: Any) -> DQfD:
    policy_kwargs = dict(net_arch=[16], features_extractor_kwargs=dict(features_dim=16))
    return DQfD("CnnPolicy", BrightSideEnv(), demonstrations=demonstrations, buffer_size=500, batch_size=16,
                pretrain_steps=0, learning_starts=1_000, policy_kwargs=policy_kwargs, seed=0, **kwargs)  # fmt: skip


def test_channel_last_demonstrations_train_a_cnn_policy(tmp_path, demos) -> None:
    assert demos[0].observations.shape[1:] == (40, 40, 1)  # recorded in the env's own layout
    model = cnn_model(demos)
    assert model.observation_space.shape == (1, 40, 40)  # SB3's VecTransposeImage
    samples = model.replay_buffer.sample(8, demo_only=True)
    assert samples.observations.shape == (8, 1, 40, 40)
    # The stored image is the demonstration's, transposed: its lit half is the demonstrated action
    images = samples.observations[:, 0].float()  # [8, 40, 40]
    lit_right = images[:, :, 20:].mean(dim=(1, 2)) > images[:, :, :20].mean(dim=(1, 2))
    np.testing.assert_array_equal(lit_right.numpy(), samples.actions.numpy().ravel() == 1)
    model.pretrain(300)
    images = np.stack([BrightSideEnv().reset(seed=seed)[0] for seed in range(20)])  # channel-last, as the env gives
    actions, _ = model.predict(images, deterministic=True)
    np.testing.assert_array_equal(actions, [lit_side(image) for image in images])  # imitates the expert

    model.save(tmp_path / "model")
    path = tmp_path / "demos.npz"
    save_demonstrations(demos, path)
    loaded = DQfD.load(tmp_path / "model", env=BrightSideEnv(), demonstrations=path)  # same demonstrations, own layout
    assert loaded.replay_buffer.n_demonstrations == demos.n_transitions
    np.testing.assert_array_equal(loaded.predict(images, deterministic=True)[0], actions)
    loaded.learn(20)


def with_observations(demonstrations: Demonstrations, change: Any) -> Demonstrations:
    return Demonstrations([replace(episode, observations=change(episode.observations)) for episode in demonstrations])


def test_channel_first_demonstrations_are_taken_as_they_are(demos) -> None:
    model = cnn_model(with_observations(demos, lambda images: np.transpose(images, (0, 3, 1, 2))))
    assert model.replay_buffer.sample(8, demo_only=True).observations.shape == (8, 1, 40, 40)


def test_demonstrations_of_another_image_shape_name_the_env_layout(demos) -> None:
    with pytest.raises(ValueError, match=r"\(40, 40, 1\)"):
        cnn_model(with_observations(demos, lambda images: images[:, :30]))
