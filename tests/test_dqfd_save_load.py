"""DQfD save/load round trips: predictions, demonstrations travelling with the model, replay buffer with priorities."""

import json
import pickle
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_dqfd.common.demonstrations import Demonstrations, record_demonstrations
from sb3_dqfd.common.experts import get_expert
from sb3_dqfd.dqfd import DQfD


@pytest.fixture(scope="module")
def demos() -> Demonstrations:
    return record_demonstrations(get_expert("CartPole-v1"), gym.make("CartPole-v1"), 2, seed=1)


def trained_model(demos: Demonstrations) -> DQfD:
    model = DQfD(
        "MlpPolicy",
        "CartPole-v1",
        demonstrations=demos,
        buffer_size=5_000,
        batch_size=32,
        pretrain_steps=50,
        policy_kwargs=dict(net_arch=[16]),
        seed=0,
    )
    return model.learn(300)


def test_predictions_identical_and_demonstrations_travel(tmp_path, demos):
    model = trained_model(demos)
    path = tmp_path / "dqfd.zip"
    model.save(path)
    observations = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    expected, _ = model.predict(observations, deterministic=True)

    loaded = DQfD.load(path, env=gym.make("CartPole-v1"))
    actions, _ = loaded.predict(observations, deterministic=True)
    np.testing.assert_array_equal(actions, expected)
    q_before = model.q_net(model.policy.obs_to_tensor(observations)[0]).detach().numpy()
    q_after = loaded.q_net(loaded.policy.obs_to_tensor(observations)[0]).detach().numpy()
    np.testing.assert_array_equal(q_after, q_before)

    # The demonstrations come back from the saved tensors, episode by episode
    assert loaded.pretrained
    pretrain_updates = loaded._n_pretrain_updates
    loaded.learn(200, reset_num_timesteps=False)
    assert loaded.num_timesteps == 500
    assert loaded._n_pretrain_updates == pretrain_updates  # no second pre-training
    assert loaded.replay_buffer.n_demonstrations == demos.n_transitions
    assert loaded.demonstrations is not None and len(loaded.demonstrations) == len(demos)
    for original, restored in zip(demos, loaded.demonstrations, strict=True):
        np.testing.assert_array_equal(restored.observations, original.observations)
        np.testing.assert_array_equal(restored.actions, original.actions)
        np.testing.assert_array_equal(restored.rewards, original.rewards)
        assert (restored.terminated, restored.truncated) == (original.terminated, original.truncated)


def test_demonstrations_are_saved_as_tensors_not_pickles(tmp_path, demos):
    model = trained_model(demos)
    path = tmp_path / "dqfd.zip"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
        with archive.open("pytorch_variables.pth") as file:
            variables = th.load(file, weights_only=True)  # plain tensors: loads without unpickling objects
    assert "demonstrations" not in data
    assert variables["demonstration_arrays.lengths"].tolist() == demos.episode_lengths.tolist()
    assert variables["demonstration_arrays.observations"].shape[0] == demos.n_transitions + len(demos)


def test_replay_buffer_round_trip_keeps_demos_agent_data_and_priorities(tmp_path, demos):
    model = trained_model(demos)
    buffer_path = tmp_path / "buffer.pkl"
    model.save_replay_buffer(buffer_path)
    model.save(tmp_path / "dqfd.zip")

    loaded = DQfD.load(tmp_path / "dqfd.zip", env=gym.make("CartPole-v1"))
    loaded.load_replay_buffer(buffer_path)
    original, restored = model.replay_buffer, loaded.replay_buffer
    assert restored.n_demonstrations == original.n_demonstrations == demos.n_transitions
    assert restored.size() == original.size()
    # Same stored data and the same priority tree, compared through their full state
    assert pickle.dumps(restored.__dict__.get("observations")) == pickle.dumps(original.observations)
    original_state = {key: value for key, value in vars(original).items() if key != "device"}
    restored_state = {key: value for key, value in vars(restored).items() if key != "device"}
    assert original_state.keys() == restored_state.keys()
    for key, value in original_state.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(restored_state[key], value, err_msg=key)
    loaded.learn(100, reset_num_timesteps=False)
    assert loaded.replay_buffer.n_demonstrations == demos.n_transitions


def test_the_saved_data_holds_no_pickled_tensors(tmp_path) -> None:
    model = DQfD("MlpPolicy", "CartPole-v1", demonstrations="expert:1", buffer_size=1_000, pretrain_steps=0, seed=0)
    model.save(tmp_path / "model")
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        data = json.loads(archive.read("data"))
    assert "_trainable_parameters" not in data  # rebuilt from the loaded network instead
    loaded = DQfD.load(tmp_path / "model")
    assert [parameter.data_ptr() for parameter in loaded._trainable_parameters] == [
        parameter.data_ptr() for parameter in loaded.q_net.parameters()
    ]
