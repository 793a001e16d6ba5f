"""TransformerPPO (minibatches of stored windows, clipping, target_kl, errors) and the observation kinds both transformer
algorithms encode through per-step features extractors (Discrete, MultiDiscrete, MultiBinary, images, Dict)."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.torch_layers import CombinedExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.common.vec_env import VecNormalize, VecTransposeImage
from test_transformer_a2c import CartPoleNoVel, RandomEnv

from sb3_dqfd import TransformerA2C, TransformerPPO
from sb3_dqfd.dqfd.policies import MinAtarCNN


class ObservationEnv(gym.Env):
    """Observations sampled from any space (seeded by ``reset``), reward 1 for the first action coordinate > 0."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space | None = None, episode_length: int = 5):
        self.observation_space = observation_space
        self.action_space = action_space or spaces.Discrete(2)
        self.episode_length = episode_length
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.observation_space.seed(seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        reward = float(np.asarray(action).reshape(-1)[0] > 0)
        return self.observation_space.sample(), reward, False, self.t >= self.episode_length, {}


IMAGE = spaces.Box(0, 255, (36, 36, 3), dtype=np.uint8)  # channel-last, the smallest NatureCNN reads
SMALL_IMAGE = spaces.Box(0, 255, (10, 10, 4), dtype=np.uint8)  # MinAtar-sized
DICT = spaces.Dict(
    {
        "image": spaces.Box(0, 255, (36, 36, 1), dtype=np.uint8),
        "position": spaces.Box(-5, 5, (3,), dtype=np.float32),
        "room": spaces.Discrete(4),
    }
)


def make_model(algorithm: type, policy: str, env, **kwargs):
    if algorithm is TransformerPPO:
        kwargs = {"batch_size": 4, "n_epochs": 2, **kwargs}
    return algorithm(policy, env, n_steps=4, seed=0, **{"policy_kwargs": dict(context_len=3), **kwargs})


@pytest.mark.parametrize("algorithm", [TransformerA2C, TransformerPPO])
@pytest.mark.parametrize(
    "observation_space, policy, extractor, standardized",
    [
        (spaces.Discrete(5), "MlpPolicy", FlattenExtractor, 0),
        (spaces.MultiDiscrete([3, 4]), "MlpPolicy", FlattenExtractor, 0),
        (spaces.MultiBinary(4), "MlpPolicy", FlattenExtractor, 0),
        (IMAGE, "CnnPolicy", NatureCNN, 0),
        (SMALL_IMAGE, "CnnPolicy", MinAtarCNN, 0),
        (DICT, "MultiInputPolicy", CombinedExtractor, 3),
    ],
)
def test_observation_kinds_learn_predict_with_state_and_save_load(
    tmp_path, algorithm, observation_space, policy, extractor, standardized
):
    env = make_vec_env(lambda: ObservationEnv(observation_space), n_envs=2, seed=0)
    model = make_model(algorithm, policy, env).learn(16)
    assert isinstance(model.policy.features_extractor, extractor)
    # Only the non-image Box entries get running standardization (images are divided by 255, discrete ones one-hot)
    assert int(model.policy.obs_norm_mask.sum()) == standardized
    assert model.policy.obs_count.item() == (16 if standardized else 0)
    if isinstance(observation_space, spaces.Box) and observation_space.dtype == np.uint8:
        assert isinstance(model.get_env(), VecTransposeImage) and model.rollout_buffer.window_observations.dtype == np.uint8

    model.save(tmp_path / "model")
    loaded = algorithm.load(tmp_path / "model", env=env)
    obs = env.reset()
    state_a = state_b = None
    starts = np.ones(2, dtype=bool)
    for _ in range(4):
        actions_a, state_a = model.predict(obs, state=state_a, episode_start=starts, deterministic=True)
        actions_b, state_b = loaded.predict(obs, state=state_b, episode_start=starts, deterministic=True)
        np.testing.assert_array_equal(actions_a, actions_b)
        np.testing.assert_array_equal(state_a.observations, state_b.observations)
        obs, _, starts, _ = env.step(actions_a)
    assert state_a.valid.sum() >= 4  # the windows did carry several steps
    th.testing.assert_close(loaded.policy.obs_mean, model.policy.obs_mean)
    mean_reward, _ = evaluate_policy(loaded, env, n_eval_episodes=2)
    assert np.isfinite(mean_reward)


def test_predict_transposes_channel_last_images_as_sb3():
    env = make_vec_env(lambda: ObservationEnv(IMAGE), n_envs=1, seed=0)
    model = make_model(TransformerPPO, "CnnPolicy", env)
    image = IMAGE.sample()
    channel_last, _ = model.predict(image, deterministic=True)
    channel_first, _ = model.predict(np.transpose(image, (2, 0, 1)), deterministic=True)
    assert channel_last == channel_first


@pytest.mark.parametrize(
    "observation_space, policy",
    [(spaces.Box(-1, 1, (3,), dtype=np.float32), "MlpPolicy"), (DICT, "MultiInputPolicy")],
)
@pytest.mark.parametrize("action_space", [spaces.Discrete(3), spaces.Box(-1, 1, (2,), dtype=np.float32)])
def test_minibatches_of_stored_windows_reproduce_the_collection_log_probs(observation_space, policy, action_space):
    env = make_vec_env(lambda: ObservationEnv(observation_space, action_space, episode_length=7), n_envs=2, seed=0)
    model = TransformerPPO(policy, env, n_steps=6, batch_size=4, n_epochs=1, seed=0, policy_kwargs=dict(context_len=5))
    _, callback = model._setup_learn(10_000, None)
    for _ in range(3):
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        n_batches = 0
        for data in model.rollout_buffer.get(model.batch_size):
            actions = data.actions.long().flatten() if isinstance(action_space, spaces.Discrete) else data.actions
            with th.no_grad():
                values, log_prob, _ = model.policy.evaluate_actions(data.windows, actions)
            # Up to float rounding: a minibatch is a batch of another shape than the collection's (n_envs windows),
            # so BLAS may sum in another order; a real mismatch (another window, other statistics) is orders larger
            th.testing.assert_close(log_prob, data.old_log_prob, rtol=0, atol=1e-6)
            th.testing.assert_close(model.policy.denormalize_values(values).flatten(), data.old_values)
            n_batches += 1
        assert n_batches == 3
        model.train()  # weights, PopArt and observation statistics all change before the next rollout


def test_learns_a_few_hundred_steps_of_cartpole_without_velocities():
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0, wrapper_class=CartPoleNoVel)
    model = TransformerPPO("MlpPolicy", env, n_steps=32, batch_size=16, n_epochs=2, seed=0, policy_kwargs=dict(context_len=8))
    model.learn(320)
    assert model.num_timesteps == 320
    assert model._n_updates == 5 * 2
    assert model.logger.name_to_value["train/clip_range"] == pytest.approx(0.2)
    for key in ("train/approx_kl", "train/clip_fraction", "train/value_std", "train/explained_variance"):
        assert np.isfinite(model.logger.name_to_value[key]), key


@pytest.mark.parametrize(
    "action_space, kwargs",
    [
        (spaces.Discrete(3), {}),
        (spaces.MultiDiscrete([2, 3]), dict(clip_range_vf=0.2)),
        (spaces.MultiBinary(2), dict(normalize_value_targets=False, clip_range_vf=1.0)),
        (spaces.Box(-1, 1, (2,), dtype=np.float32), dict(policy_kwargs=dict(context_len=4, state_dependent_std=True))),
    ],
)
def test_learn_predict_evaluate_save_load(tmp_path, action_space, kwargs):
    env = make_vec_env(lambda: RandomEnv(action_space), n_envs=2, seed=0)
    model = make_model(TransformerPPO, "MlpPolicy", env, **kwargs).learn(32)
    mean_reward, _ = evaluate_policy(model, env, n_eval_episodes=2)
    assert np.isfinite(mean_reward)
    model.save(tmp_path / "model")
    loaded = TransformerPPO.load(tmp_path / "model")
    assert (loaded.batch_size, loaded.n_epochs) == (4, 2)
    assert loaded.clip_range(1.0) == pytest.approx(0.2)
    observations = np.random.default_rng(0).uniform(-1, 1, size=(6, 2, 3)).astype(np.float32)
    starts = np.zeros((6, 2), dtype=bool)
    starts[0] = starts[3, 1] = True
    state_a = state_b = None
    for obs, start in zip(observations, starts, strict=True):
        actions_a, state_a = model.predict(obs, state=state_a, episode_start=start, deterministic=True)
        actions_b, state_b = loaded.predict(obs, state=state_b, episode_start=start, deterministic=True)
        np.testing.assert_array_equal(actions_a, actions_b)
        assert action_space.contains(actions_a[0])
    # Running statistics (PopArt, observations) travel with the model.
    assert loaded.policy.value_std.item() == model.policy.value_std.item()
    assert loaded.policy.obs_count.item() == model.policy.obs_count.item() > 0
    th.testing.assert_close(loaded.policy.obs_mean, model.policy.obs_mean)


def test_target_kl_stops_the_epochs():
    def updates(target_kl: float | None) -> int:
        env = make_vec_env(lambda: RandomEnv(spaces.Discrete(3)), n_envs=2, seed=0)
        model = make_model(TransformerPPO, "MlpPolicy", env, learning_rate=0.05, n_epochs=5, target_kl=target_kl)
        model.learn(8)  # one rollout of 4 steps x 2 envs: 2 minibatches per epoch
        return model._n_updates

    assert updates(None) == 5
    # The first minibatch's KL is exactly 0 (its windows are those of the collection), so one step is always taken;
    # after it the KL exceeds 1.5 * 1e-9 and the first epoch is the last
    assert updates(1e-9) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=3), r"batch_size \(3\) must divide n_steps \* n_envs = 4 \* 2 = 8"),
        (dict(batch_size=1), "batch_size must be >= 2 with normalize_advantage=True"),
        (dict(batch_size=0, normalize_advantage=False), "batch_size must be >= 1"),
        (dict(clip_range=0.0), "clip_range must be > 0"),
        (dict(clip_range=-0.1), "clip_range must be > 0"),
        (dict(clip_range_vf=0.0), "clip_range_vf must be > 0"),
        (dict(n_epochs=0), "n_epochs must be >= 1"),
        (dict(target_kl=0.0), "target_kl must be > 0"),
        (dict(value_norm_beta=0.0), r"value_norm_beta must be in \(0, 1\]"),
        (dict(policy_kwargs=dict(context_len=0)), "context_len must be >= 1"),
    ],
)
def test_bad_arguments(kwargs, match):
    env = make_vec_env(lambda: RandomEnv(spaces.Discrete(2)), n_envs=2)
    with pytest.raises(ValueError, match=match):
        TransformerPPO("MlpPolicy", env, **{"n_steps": 4, "batch_size": 4, **kwargs})


def test_multi_input_policy_is_accepted_for_dict_observations_and_required_by_sb3():
    env = make_vec_env(lambda: ObservationEnv(DICT), n_envs=1, seed=0)
    for algorithm in (TransformerA2C, TransformerPPO):
        with pytest.raises(ValueError, match="You must use `MultiInputPolicy`"):
            algorithm("MlpPolicy", env)
        assert algorithm("MultiInputPolicy", env, policy_kwargs=dict(context_len=2)).policy is not None


@pytest.mark.parametrize("algorithm", [TransformerA2C, TransformerPPO])
def test_observations_are_standardized_once_under_vec_normalize(tmp_path, algorithm):
    kwargs = dict(n_steps=8, batch_size=16) if algorithm is TransformerPPO else dict(n_steps=8)
    # VecNormalize standardizes the observations: the policy's own running standardization is switched off ...
    model = algorithm("MlpPolicy", VecNormalize(make_vec_env("CartPole-v1", n_envs=2)), **kwargs)
    assert not model.policy.normalize_observations and not model.policy.standardize
    model.learn(16)
    assert float(model.policy.obs_count) == 0.0
    # ... and stays off after a save/load without VecNormalize
    model.save(tmp_path / "model")
    assert not algorithm.load(tmp_path / "model", env=make_vec_env("CartPole-v1", n_envs=2)).policy.normalize_observations
    # Without VecNormalize, or when VecNormalize leaves observations alone, the policy standardizes them
    for env in (make_vec_env("CartPole-v1", n_envs=2), VecNormalize(make_vec_env("CartPole-v1", n_envs=2), norm_obs=False)):
        assert algorithm("MlpPolicy", env, **kwargs).policy.normalize_observations
    # Asking for both is an error that says what to do
    with pytest.raises(ValueError, match=r"VecNormalize\(norm_obs=True\) already standardizes"):
        algorithm(
            "MlpPolicy",
            VecNormalize(make_vec_env("CartPole-v1", n_envs=2)),
            policy_kwargs=dict(normalize_observations=True),
            **kwargs,
        )
