"""DQfD with Dict observations (MultiInputPolicy): demonstrations recorded in the env's own layout (a channel-last
image key and a vector key), pre-training, learning, save/load, standardization, frame stacking and bad input."""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

from sb3_dqfd.common.demonstrations import Demonstrations, Episode, record_demonstrations, save_demonstrations
from sb3_dqfd.dqfd import DQfD, StandardizeCombinedExtractor

SIDE = 36  # the smallest image NatureCNN (SB3's CombinedExtractor's CNN) reads


class LitSideDictEnv(gym.Env):
    """
    Dict observations: ``"image"`` (SIDE x SIDE x 1, channel-last) with one lit half, and ``"position"`` (a vector in
    [-1, 1]^2 around 5, that the standardization must centre). Reward 1 for the action naming the lit half (0: left,
    1: right); 10 steps, then truncated.
    """

    observation_space = spaces.Dict(
        {
            "image": spaces.Box(0, 255, (SIDE, SIDE, 1), np.uint8),
            "position": spaces.Box(-10.0, 10.0, (2,), np.float32),
        }
    )
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        self._steps = 0
        return self._observation(), {}

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        reward = float(action == self._lit)
        self._steps += 1
        return self._observation(), reward, False, self._steps >= 10, {}

    def _observation(self) -> dict[str, np.ndarray]:
        self._lit = int(self.np_random.integers(2))
        image = np.zeros((SIDE, SIDE, 1), dtype=np.uint8)
        image[:, self._lit * SIDE // 2 : (self._lit + 1) * SIDE // 2] = 255
        position = (5.0 + self.np_random.uniform(-1, 1, size=2)).astype(np.float32)
        return {"image": image, "position": position}


def lit_half(observation: dict[str, np.ndarray]) -> int:
    image = observation["image"]
    return int(image[:, SIDE // 2 :].mean() > image[:, : SIDE // 2].mean())


@pytest.fixture(scope="module")
def demos() -> Demonstrations:
    return record_demonstrations(lit_half, LitSideDictEnv(), n_episodes=4, seed=0)


def dict_model(env: Any, demonstrations: Any, **kwargs: Any) -> DQfD:
    policy_kwargs = dict(net_arch=[32], features_extractor_kwargs=dict(cnn_output_dim=16))
    return DQfD("MultiInputPolicy", env, demonstrations=demonstrations, buffer_size=600, batch_size=16, pretrain_steps=0,
                learning_starts=0, policy_kwargs=policy_kwargs, seed=0, **kwargs)  # fmt: skip


def test_dict_demonstrations_train_save_load_and_predict(tmp_path, demos) -> None:
    assert set(demos[0].observations) == {"image", "position"}
    model = dict_model(LitSideDictEnv(), demos)
    samples = model.replay_buffer.sample(8, demo_only=True)
    # SB3 transposes the image key for the CNN; the demonstrations got the same transpose
    assert samples.observations["image"].shape == (8, 1, SIDE, SIDE)
    assert samples.n_step_next_observations["position"].shape == (8, 2)
    model.pretrain(150)
    env = LitSideDictEnv()
    observations = [env.reset(seed=seed)[0] for seed in range(16)]
    batch = {key: np.stack([observation[key] for observation in observations]) for key in ("image", "position")}
    actions, _ = model.predict(batch, deterministic=True)
    np.testing.assert_array_equal(actions, [lit_half(observation) for observation in observations])  # imitates
    model.learn(40)

    model.save(tmp_path / "model")
    path = tmp_path / "demos.npz"
    save_demonstrations(demos, path)
    loaded = DQfD.load(tmp_path / "model", env=LitSideDictEnv(), demonstrations=path)  # the same ones, from a file
    assert loaded.replay_buffer.n_demonstrations == demos.n_transitions
    np.testing.assert_array_equal(loaded.predict(batch, deterministic=True)[0], model.predict(batch, deterministic=True)[0])
    loaded.learn(20)
    # Saved inside the model, as the agent sees them: they come back key by key without demonstrations=
    reloaded = DQfD.load(tmp_path / "model", env=LitSideDictEnv())
    for saved, original in zip(reloaded.demonstrations, demos, strict=True):
        np.testing.assert_array_equal(saved.observations["image"], np.transpose(original.observations["image"], (0, 3, 1, 2)))
        np.testing.assert_array_equal(saved.observations["position"], original.observations["position"])


def test_normalize_observations_standardizes_the_vector_keys_with_the_demonstrations(demos) -> None:
    model = dict_model(LitSideDictEnv(), demos, normalize_observations=True)
    extractor = model.q_net.features_extractor
    assert isinstance(extractor, StandardizeCombinedExtractor)
    positions = np.concatenate([episode.observations["position"] for episode in demos])  # [sum(T + 1), 2]
    standardizer = extractor.extractors["position"]
    np.testing.assert_allclose(standardizer.mean.numpy(), positions.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(standardizer.std.numpy(), positions.std(axis=0), rtol=1e-5)
    assert th.equal(model.q_net_target.features_extractor.extractors["position"].mean, standardizer.mean)
    model.learn(20)


def test_single_frame_dict_demonstrations_are_stacked_as_vec_frame_stack_does(demos) -> None:
    env = VecFrameStack(DummyVecEnv([LitSideDictEnv]), n_stack=2)
    model = dict_model(env, demos)
    stacked = model.demonstrations[0].observations
    # The first observation of an episode: zeros, then the frame; the next one: the two frames
    first = demos[0].observations
    np.testing.assert_array_equal(stacked["position"][0], np.concatenate([np.zeros(2), first["position"][0]]))
    np.testing.assert_array_equal(stacked["position"][1], np.concatenate([first["position"][0], first["position"][1]]))
    # Image keys are stacked on their channels, then transposed to channel-first for the CNN
    assert stacked["image"].shape[1:] == (2, SIDE, SIDE)
    np.testing.assert_array_equal(stacked["image"][1][1], first["image"][1][..., 0])
    model.learn(30)


def test_demonstrations_with_other_keys_name_both_sides(demos) -> None:
    renamed = [
        Episode(
            {"image": episode.observations["image"], "velocity": episode.observations["position"]},
            episode.actions,
            episode.rewards,
            episode.terminated,
            episode.truncated,
        )
        for episode in demos
    ]
    with pytest.raises(
        ValueError, match=r"missing 'position'.*unexpected 'velocity'|unexpected 'velocity'.*missing 'position'"
    ):
        dict_model(LitSideDictEnv(), Demonstrations(renamed))


def test_array_demonstrations_for_a_dict_env_are_refused(demos) -> None:
    flat = [
        Episode(episode.observations["position"], episode.actions, episode.rewards, episode.terminated, episode.truncated)
        for episode in demos
    ]
    with pytest.raises(TypeError, match=r"needs a dict of arrays with the keys \['image', 'position'\]"):
        dict_model(LitSideDictEnv(), Demonstrations(flat))
