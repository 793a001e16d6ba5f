"""benchmarks/bench_stability.py: sb3-contrib's RecurrentPPO performance test kept as it is, the settings, a tiny run."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from gymnasium.envs.classic_control import CartPoleEnv
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_dqfd.common.hyperparams import shipped_hyperparameters
from sb3_dqfd.transformer_a2c import TransformerA2C
from sb3_dqfd.transformer_ppo import TransformerPPO

BENCH = Path(__file__).parents[1] / "benchmarks" / "bench_stability.py"


@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("sb3_contrib")
    spec = importlib.util.spec_from_file_location("bench_stability", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_stability"] = module  # the worker processes unpickle run_one from it
    spec.loader.exec_module(module)
    return module


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
        ("TransformerPPO", TransformerPPO, 4),  # 32 steps x 8 envs a rollout
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
