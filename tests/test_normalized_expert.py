"""Experts trained under VecNormalize: recording and evaluating them with the statistics saved with them."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_dqfd.cli import main
from sb3_dqfd.common.demonstrations import load_demonstrations, record_demonstrations
from sb3_dqfd.common.experts import (
    NormalizedExpert,
    find_vecnormalize_statistics,
    load_vecnormalize_statistics,
)

ENV_ID = "Pendulum-v1"


def normalized_model(folder: Path, zoo_layout: bool) -> tuple[Path, VecNormalize]:
    """
    A PPO model trained a little under VecNormalize (statistics far from the identity: Pendulum's angular velocity
    spans [-8, 8]), saved as ``sb3-dqfd train`` (statistics next to it) or as rl-zoo3 (``<run>/<env>/``) does.
    """
    env = VecNormalize(make_vec_env(ENV_ID, n_envs=1, seed=0), norm_reward=False)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0)
    model.learn(128)
    model_path = folder / f"{ENV_ID}.zip"
    model.save(model_path)
    statistics_folder = folder / ENV_ID if zoo_layout else folder
    statistics_folder.mkdir(parents=True, exist_ok=True)
    env.save(str(statistics_folder / "vecnormalize.pkl"))
    return model_path, env


@pytest.mark.parametrize("zoo_layout", [False, True])
def test_statistics_are_found_next_to_the_model_or_in_rl_zoo3_layout(tmp_path, zoo_layout):
    model_path, _ = normalized_model(tmp_path, zoo_layout)
    expected = tmp_path / ENV_ID / "vecnormalize.pkl" if zoo_layout else tmp_path / "vecnormalize.pkl"
    assert find_vecnormalize_statistics(model_path) == expected
    assert find_vecnormalize_statistics(model_path.with_suffix("")) == expected  # SB3's load takes either


def test_no_statistics_found_without_them(tmp_path):
    PPO("MlpPolicy", ENV_ID, n_steps=64, batch_size=32).save(tmp_path / "model")
    assert find_vecnormalize_statistics(tmp_path / "model.zip") is None


def test_normalized_expert_acts_on_scaled_observations_and_records_raw_ones(tmp_path):
    model_path, env = normalized_model(tmp_path, zoo_layout=True)
    model = PPO.load(model_path, device="cpu")
    statistics = load_vecnormalize_statistics(find_vecnormalize_statistics(model_path))
    assert not statistics.training and not statistics.norm_reward
    np.testing.assert_allclose(statistics.obs_rms.mean, env.obs_rms.mean)
    expert = NormalizedExpert(model, statistics)
    demos = record_demonstrations(expert, ENV_ID, n_episodes=1, seed=3)
    observations = demos.episodes[0].observations[:-1]
    # Raw observations: Pendulum's are [cos, sin, angular velocity], bounded by 1 in the first two
    assert np.abs(observations[:, :2]).max() <= 1.0 + 1e-6
    scaled = np.clip((observations - env.obs_rms.mean) / np.sqrt(env.obs_rms.var + env.epsilon), -10, 10)
    expected, _ = model.predict(scaled.astype(np.float32), deterministic=True)
    np.testing.assert_allclose(demos.episodes[0].actions, np.clip(expected, -2, 2), rtol=1e-5, atol=1e-6)
    # The model on the raw observations would act otherwise: the scaling matters here
    unscaled, _ = model.predict(observations.astype(np.float32), deterministic=True)
    assert not np.allclose(unscaled, expected, atol=1e-3)


def test_statistics_of_other_observations_are_refused(tmp_path):
    _, env = normalized_model(tmp_path, zoo_layout=False)
    other = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32)
    with pytest.raises(ValueError, match="do not fit the model's observations"):
        NormalizedExpert(other, env)


def test_a_file_that_is_not_statistics_is_refused(tmp_path):
    path = tmp_path / "vecnormalize.pkl"
    path.write_bytes(pickle.dumps({"not": "statistics"}))
    with pytest.raises(TypeError, match="expected VecNormalize statistics"):
        load_vecnormalize_statistics(path)


def test_cli_records_and_evaluates_an_rl_zoo3_model_with_its_statistics(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model_path, env = normalized_model(Path("run"), zoo_layout=True)
    argv = ["record", "--env", ENV_ID, "--model", str(model_path), "--algo", "ppo", "--episodes", "1", "--seed", "3"]
    argv += ["--output", "d.npz"]
    assert main(argv) == 0
    assert f"Observations scaled for the model with run/{ENV_ID}/vecnormalize.pkl" in capsys.readouterr().out
    recorded = load_demonstrations("d.npz")
    direct = record_demonstrations(NormalizedExpert(PPO.load(model_path, device="cpu"), env), ENV_ID, n_episodes=1, seed=3)
    np.testing.assert_allclose(recorded.episodes[0].actions, direct.episodes[0].actions, rtol=1e-6)
    argv = ["evaluate", str(model_path), "--algo", "ppo", "--env", ENV_ID, "--episodes", "1", "--json", "eval.json"]
    assert main(argv) == 0
    assert f"observations normalized with run/{ENV_ID}/vecnormalize.pkl" in capsys.readouterr().out
    assert json.loads(Path("eval.json").read_text())["vecnormalize"] == f"run/{ENV_ID}/vecnormalize.pkl"
