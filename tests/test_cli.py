"""The sb3-dqfd command line: every subcommand end to end on tiny budgets, and one-line errors with exit status 2."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sb3_dqfd import DQfD
from sb3_dqfd.cli import build_parser, main, make_env


def run(*argv: str) -> int:
    return main(list(argv))


def test_record_train_evaluate(tmp_path, capsys):
    demos = tmp_path / "demos" / "cartpole.npz"  # the folder does not exist yet: record creates it, as SB3's save does
    assert run("record", "--env", "CartPole-v1", "--episodes", "2", "--seed", "1", "--output", str(demos)) == 0
    assert "2 episodes, 1000 transitions" in capsys.readouterr().out

    hyperparams = tmp_path / "dqfd.yml"
    hyperparams.write_text("CartPole-v1:\n  pretrain_steps: 50\n  batch_size: 32\n  policy_kwargs: 'dict(net_arch=[32])'\n")
    output = tmp_path / "run"
    argv = ["train", "dqfd", "--env", "CartPole-v1", "--demos", str(demos), "--hyperparams", str(hyperparams)]
    argv += ["--timesteps", "300", "--eval-freq", "150", "--eval-episodes", "2", "--output-dir", str(output)]
    assert run(*argv) == 0
    results = json.loads((output / "results.json").read_text())
    assert results["curves"][0]["timesteps"] == [0, 150, 300]
    assert (output / "learning_curve.png").stat().st_size > 1000

    model = output / "dqfd_CartPole-v1.zip"
    result_file = tmp_path / "eval.json"
    argv = ["evaluate", str(model), "--algo", "dqfd", "--env", "CartPole-v1", "--episodes", "3", "--json", str(result_file)]
    assert run(*argv) == 0
    assert "over 3 episodes" in capsys.readouterr().out
    assert json.loads(result_file.read_text())["episodes"] == 3


def test_evaluate_under_domain_randomization(tmp_path, capsys):
    output = tmp_path / "run"
    hyperparams = tmp_path / "dqfd.yml"
    hyperparams.write_text("CartPole-v1:\n  pretrain_steps: 20\n")
    argv = ["train", "dqfd", "--env", "CartPole-v1", "--demos", "expert:1", "--timesteps", "100", "--eval-freq", "100"]
    assert run(*argv, "--hyperparams", str(hyperparams), "--eval-episodes", "1", "--output-dir", str(output)) == 0
    model = str(output / "dqfd_CartPole-v1")  # without .zip and without --algo, as SB3's load takes it
    argv = ["evaluate", model, "--env", "CartPole-v1", "--episodes", "2"]
    assert run(*argv, "--domain-randomization", "cartpole") == 0
    assert "over 2 episodes" in capsys.readouterr().out


def test_train_reads_the_demonstrations_path_of_the_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("record", "--env", "CartPole-v1", "--episodes", "1", "--output", "demos/cartpole.npz") == 0
    Path("dqfd.yml").write_text("CartPole-v1:\n  demonstrations: demos/cartpole.npz\n  pretrain_steps: 10\n")
    argv = ["train", "dqfd", "--env", "CartPole-v1", "--hyperparams", "dqfd.yml", "--timesteps", "50", "--eval-freq", "50"]
    assert run(*argv, "--eval-episodes", "1", "--output-dir", "run", "--pretrain-steps", "5") == 0
    assert DQfD.load("run/dqfd_CartPole-v1").pretrain_steps == 5  # the command line over the YAML's 10
    # The one recorded episode (the CartPole expert never fails: 500 steps) travelled into the saved model
    assert DQfD.load("run/dqfd_CartPole-v1").demonstration_arrays.lengths.tolist() == [500]


def test_both_spellings_of_algorithm_names_and_rl_zoo3_envs():
    parser = build_parser()
    for spelling in ("transformer_a2c", "transformer-a2c", "Transformer_A2C"):
        assert parser.parse_args(["train", spelling, "--env", "CartPole-v1"]).algo == "transformer-a2c"
    assert parser.parse_args(["evaluate", "m.zip", "--algo", "recurrent_ppo", "--env", "CartPole-v1"]).algo == "recurrent-ppo"
    # rl-zoo3's extra environments, which transformer_a2c.yml names, without importing rl-zoo3 by hand
    assert make_env("CartPoleNoVel-v1", 1, 0).observation_space.shape == (4,)


def test_a_model_loaded_as_the_wrong_algorithm_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    DQfD("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[8])).save("dqfd_model")
    Path("not_a_model.zip").write_text("hello")
    cases = [
        (["evaluate", "dqfd_model.zip", "--algo", "dqn", "--env", "CartPole-v1"], "was saved by dqfd"),
        (["record", "--env", "CartPole-v1", "--model", "dqfd_model", "--algo", "a2c", "--output", "x.npz"], "use --algo dqfd"),
        (["record", "--env", "CartPole-v1", "--model", "nope.zip", "--output", "x.npz"], "'nope.zip' does not exist"),
        (["evaluate", "not_a_model.zip", "--env", "CartPole-v1"], "not a model saved by Stable-Baselines3"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            run(*argv)
        error = capsys.readouterr().err
        assert exit_info.value.code == 2 and error.count("\n") == 1 and message in error, (argv, error)
    assert not Path("x.npz").exists()


def test_tensorboard_log_without_tensorboard_is_one_line(tmp_path, monkeypatch, capsys):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "tensorboard" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    argv = ["train", "dqfd", "--env", "CartPole-v1", "--demos", "expert:1", "--tensorboard-log", str(tmp_path / "tb")]
    with pytest.raises(SystemExit) as exit_info:
        run(*argv)
    assert exit_info.value.code == 2 and "--tensorboard-log needs TensorBoard" in capsys.readouterr().err


def test_compare_writes_table_plot_and_json(tmp_path, capsys):
    argv = ["compare", "--env", "CartPole-v1", "--demos", "expert:1", "--timesteps", "200", "--seeds", "0", "--pretrain-steps"]
    assert run(*argv, "50", "--eval-freq", "100", "--eval-episodes", "1", "--output-dir", str(tmp_path)) == 0
    table = (tmp_path / "compare_CartPole-v1.md").read_text()
    for method in ("teacher (1 demonstrations)", "DQfD pre-training only", "| DQfD |", "DQN (rl-zoo3)"):
        assert method in table
    assert (tmp_path / "compare_CartPole-v1.png").stat().st_size > 1000
    curves = json.loads((tmp_path / "compare_CartPole-v1.json").read_text())["curves"]
    assert {curve["label"].split(" (")[0] for curve in curves} == {"teacher", "DQfD pre-training only", "DQfD", "DQN"}
    teacher = next(curve for curve in curves if curve["label"].startswith("teacher"))
    assert teacher["mean_returns"] == [500.0, 500.0]  # the CartPole expert's episode is never cut short
    assert "| method |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["record", "--env", "Pendulum-v1", "--output", "x.npz"], "No built-in expert for 'Pendulum-v1'"),
        (["record", "--env", "LunarLander-v2", "--output", "x.npz"], "LunarLander-v3"),
        (["record", "--env", "NoSuchEnv-v0", "--expert", "CartPole-v1", "--output", "x.npz"], "NoSuchEnv"),
        (["train", "dqfd", "--env", "CartPole-v1", "--demos", "missing.npz"], "missing.npz: no such file"),
        (["train", "dqfd", "--env", "CartPole-v1"], "train dqfd needs --demos"),
        (["train", "transformer-a2c", "--env", "CartPole-v1", "--pretrain-steps", "5"], "does not pre-train"),
        (["train", "dqfd", "--env", "CartPole-v1", "--demos", "expert:zero"], "expected expert:N"),
        (["train", "dqfd", "--env", "MountainCar-v0", "--demos", "CARTPOLE"], "observations have shape (4,)"),
        (["evaluate", "missing.zip", "--algo", "dqfd", "--env", "CartPole-v1"], "model file 'missing.zip' does not exist"),
        (["compare", "--env", "CartPole-v1", "--demos", "expert:1", "--timesteps", "10", "--seeds", "0", "--eval-freq", "0",
          "--pretrain-steps", "0"], "eval_freq and n_eval_episodes must be at least 1"),
    ],
)  # fmt: skip
def test_bad_usage_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    if "CARTPOLE" in argv:
        assert run("record", "--env", "CartPole-v1", "--episodes", "1", "--output", "cartpole.npz") == 0
        argv = [arg.replace("CARTPOLE", "cartpole.npz") for arg in argv]
    with pytest.raises(SystemExit) as exit_info:
        run(*argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("sb3-dqfd: error: ") and error.count("\n") == 1
    assert message in error


def test_python_dash_m_entry_point():
    completed = subprocess.run([sys.executable, "-m", "sb3_dqfd", "--help"], capture_output=True, text=True, check=False)
    assert completed.returncode == 0
    for command in ("record", "train", "evaluate", "compare", "demo", "tune"):
        assert command in completed.stdout
    completed = subprocess.run([sys.executable, "-m", "sb3_dqfd", "frobnicate"], capture_output=True, text=True, check=False)
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
