"""benchmarks/bench_stability.py: sb3-contrib's RecurrentPPO performance test kept as it is, the settings, a tiny run."""

import json
from pathlib import Path

import numpy as np
import pytest
from benchmark_helpers import load_benchmark
from gymnasium.envs.classic_control import CartPoleEnv
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecNormalize

from sb3_dqfd.common.experiment import LearningCurve
from sb3_dqfd.common.hyperparams import shipped_hyperparameters
from sb3_dqfd.transformer_a2c import TransformerA2C
from sb3_dqfd.transformer_ppo import TransformerPPO


@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("sb3_contrib")
    return load_benchmark("bench_stability")


def test_protocol_is_the_tests(bench):
    # sb3-contrib 2.9.2 tests/test_lstm.py::test_ppo_lstm_performance: 8 envs, eval on 4 envs every 5000 // 8 calls,
    # 20 eval episodes, 50k steps, evaluate_policy's 10 episodes against 450, TimeLimit 500
    assert (bench.N_ENVS, bench.N_EVAL_ENVS, bench.MAX_EPISODE_STEPS) == (8, 4, 500)
    assert (bench.BUDGET, bench.EVAL_FREQ, bench.EVAL_EPISODES) == (50_000, 5_000, 20)
    assert (bench.FINAL_EPISODES, bench.REWARD_THRESHOLD) == (10, 450.0)
    expected = dict(
        n_steps=128,
        learning_rate=0.0007,
        batch_size=256,
        n_epochs=10,
        max_grad_norm=1,
        gae_lambda=0.98,
        policy_kwargs=dict(net_arch=dict(vf=[64], pi=[]), lstm_hidden_size=64, ortho_init=False, enable_critic_lstm=True),
    )
    settings = bench.TEST_RECURRENT_PPO
    assert settings == expected


def test_env_is_the_tests(bench):
    env = bench.make_env()
    check_env(env.unwrapped)
    assert env.spec is None or env.spec.max_episode_steps in (None, 500)
    assert env._max_episode_steps == 500
    assert env.observation_space.shape == (2,)
    # The cart position and pole angle of CartPole, velocities dropped
    full = CartPoleEnv()
    observation, _ = env.reset(seed=3)
    full_observation, _ = full.reset(seed=3)
    np.testing.assert_array_equal(observation, full_observation[[0, 2]])
    observation, *_ = env.step(1)
    full_observation, *_ = full.step(1)
    np.testing.assert_array_equal(observation, full_observation[[0, 2]])


def test_envs_normalize_as_the_test(bench):
    env, eval_env = bench.make_envs(seed=1)
    assert isinstance(env, VecNormalize) and isinstance(eval_env, VecNormalize)
    assert (env.num_envs, env.training, env.norm_obs, env.norm_reward, env.gamma) == (8, True, True, True, 0.99)
    assert (eval_env.num_envs, eval_env.training, eval_env.norm_obs, eval_env.norm_reward) == (4, False, True, False)


def test_settings(bench):
    assert bench.hyperparameters("RecurrentPPO") == bench.TEST_RECURRENT_PPO
    # The shipped entries, unchanged
    assert bench.hyperparameters("TransformerPPO") == shipped_hyperparameters(TransformerPPO, "CartPoleNoVel-v1")
    assert bench.hyperparameters("TransformerA2C") == shipped_hyperparameters(TransformerA2C, "CartPoleNoVel-v1")
    # The test's PPO arguments with the shipped encoder, the critic on its own encoder (enable_critic_lstm=True)
    translated = bench.hyperparameters("TransformerPPO (test settings)")
    for key in ("n_steps", "learning_rate", "batch_size", "n_epochs", "max_grad_norm", "gae_lambda"):
        assert translated[key] == bench.TEST_RECURRENT_PPO[key]
    encoder = shipped_hyperparameters(TransformerPPO, "CartPoleNoVel-v1")["policy_kwargs"]
    assert translated["policy_kwargs"] == {**encoder, "share_encoder": False}
    # Not mutated by a caller
    bench.hyperparameters("RecurrentPPO")["policy_kwargs"]["lstm_hidden_size"] = 1
    assert bench.TEST_RECURRENT_PPO["policy_kwargs"]["lstm_hidden_size"] == 64
    with pytest.raises(ValueError, match="unknown method"):
        bench.hyperparameters("PPO")


@pytest.mark.parametrize(
    "method, algorithm, log_interval",
    [
        ("TransformerPPO", TransformerPPO, 1),  # 128 steps x 8 envs a rollout
        ("TransformerPPO (test settings)", TransformerPPO, 1),  # 128 x 8
        ("TransformerA2C", TransformerA2C, 16),  # 8 x 8
    ],
)
def test_build(bench, method, algorithm, log_interval):
    env, _ = bench.make_envs(seed=2)
    model = bench.build(method, env, seed=2)
    assert type(model) is algorithm and model.n_envs == 8 and model.seed == 2
    assert bench.log_interval(model) == log_interval
    if method == "TransformerPPO (test settings)":
        assert (model.n_steps, model.batch_size, model.n_epochs, model.max_grad_norm) == (128, 256, 10, 1)
        assert not model.policy.share_encoder


def test_build_recurrent_ppo(bench):
    from sb3_contrib import RecurrentPPO

    env, _ = bench.make_envs(seed=2)
    model = bench.build("RecurrentPPO", env, seed=2)
    assert type(model) is RecurrentPPO and (model.n_steps, model.batch_size, model.gae_lambda) == (128, 256, 0.98)
    assert model.policy.lstm_actor.hidden_size == 64 and model.policy.lstm_critic is not None


def test_options(bench, tmp_path):
    args = bench.parse_args([])
    assert (args.seeds, args.budget, args.eval_freq, args.eval_episodes, args.final_episodes, args.jobs) == (
        5,
        50_000,
        5_000,
        20,
        10,
        1,
    )
    assert args.methods == bench.METHODS and args.output_dir == bench.RESULTS
    args = bench.parse_args(["--methods", "TransformerA2C", "TransformerA2C", "--output-dir", str(tmp_path)])
    assert args.methods == ["TransformerA2C"] and args.output_dir == tmp_path


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--budget", "0"], "--budget must be at least 1"),
        (["--eval-freq", "4"], "--eval-freq must be at least 8"),
        (["--final-episodes", "0"], "--final-episodes must be at least 1"),
        (["--methods", "PPO"], "invalid choice: 'PPO'"),
    ],
)
def test_bad_options_are_refused(bench, capsys, argv, message):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "key, text, expected",
    [
        ("n_epochs", "4", 4),
        ("ent_coef", "0.01", 0.01),
        ("learning_rate", "7e-4", 0.0007),  # YAML 1.1 alone reads "7e-4" as a string
        ("learning_rate", "1.5e-4", 0.00015),
        ("normalize_value_targets", "false", False),
        ("normalize_advantage", "true", True),
        ("target_kl", "null", None),
        ("policy_kwargs.d_model", "64", 64),
        ("policy_kwargs.share_encoder", "false", False),
        ("policy_kwargs.optimizer_kwargs", "{eps: 0.00001}", {"eps": 0.00001}),
        ("policy_kwargs.optimizer_kwargs", "dict(eps=1e-5)", {"eps": 1e-5}),  # as in the hyperparameter files
        ("policy_kwargs.positional_encoding", "sinusoidal", "sinusoidal"),
    ],
)
def test_set_values(bench, key, text, expected):
    value = bench.parse_value(key, text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("key, text, start", [("learning_rate", "lin_7e-4", 7e-4), ("clip_range", "lin_0.2", 0.2)])
def test_set_linear_schedules(bench, key, text, start):
    # rl-zoo3's lin_<x>: SB3's LinearSchedule(x, 0.0, 1.0), from x at the start (progress 1) to 0 at the end
    schedule = bench.parse_value(key, text)
    assert isinstance(schedule, LinearSchedule)
    assert (schedule.start, schedule.end, schedule.end_fraction) == (start, 0.0, 1.0)
    assert (schedule(1.0), schedule(0.5), schedule(0.0)) == pytest.approx((start, start / 2, 0.0))


def test_set_labels(bench):
    overrides = {"policy_kwargs.d_model": "64", "learning_rate": "lin_7e-4"}
    assert (
        bench.override_label("TransformerPPO (test settings)", {"policy_kwargs.d_model": "64"})
        == "TransformerPPO (test settings) [policy_kwargs.d_model=64]"
    )
    assert (
        bench.override_label("TransformerA2C", overrides)
        == "TransformerA2C [policy_kwargs.d_model=64, learning_rate=lin_7e-4]"
    )
    # RecurrentPPO runs as the test has it, and no override means the plain method
    assert bench.override_label("RecurrentPPO", overrides) == "RecurrentPPO"
    assert [bench.override_label(method, {}) for method in bench.METHODS] == bench.METHODS
    # Log directories: the names the runs without --set always had, and a distinct one with it
    for method in bench.METHODS:
        old_name = f"{method.replace(' ', '_').replace('(', '').replace(')', '')}_seed3"
        assert bench.run_directory_name(method, 3) == old_name
    label = bench.override_label("TransformerPPO (test settings)", {"policy_kwargs.net_arch": "[64, 64]", "n_epochs": "4"})
    name = bench.run_directory_name(label, 1)
    assert name == "TransformerPPO_test_settings_policy_kwargs.net_arch=64__64__n_epochs=4_seed1"
    assert name != bench.run_directory_name("TransformerPPO (test settings)", 1) and "/" not in name


@pytest.mark.parametrize("method", ["TransformerPPO", "TransformerPPO (test settings)", "TransformerA2C"])
def test_set_hyperparameters(bench, method):
    plain = bench.hyperparameters(method)
    overrides = {
        "n_steps": "64",
        "ent_coef": "0.01",
        "normalize_value_targets": "false",
        "learning_rate": "lin_7e-4",
        "policy_kwargs.d_model": "64",
        "policy_kwargs.context_len": "8",
    }
    changed = bench.hyperparameters(method, overrides)
    schedule = changed.pop("learning_rate")
    assert isinstance(schedule, LinearSchedule) and schedule.start == 7e-4
    expected = {
        **{key: value for key, value in plain.items() if key != "learning_rate"},
        "n_steps": 64,
        "ent_coef": 0.01,
        "normalize_value_targets": False,
        "policy_kwargs": {**plain["policy_kwargs"], "d_model": 64, "context_len": 8},
    }
    assert changed == expected
    # The method's own settings are not changed by it
    assert bench.hyperparameters(method) == plain
    assert bench.hyperparameters(method, {}) == plain


def test_set_leaves_recurrent_ppo_alone(bench):
    overrides = {"n_steps": "64", "policy_kwargs.d_model": "64"}
    assert bench.hyperparameters("RecurrentPPO", overrides) == bench.TEST_RECURRENT_PPO
    args = bench.parse_args(["--methods", "TransformerA2C", "RecurrentPPO", "--set", "n_steps=64", "--output-dir", "runs"])
    assert args.methods == ["TransformerA2C", "RecurrentPPO"] and args.overrides == {"n_steps": "64"}


def test_set_options(bench):
    assert bench.parse_args([]).overrides == {}
    args = bench.parse_args(
        [
            "--methods",
            "TransformerPPO (test settings)",
            "--set",
            "policy_kwargs.d_model=64",
            "--set",
            " n_epochs = 4 ",
            "--set",
            "clip_range=lin_0.2",
            "--output-dir",
            "runs",
        ]
    )
    # In the order given, keys and values stripped, values kept as given (the label shows them so)
    assert list(args.overrides.items()) == [("policy_kwargs.d_model", "64"), ("n_epochs", "4"), ("clip_range", "lin_0.2")]


def test_set_build(bench):
    env, _ = bench.make_envs(seed=2)
    overrides = {"n_epochs": "4", "policy_kwargs.d_model": "64", "policy_kwargs.context_len": "8", "learning_rate": "lin_7e-4"}
    model = bench.build("TransformerPPO (test settings)", env, seed=2, overrides=overrides)
    assert (model.n_epochs, model.n_steps, model.batch_size) == (4, 128, 256)
    assert (model.policy.d_model, model.policy.context_len, model.policy.share_encoder) == (64, 8, False)
    assert isinstance(model.learning_rate, LinearSchedule) and model.lr_schedule(0.5) == pytest.approx(3.5e-4)
    model = bench.build("TransformerA2C", env, seed=2, overrides={"n_steps": "16", "normalize_value_targets": "false"})
    assert model.n_steps == 16 and not model.normalize_value_targets and bench.log_interval(model) == 8


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "n_epochs"], "--set 'n_epochs': expected KEY=VALUE"),
        (["--set", "=4"], "--set '=4': empty KEY"),
        (["--set", "n_epochs="], "--set 'n_epochs=': empty VALUE"),
        (["--methods", "TransformerPPO", "--set", "n_epochs=4", "--set", "n_epochs=5"], "--set n_epochs: given twice"),
        (["--methods", "TransformerPPO", "--set", "n_epochs=[4,"], "--set n_epochs=[4,: the value is not valid YAML"),
        (["--methods", "TransformerPPO", "--set", "learning_rate=lin_fast"], "'lin_fast' is not a linear schedule"),
        (["--methods", "RecurrentPPO", "--set", "n_epochs=4"], "--set changes the transformer methods only"),
        (["--methods", "TransformerPPO", "--set", "n_epoch=4"], "TransformerPPO takes no argument 'n_epoch'"),
        (["--methods", "TransformerPPO", "--set", "n_epoch=4"], "(did you mean n_epochs?)"),
        (["--methods", "TransformerPPO (test settings)", "--set", "lstm_hidden_size=64"], "takes no argument 'lstm_hidden"),
        # Checked against every selected method: TransformerA2C has no epochs (the default methods include it)
        (["--set", "n_epochs=4"], "TransformerA2C takes no argument 'n_epochs'"),
        (["--methods", "TransformerPPO", "TransformerA2C", "--set", "batch_size=64"], "leave TransformerA2C out of --methods"),
        (
            ["--methods", "TransformerA2C", "--set", "policy_kwargs.dmodel=64"],
            "takes no keyword 'dmodel' (did you mean d_model?)",
        ),
        (["--methods", "TransformerPPO", "--set", "policy_kwargs.lstm_hidden_size=64"], "takes no keyword 'lstm_hidden_size'"),
        (["--methods", "TransformerPPO", "--set", "policy_kwargs={d_model: 64}"], "set one policy keyword at a time"),
        (["--methods", "TransformerPPO", "--set", "seed=3"], "the benchmark sets seed itself (use --seeds)"),
        (["--methods", "TransformerPPO", "--set", "policy=CnnPolicy"], "the benchmark sets policy itself"),
        # The default output directory holds the committed results of the runs without overrides
        (["--methods", "TransformerPPO", "--set", "n_epochs=4"], "--set needs another --output-dir"),
    ],
)
def test_bad_set_is_refused(bench, capsys, argv, message):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


def fake_runs(bench):
    """A stand-in for ``run_in_processes`` that trains nothing: each job's record under the label run_one gives it."""

    def run_in_processes(function, jobs, max_workers, on_result=None):
        results = []
        for method, seed, settings in jobs:
            label = bench.override_label(method, settings.get("overrides") or {})
            curve = LearningCurve(label, seed, timesteps=[8], mean_returns=[9.0], std_returns=[0.0], train_seconds=1.0)
            record = dict(
                method=label, seed=seed, passed=False, final_mean=9.0, steps_per_second=8.0, steps_per_cpu_second=8.0
            )
            results.append((curve, record | {"settings": settings}))
            if on_result is not None:
                on_result(results)
        return results

    return run_in_processes


def test_set_recorded_in_the_results(bench, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench, "run_in_processes", fake_runs(bench))
    argv = ["--methods", "TransformerPPO (test settings)", "RecurrentPPO", "--seeds", "1", "--output-dir", str(tmp_path)]
    bench.main([*argv, "--set", "policy_kwargs.d_model=64", "--set", "learning_rate=lin_7e-4"])
    label = "TransformerPPO (test settings) [policy_kwargs.d_model=64, learning_rate=lin_7e-4]"
    saved = json.loads((tmp_path / "bench_stability.json").read_text())["metadata"]
    assert saved["overrides"] == {
        "values": {"policy_kwargs.d_model": "64", "learning_rate": "lin_7e-4"},
        "methods": ["TransformerPPO (test settings)"],
        "unchanged": ["RecurrentPPO"],
    }
    assert "--set policy_kwargs.d_model=64 --set learning_rate=lin_7e-4" in saved["command"]
    assert list(saved["hyperparameters"]) == [label, "RecurrentPPO"]
    assert "'d_model': 64" in saved["hyperparameters"][label]["policy_kwargs"]
    assert saved["hyperparameters"][label]["learning_rate"].startswith("LinearSchedule(start=0.0007")
    assert [run["method"] for run in saved["runs"]] == [label, "RecurrentPPO"]
    assert [row["method"] for row in saved["summary"]] == [label, "RecurrentPPO"]
    # Every job gets the overrides; run_one applies them to the transformer methods only
    assert all(run["settings"]["overrides"] == saved["overrides"]["values"] for run in saved["runs"])
    assert f"| {label} | 0/1 |" in capsys.readouterr().out
    # Without --set, the results are as they always were: the plain method names, no overrides anywhere
    bench.main(argv)
    saved = json.loads((tmp_path / "bench_stability.json").read_text())["metadata"]
    assert "overrides" not in saved and "overrides" not in saved["runs"][0]["settings"]
    assert list(saved["settings"]) == [
        "methods",
        "seeds",
        "budget",
        "eval_freq",
        "eval_episodes",
        "final_episodes",
        "jobs",
        "output_dir",
    ]
    assert list(saved["hyperparameters"]) == ["TransformerPPO (test settings)", "RecurrentPPO"]
    assert [run["method"] for run in saved["runs"]] == ["TransformerPPO (test settings)", "RecurrentPPO"]


def test_summary_counts_passes_as_the_test(bench):
    # The test asserts mean > 450: exactly 450 fails
    records = [
        dict(method="A", seed=1, passed=True, final_mean=500.0, steps_per_second=100.0, steps_per_cpu_second=200.0),
        dict(method="A", seed=2, passed=False, final_mean=450.0, steps_per_second=300.0, steps_per_cpu_second=400.0),
        dict(method="B", seed=1, passed=False, final_mean=9.5, steps_per_second=10.0, steps_per_cpu_second=20.0),
    ]
    rows = bench.summarize(records)
    assert [(row["method"], row["passed"], row["seeds"]) for row in rows] == [("A", 1, 2), ("B", 0, 1)]
    assert rows[0]["final_per_seed"] == {1: 500.0, 2: 450.0} and rows[0]["final_median"] == 475.0
    assert rows[0]["steps_per_second_median"] == 200.0
    table = bench.format_table(rows)
    assert "| A | 1/2 | 1: 500, 2: 450 | 475.0 | 200 | 300 |" in table


@pytest.mark.slow
def test_tiny_run(bench, tmp_path):
    metadata = bench.main(
        [
            "--methods",
            "TransformerA2C",
            "TransformerPPO",
            "--seeds",
            "1",
            "--budget",
            "512",
            "--eval-freq",
            "256",
            "--eval-episodes",
            "2",
            "--final-episodes",
            "2",
            "--output-dir",
            str(tmp_path),
        ]
    )
    saved = json.loads((tmp_path / "bench_stability.json").read_text())
    assert saved["metadata"]["complete"] and metadata["wall_seconds"] > 0
    assert (tmp_path / "bench_stability.png").stat().st_size > 0
    assert [(run["method"], run["seed"]) for run in saved["metadata"]["runs"]] == [
        ("TransformerA2C", 1),
        ("TransformerPPO", 1),
    ]
    for run, curve in zip(saved["metadata"]["runs"], saved["curves"], strict=True):
        assert len(run["final_returns"]) == 2 and run["passed"] == (run["final_mean"] > 450)
        assert curve["timesteps"] == [256, 512] and curve["train_seconds"] > 0 and curve["eval_seconds"] > 0
        assert run["env_steps"] == 512 and run["steps_per_second"] > 0
        header = Path(run["log"]).read_text().splitlines()[0].split(",")
        assert {"train/value_std", "train/value_mean", "train/grad_norm", "train/learning_rate", "eval/mean_reward"} <= set(
            header
        )
