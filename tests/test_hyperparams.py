"""rl-zoo3 style YAML hyperparameter files: parsed without eval, unknown keys named."""

from pathlib import Path

import pytest
from stable_baselines3 import DQN
from stable_baselines3.common.utils import LinearSchedule

from sb3_dqfd import DQfD, TransformerA2C, record_demonstrations, shipped_hyperparameters
from sb3_dqfd.common.hyperparams import RUN_KEYS, load_hyperparameters, parse_hyperparameter
from sb3_dqfd.zoo.registration import ZOO_KEYS


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
    with pytest.raises(ValueError, match=r"unknown hyperparameters for DQN.*\['foo', 'lerning_rate'\]") as error:
        load_hyperparameters(path, "CartPole-v1", DQN)
    assert "did you mean: lerning_rate -> learning_rate?" in str(error.value)
    assert "_init_setup_model" not in str(error.value)  # SB3's private constructor argument is no hyperparameter


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


@pytest.mark.parametrize("algorithm, env_id", [(DQfD, "MountainCar-v0"), (TransformerA2C, "CartPoleNoVel-v1")])
def test_shipped_hyperparameters_are_constructor_arguments(algorithm, env_id):
    params = shipped_hyperparameters(algorithm, env_id)
    assert not set(params) & {*RUN_KEYS, "demonstrations"}
    file = "dqfd.yml" if algorithm is DQfD else "transformer_a2c.yml"
    entry = load_hyperparameters(Path(__file__).parents[1] / "sb3_dqfd" / "hyperparams" / file, env_id, algorithm)
    assert params == {key: value for key, value in entry.items() if key not in {*RUN_KEYS, "demonstrations"}}


def test_shipped_hyperparameters_build_the_benchmarked_dqfd():
    demos = record_demonstrations("MountainCar-v0", "MountainCar-v0", n_episodes=1, seed=0)
    model = DQfD("MlpPolicy", "MountainCar-v0", demonstrations=demos, **shipped_hyperparameters(DQfD, "MountainCar-v0"))
    assert model.n_steps == 25 and model.exploration_initial_eps == 0.2 and model.normalize_observations


def test_shipped_hyperparameters_bad_input():
    with pytest.raises(ValueError, match=r"no entry for 'Pong-v5' \(entries: \['CartPole-v1'"):
        shipped_hyperparameters(DQfD, "Pong-v5")
    with pytest.raises(ValueError, match="No shipped hyperparameters for DQN"):
        shipped_hyperparameters(DQN, "CartPole-v1")


def test_parse_hyperparameter_reads_values_as_the_yaml_files():
    schedule = parse_hyperparameter("learning_rate", "lin_3e-4", "--set")
    assert isinstance(schedule, LinearSchedule)
    assert schedule(1.0) == pytest.approx(3e-4) and schedule(0.0) == 0.0
    assert parse_hyperparameter("policy_kwargs", "dict(net_arch=[32])", "--set") == {"net_arch": [32]}
    assert parse_hyperparameter("batch_size", 32, "--set") == 32
    with pytest.raises(ValueError, match=r"--set: learning_rate='lin_fast' is not a linear schedule"):
        parse_hyperparameter("learning_rate", "lin_fast", "--set")
    with pytest.raises(ValueError, match=r"--set: policy_kwargs.*only literal values"):
        parse_hyperparameter("policy_kwargs", "dict(activation_fn=nn.ReLU)", "--set")


def test_other_keys_are_read_only_when_asked(tmp_path):
    path = write(
        tmp_path,
        """
CartPole-v1:
  n_envs: 4
  normalize: "dict(norm_obs=True, norm_reward=False)"
  env_kwargs: "dict(sutton_barto_reward=True)"
  frame_stack: 4
  env_wrapper: [{gymnasium.wrappers.TimeLimit: {max_episode_steps: 10}}]
""",
    )
    params = load_hyperparameters(path, "CartPole-v1", DQN, extra_keys=ZOO_KEYS)
    assert params == {
        "n_envs": 4,
        "normalize": {"norm_obs": True, "norm_reward": False},
        "env_kwargs": {"sutton_barto_reward": True},
        "frame_stack": 4,
        "env_wrapper": [{"gymnasium.wrappers.TimeLimit": {"max_episode_steps": 10}}],
    }
    # By default, as before: constructor arguments and run keys only
    with pytest.raises(ValueError, match=r"unknown hyperparameters for DQN.*\['env_kwargs', 'env_wrapper', 'frame_stack', 'n"):
        load_hyperparameters(path, "CartPole-v1", DQN)


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, True),
        ("dict(norm_obs=True, norm_reward=False)", {"norm_obs": True, "norm_reward": False}),
        ("{'norm_obs': False, 'clip_obs': 5.0}", {"norm_obs": False, "clip_obs": 5.0}),  # both of rl-zoo3's string forms
    ],
)
def test_normalize_is_read_as_rl_zoo3_writes_it(value, expected):
    assert parse_hyperparameter("normalize", value, "--set") == expected
