"""benchmarks/bench_memory.py: its options, the POPGym tasks skipped without popgym, its settings, a run at a tiny budget."""

import json
from pathlib import Path

import numpy as np
import pytest
from benchmark_helpers import load_benchmark
from gymnasium import spaces


@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("sb3_contrib")
    return load_benchmark("bench_memory")


def test_defaults_and_small_mode(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "popgym_available", lambda: True)
    args = bench.parse_args([])
    assert args.tasks == list(bench.TASKS) and args.methods == bench.METHODS
    assert (args.seeds, args.budget, args.jobs, args.output.name) == (3, None, 2, "bench_memory.json")
    small = bench.parse_args(["--small", "--tasks", "CartPoleNoVel", "CartPoleNoVel", "--output", str(tmp_path / "s.json")])
    assert (small.seeds, small.budget, small.eval_freq, small.eval_episodes) == (1, 2_048, 1_024, 5)
    assert small.tasks == ["CartPoleNoVel"] and small.output == tmp_path / "s.json"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--budget", "0"], "--budget must be at least 1"),
        (["--eval-freq", "-5"], "--eval-freq must be at least 1"),
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--eval-episodes", "3"], "--eval-episodes must be at least 5"),
        (["--tasks", "MountainCar"], "invalid choice: 'MountainCar'"),
        (["--methods", "DQN"], "invalid choice: 'DQN'"),
    ],
)
def test_bad_options_are_refused(bench, capsys, argv, message):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


def test_popgym_tasks_are_skipped_with_a_message_without_popgym(bench, capsys, monkeypatch):
    monkeypatch.setattr(bench, "popgym_available", lambda: False)
    args = bench.parse_args([])
    assert args.tasks == ["CartPoleNoVel"]
    assert args.skipped == ["PositionOnlyCartPoleEasy", "RepeatPreviousEasy", "CountRecallEasy"]
    assert "the POPGym tasks need the optional popgym package" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(["--tasks", "RepeatPreviousEasy"])
    assert "no task left to run" in capsys.readouterr().err


def test_settings_follow_the_zoo_and_the_shipped_entries(bench):
    yaml = pytest.importorskip("yaml")
    rl_zoo3 = pytest.importorskip("rl_zoo3")
    entry = yaml.safe_load((Path(rl_zoo3.__file__).parent / "hyperparams" / "ppo_lstm.yml").read_text())["CartPoleNoVel-v1"]
    settings = bench.zoo_recurrent_ppo_hyperparameters()
    for key in ("n_steps", "batch_size", "gae_lambda", "gamma", "n_epochs", "ent_coef"):
        assert settings[key] == entry[key], key
    assert entry["normalize"] is True and entry["n_envs"] == bench.N_ENVS
    assert settings["learning_rate"](1.0) == pytest.approx(1e-3) and settings["learning_rate"](0.0) == 0.0
    assert settings["clip_range"](1.0) == pytest.approx(0.2)
    ppo = bench.ppo_hyperparameters()
    assert {key: repr(value) for key, value in ppo.items() if key != "policy_kwargs"} == {
        key: repr(value) for key, value in settings.items() if key != "policy_kwargs"
    }
    assert "lstm_hidden_size" not in ppo["policy_kwargs"]
    assert bench.hyperparameters("TransformerPPO", "CountRecallEasy")["policy_kwargs"]["context_len"] == 52
    assert bench.hyperparameters("TransformerA2C", "CartPoleNoVel")["n_steps"] == 8


def test_one_hot_observation_matches_sb3_preprocessing(bench):
    import gymnasium as gym
    import torch as th
    from stable_baselines3.common.preprocessing import preprocess_obs

    class Cards(gym.Env):
        observation_space = spaces.MultiDiscrete([2, 3])
        action_space = spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            return np.array([1, 2]), {}

        def step(self, action):
            return np.array([0, 1]), 0.0, True, False, {}

    env = bench.OneHotObservation(Cards())
    encoded, _ = env.reset()
    assert env.observation_space == spaces.Box(0.0, 1.0, (5,), dtype=np.float32)
    expected = preprocess_obs(th.as_tensor(np.array([[1, 2]])), Cards.observation_space).numpy()[0]
    np.testing.assert_array_equal(encoded, expected)
    np.testing.assert_array_equal(env.step(0)[0], [1, 0, 0, 1, 0])


@pytest.mark.slow
def test_every_method_runs_on_one_task_at_a_tiny_budget(bench, tmp_path):
    output = tmp_path / "memory.json"
    argv = ["--tasks", "CartPoleNoVel", "--seeds", "1", "--budget", "512", "--eval-freq", "256", "--eval-episodes", "5"]
    bench.main([*argv, "--jobs", "1", "--output", str(output)])
    results = json.loads(output.read_text())
    metadata = results["metadata"]
    assert metadata["complete"] and metadata["budgets"] == {"CartPoleNoVel": 512}
    assert sorted(curve["label"] for curve in results["curves"]) == sorted(bench.METHODS)
    for curve in results["curves"]:
        assert curve["timesteps"][0] == 0 and curve["timesteps"][-1] >= 512 and len(curve["timesteps"]) >= 3
        assert curve["train_seconds"] > 0
    report = metadata["report"]["CartPoleNoVel"]
    assert [row["method"] for row in report["rows"]] == bench.METHODS
    goals = report["goals"]
    assert goals["evaluated"] and goals["throughput_ratio"] > 0
    assert isinstance(goals["final_above_recurrent_ppo"], bool) and isinstance(goals["throughput_at_least_4x"], bool)
    assert len(metadata["runs"]) == 5 and all(0 < run["cpu_share"] <= 1 for run in metadata["runs"])
    assert "### Goals" in output.with_suffix(".md").read_text()
    assert output.with_suffix(".png").exists() and not list(tmp_path.glob("*partial*"))
