"""The sb3-dqfd command line refuses bad input before any work, in one line naming the option, with exit status 2."""

import sys
from pathlib import Path

import pytest

from sb3_dqfd import DQfD
from sb3_dqfd.cli import main

TRAIN = ["train", "dqfd", "--env", "CartPole-v1", "--demos", "missing.npz"]
# A budget that ends in a second should a check be missing: the command must fail before it
TINY = ["--timesteps", "8", "--eval-freq", "8", "--eval-episodes", "1", "--output-dir", "run"]


def assert_one_line_error(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    error = capsys.readouterr().err
    assert exit_info.value.code == 2, (argv, error)
    assert error.startswith("sb3-dqfd: error: ") and error.count("\n") == 1, (argv, error)
    assert message in error, (argv, error)
    return error


@pytest.mark.parametrize(
    "argv, message",
    [
        # --demos missing.npz: without the check, the command fails on the file (fast) instead of the option
        ([*TRAIN, "--n-envs", "0"], "argument --n-envs: expected a whole number >= 1, got 0"),
        ([*TRAIN, "--timesteps", "0"], "argument --timesteps: expected a whole number >= 1, got 0"),
        ([*TRAIN, "--timesteps", "-5"], "argument --timesteps: expected a whole number >= 1, got -5"),
        ([*TRAIN, "--timesteps", "5e4"], "argument --timesteps: expected a whole number, got '5e4'"),
        ([*TRAIN, "--eval-freq", "0"], "argument --eval-freq"),
        ([*TRAIN, "--eval-episodes", "0"], "argument --eval-episodes"),
        ([*TRAIN, "--pretrain-steps", "-1"], "argument --pretrain-steps: expected a whole number >= 0, got -1"),
        ([*TRAIN, "--seed", "-1"], "argument --seed"),
        (["record", "--env", "CartPole-v1", "--episodes", "0", "--output", "x.npz"], "argument --episodes"),
        (["record", "--env", "CartPole-v1", "--seed", "-3", "--output", "x.npz"], "argument --seed"),
        (["evaluate", "missing.zip", "--env", "CartPole-v1", "--episodes", "0"], "argument --episodes"),
        (["evaluate", "missing.zip", "--env", "CartPole-v1", "--seed", "x"], "argument --seed"),
        (["compare", "--env", "CartPole-v1", "--timesteps", "0"], "argument --timesteps"),
        (["compare", "--env", "CartPole-v1", "--seeds", "0", "-1"], "argument --seeds"),
        (["compare", "--env", "CartPole-v1", "--eval-freq", "0"], "argument --eval-freq"),
        (["compare", "--env", "CartPole-v1", "--eval-episodes", "0"], "argument --eval-episodes"),
        (["compare", "--env", "CartPole-v1", "--pretrain-steps", "-1"], "argument --pretrain-steps"),
        (["demo", "--timesteps", "0"], "argument --timesteps"),
        (["demo", "--seeds", "-1"], "argument --seeds"),
        (["demo", "--eval-freq", "0"], "argument --eval-freq"),
        (["demo", "--pretrain-steps", "-1"], "argument --pretrain-steps"),
    ],
)
def test_numeric_options_are_checked(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(argv, message, capsys)


def test_argparse_errors_are_one_line_too(capsys):
    error = assert_one_line_error(["train", "dqfd"], "the following arguments are required: --env", capsys)
    assert "sb3-dqfd train --help" in error
    assert_one_line_error(["train", "ppo", "--env", "CartPole-v1"], "argument algo: invalid choice: 'ppo'", capsys)


def test_transformer_a2c_refuses_demonstrations(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "transformer-a2c", "--env", "CartPole-v1", "--demos", "expert:1", *TINY]
    message = "--demos is an option of dqfd, sacfd and td3fd; transformer-a2c does not learn from demonstrations"
    assert_one_line_error(argv, message, capsys)
    assert not Path("run").exists()


@pytest.mark.parametrize(
    "entry, message",
    [
        ("n_envs: 0", "n_envs must be a whole number >= 1, got 0"),
        ("n_timesteps: 0", "n_timesteps must be a whole number >= 1, got 0"),  # checked even when --timesteps wins
        ("frame_stack: 0", "frame_stack must be a whole number >= 1, got 0"),
        ("normalize: 3", "normalize must be true, false or a mapping of VecNormalize arguments, got 3"),
        ("env_kwargs: [1]", "env_kwargs must be a mapping, got [1]"),
        ("callback: my.Callback", "rl-zoo3 keys that sb3-dqfd train does not support: ['callback']"),
        (
            "{vec_env_wrapper: a.B, noise_type: normal, noise_std: 0.1}",
            "does not support: ['noise_std', 'noise_type', 'vec_env_wrapper']",
        ),
        ("env_wrapper: no_such_module.Wrapper", "env_wrapper: cannot import 'no_such_module.Wrapper'"),
        ("env_wrapper: gymnasium.wrappers.NoSuchWrapper", "env_wrapper: cannot import 'gymnasium.wrappers.NoSuchWrapper'"),
        ("policy: no_such_module.Policy", "policy: cannot import 'no_such_module.Policy'"),
        # DQfD's own refusal, as one line
        ("{normalize: true, normalize_observations: true}", "normalize_observations=True and a VecNormalize env"),
    ],
)
def test_bad_rl_zoo3_keys_in_the_yaml_entry(tmp_path, monkeypatch, capsys, entry, message):
    monkeypatch.chdir(tmp_path)
    # A mapping on one line, or one key: both YAML forms give the entry
    text = f"CartPole-v1: {entry}\n" if entry.startswith("{") else f"CartPole-v1:\n  {entry}\n"
    Path("dqfd.yml").write_text(text)
    argv = ["train", "dqfd", "--env", "CartPole-v1", "--demos", "expert:1", "--hyperparams", "dqfd.yml"]
    error = assert_one_line_error([*argv, *TINY], message, capsys)
    assert "dqfd.yml" in error or "DQfD" in error


def test_env_wrapper_without_rl_zoo3_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "rl_zoo3.utils", None)  # as if rl-zoo3 were not installed
    Path("dqfd.yml").write_text("CartPole-v1:\n  env_wrapper: gymnasium.wrappers.TimeLimit\n")
    argv = ["train", "dqfd", "--env", "CartPole-v1", "--demos", "expert:1", "--hyperparams", "dqfd.yml", *TINY]
    assert_one_line_error(argv, "env_wrapper needs rl-zoo3: pip install 'sb3-dqfd[zoo]'", capsys)


def test_record_checks_the_expert_against_the_env(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["record", "--env", "CartPole-v1", "--expert", "MountainCar-v0", "--output", "x.npz"]
    error = assert_one_line_error(argv, "the built-in expert of MountainCar-v0 does not fit CartPole-v1", capsys)
    assert "Discrete(3)" in error and "Discrete(2)" in error and "(2,)" in error and "(4,)" in error

    with pytest.warns(UserWarning, match="DQfD got no demonstrations"):
        DQfD("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[8])).save("cartpole_model")
    argv = ["record", "--env", "Acrobot-v1", "--model", "cartpole_model.zip", "--output", "x.npz"]
    error = assert_one_line_error(argv, "the model cartpole_model.zip (dqfd) does not fit Acrobot-v1", capsys)
    assert "Discrete(3)" in error and "(6,)" in error
    assert not Path("x.npz").exists()
