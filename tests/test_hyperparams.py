"""rl-zoo3 style YAML hyperparameter files: parsed without eval, unknown keys named."""

from pathlib import Path

import pytest
from stable_baselines3 import DQN
from stable_baselines3.common.utils import LinearSchedule

from sb3_dqfd.common.hyperparams import load_hyperparameters


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hyperparams.yml"
    path.write_text(text)
    return path


def test_zoo_entry_is_parsed(tmp_path):
    path = write(
        tmp_path,
        """
CartPole-v1:
  n_timesteps: !!float 5e4
  policy: 'MlpPolicy'
  learning_rate: lin_2.3e-3
  batch_size: 64
  policy_kwargs: "dict(net_arch=[256, 256])"
MountainCar-v0:
  batch_size: 128
""",
    )
    params = load_hyperparameters(path, "CartPole-v1", DQN)
    assert params["n_timesteps"] == 50_000
    assert params["policy"] == "MlpPolicy"
    assert params["batch_size"] == 64
    assert params["policy_kwargs"] == {"net_arch": [256, 256]}
    assert isinstance(params["learning_rate"], LinearSchedule)
    assert params["learning_rate"](1.0) == pytest.approx(2.3e-3)
    assert params["learning_rate"](0.0) == pytest.approx(0.0)


def test_unknown_keys_are_named(tmp_path):
    path = write(tmp_path, "CartPole-v1:\n  batch_size: 64\n  lerning_rate: 0.1\n  foo: 1\n")
    with pytest.raises(ValueError, match=r"unknown hyperparameters for DQN.*\['foo', 'lerning_rate'\]"):
        load_hyperparameters(path, "CartPole-v1", DQN)


@pytest.mark.parametrize(
    "text, message",
    [
        ("MountainCar-v0:\n  batch_size: 1\n", r"no entry for 'CartPole-v1' \(entries: \['MountainCar-v0'\]\)"),
        ("CartPole-v1: [1, 2]\n", "must be a mapping"),
        ("CartPole-v1:\n  policy_kwargs: \"__import__('os').system('true')\"\n", "expected a mapping or a string 'dict"),
        ('CartPole-v1:\n  policy_kwargs: "dict(activation_fn=nn.ReLU)"\n', "only literal values"),
        ("CartPole-v1:\n  learning_rate: lin_fast\n", "not a linear schedule"),
        ("CartPole-v1: {batch_size: [\n", "not valid YAML"),
    ],
)
def test_bad_files(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_hyperparameters(write(tmp_path, text), "CartPole-v1", DQN)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_hyperparameters(tmp_path / "nope.yml", "CartPole-v1", DQN)
