"""The sb3-dqfd command line: every subcommand end to end on tiny budgets, and one-line errors with exit status 2."""

import argparse
import importlib.util
import json
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stable_baselines3.common.vec_env import VecNormalize

from sb3_dqfd import DQfD, cli, record_demonstrations
from sb3_dqfd.cli import build_parser, main, make_env
from sb3_dqfd.dqfd.policies import DQfDPolicy


def run(*argv: str) -> int:
    return main(list(argv))


def save_untrained_dqfd(path: str) -> None:
    with pytest.warns(UserWarning, match="DQfD got no demonstrations"):
        DQfD("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[8])).save(path)


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
    save_untrained_dqfd("dqfd_model")
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


def test_compare_reports_dqfds_retention_from_the_tasks_return_floor(tmp_path, monkeypatch, capsys):
    # A floor for CartPole that changes the ratio; cli reads the same dict as the experiment module
    monkeypatch.setitem(cli.RETURN_FLOORS, "CartPole-v1", -100.0)
    floors: list[float] = []
    real_summarize = cli.summarize

    def summarize(curves, threshold, return_floor=0.0):
        floors.append(return_floor)
        return real_summarize(curves, threshold, return_floor)

    monkeypatch.setattr(cli, "summarize", summarize)
    argv = ["compare", "--env", "CartPole-v1", "--demos", "expert:1", "--timesteps", "200", "--seeds", "0", "1"]
    argv += ["--pretrain-steps", "50", "--eval-freq", "100", "--eval-episodes", "1", "--output-dir", str(tmp_path)]
    assert run(*argv) == 0
    assert floors == [-100.0]
    saved = json.loads((tmp_path / "compare_CartPole-v1.json").read_text())
    dqfd = {curve["seed"]: curve["mean_returns"] for curve in saved["curves"] if curve["label"] == "DQfD"}
    expected = {str(seed): (min(returns[1:]) + 100.0) / (returns[0] + 100.0) for seed, returns in dqfd.items()}
    retention = saved["metadata"]["retention"]
    assert retention["return_floor"] == -100.0
    assert retention["per_seed"] == pytest.approx(expected)
    assert retention["median"] == pytest.approx(float(np.median(list(expected.values()))))
    assert next(row for row in saved["metadata"]["summary"] if row["method"] == "DQfD")["median_retention"] == (
        pytest.approx(retention["median"])
    )
    table = (tmp_path / "compare_CartPole-v1.md").read_text()
    assert "retention (lowest eval after pre-training / pre-trained)" in table
    dqfd_row = next(line for line in table.splitlines() if line.startswith("| DQfD |"))
    assert f"| {retention['median']:.2f} |" in dqfd_row
    # Only DQfD is pre-trained: the teacher, the pre-training-only line and DQN have no retention
    rows = [line for line in table.splitlines()[2:] if line.startswith("| ")]
    assert len(rows) == 4
    for line in rows:
        if not line.startswith("| DQfD |"):
            assert line.split(" | ")[-3] == "-", line
    printed = capsys.readouterr().out
    assert "DQfD retention" in printed and "return floor of -100" in printed and "seed 1 " in printed


def test_demo_compares_on_lunarlander_with_the_retention_column(tmp_path, monkeypatch):
    seen: dict[str, Any] = {}

    def compare(env_id, demos_spec, timesteps, seeds, eval_freq, eval_episodes, output_dir, progress_bar, dqfd_kwargs):
        seen.update(env_id=env_id, demos=demos_spec, timesteps=timesteps, seeds=seeds, pretrain=dqfd_kwargs)

    monkeypatch.setattr(cli, "compare", compare)
    assert run("demo", "--output-dir", str(tmp_path)) == 0
    assert seen == dict(
        env_id="LunarLander-v3", demos="expert:20", timesteps=6_000, seeds=[0], pretrain={"pretrain_steps": 1_500}
    )
    # compare's table (tested above) is the one make demo prints; LunarLander's floor is 0
    assert cli.RETURN_FLOORS.get("LunarLander-v3", 0.0) == 0.0


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
          "--pretrain-steps", "0"], "argument --eval-freq: expected a whole number >= 1, got 0"),
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


def spy_on_training(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """:return: filled by ``train`` with the model, the evaluation env and the budget it trains with"""
    seen: dict[str, Any] = {}
    real_train_with_curve = cli.train_with_curve

    def train_with_curve(model, label, seed, total_timesteps, eval_env, *args, **kwargs):
        seen.update(model=model, eval_env=eval_env, total_timesteps=total_timesteps)
        return real_train_with_curve(model, label, seed, total_timesteps, eval_env, *args, **kwargs)

    monkeypatch.setattr(cli, "train_with_curve", train_with_curve)
    return seen


def test_train_honours_the_rl_zoo3_keys_of_the_yaml_entry(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    seen = spy_on_training(monkeypatch)
    Path("dqfd.yml").write_text(
        """
CartPole-v1:
  n_envs: 2
  policy: sb3_dqfd.dqfd.policies.DQfDPolicy
  normalize: "dict(norm_obs=True, norm_reward=False)"
  env_kwargs: {sutton_barto_reward: true}
  env_wrapper:
    - gymnasium.wrappers.TimeLimit: {max_episode_steps: 50}
  monitor_kwargs: "dict(info_keywords=())"
  pretrain_steps: 5
  policy_kwargs: "dict(net_arch=[16])"
"""
    )
    argv = ["train", "dqfd", "--env", "CartPole-v1", "--demos", "expert:1", "--hyperparams", "dqfd.yml"]
    assert run(*argv, "--timesteps", "20", "--eval-freq", "20", "--eval-episodes", "1", "--output-dir", "run") == 0
    model, eval_env = seen["model"], seen["eval_env"]
    assert model.n_envs == 2 and type(model.policy) is DQfDPolicy
    assert model.get_env().get_attr("_sutton_barto_reward") == [True, True]
    assert model.get_env().get_attr("_max_episode_steps") == [50, 50]
    vec_normalize = model.get_vec_normalize_env()
    assert vec_normalize.norm_obs and not vec_normalize.norm_reward
    # The evaluation env: the same wrappers, reading the training statistics without updating them
    assert eval_env.get_attr("_sutton_barto_reward") == [True] and eval_env.get_attr("_max_episode_steps") == [50]
    assert isinstance(eval_env, VecNormalize) and not eval_env.training and not eval_env.norm_reward
    assert eval_env.obs_rms is vec_normalize.obs_rms
    # Saved next to the model, as rl-zoo3 does, and read back by evaluate
    assert "run/vecnormalize.pkl" in capsys.readouterr().out
    assert VecNormalize.load("run/vecnormalize.pkl", make_env("CartPole-v1", 1, 0)).obs_rms.count > 20
    argv = ["evaluate", "run/dqfd_CartPole-v1.zip", "--env", "CartPole-v1", "--episodes", "1", "--json", "eval.json"]
    assert run(*argv) == 0
    assert "observations normalized with run/vecnormalize.pkl" in capsys.readouterr().out
    assert json.loads(Path("eval.json").read_text())["vecnormalize"] == "run/vecnormalize.pkl"


def test_train_reads_n_envs_frame_stack_and_n_timesteps_of_the_yaml_and_the_command_line_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = spy_on_training(monkeypatch)
    Path("a2c.yml").write_text(
        "CartPole-v1:\n  n_envs: 2\n  n_timesteps: 16\n  frame_stack: 2\n"
        "  policy_kwargs: 'dict(d_model=8, n_heads=1, context_len=4, dim_feedforward=8)'\n"
    )
    argv = ["train", "transformer-a2c", "--env", "CartPole-v1", "--hyperparams", "a2c.yml", "--eval-freq", "8"]
    assert run(*argv, "--eval-episodes", "1", "--n-envs", "1", "--output-dir", "run") == 0
    assert seen["model"].n_envs == 1  # --n-envs over the YAML's 2
    assert seen["total_timesteps"] == 16
    assert seen["model"].observation_space.shape == seen["eval_env"].observation_space.shape == (8,)  # 2 x 4
    assert run(*argv, "--eval-episodes", "1", "--timesteps", "8", "--output-dir", "run") == 0
    assert seen["model"].n_envs == 2 and seen["total_timesteps"] == 8


@pytest.fixture
def ctrl_c_raises():
    """Python's Ctrl-C handler, also when pytest was started in the background (a shell then ignores SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def ctrl_c_after_updates(monkeypatch, n_calls: int) -> list[int]:
    """
    Make DQfD's ``train`` send Ctrl-C (SIGINT) after its ``n_calls``-th call: between two environment steps.

    :return: the model's step at each call (filled as it trains)
    """
    real_train = DQfD.train
    steps: list[int] = []

    def train_then_ctrl_c(self, *args, **kwargs):
        real_train(self, *args, **kwargs)
        steps.append(self.num_timesteps)
        if len(steps) == n_calls:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(DQfD, "train", train_then_ctrl_c)
    return steps


def test_ctrl_c_while_training_saves_the_model_and_the_curve_so_far(tmp_path, monkeypatch, capsys, ctrl_c_raises):
    monkeypatch.chdir(tmp_path)
    handler = signal.getsignal(signal.SIGINT)
    updates = ctrl_c_after_updates(monkeypatch, 30)
    Path("dqfd.yml").write_text("CartPole-v1:\n  pretrain_steps: 5\n  policy_kwargs: 'dict(net_arch=[16])'\n")
    argv = ["train", "dqfd", "--env", "CartPole-v1", "--demos", "expert:1", "--hyperparams", "dqfd.yml"]
    assert run(*argv, "--timesteps", "2000", "--eval-freq", "20", "--eval-episodes", "1", "--output-dir", "run") == 130
    reached = DQfD.load("run/dqfd_CartPole-v1").num_timesteps
    assert updates[29] <= reached < 2000
    results = json.loads(Path("run/results.json").read_text())
    assert results["metadata"]["interrupted"] is True and results["metadata"]["timesteps_reached"] == reached
    assert results["curves"][0]["timesteps"][:2] == [0, 20] and results["curves"][0]["timesteps"][-1] == reached
    assert Path("run/learning_curve.png").stat().st_size > 1000
    error = capsys.readouterr().err
    assert f"sb3-dqfd: interrupted at step {reached:,} of 2,000: saved run/dqfd_CartPole-v1.zip" in error
    assert "run/results.json" in error and "Traceback" not in error
    assert signal.getsignal(signal.SIGINT) is handler


def test_ctrl_c_with_checkpoint_then_resume_continues_the_run(tmp_path, monkeypatch, capsys, ctrl_c_raises):
    monkeypatch.chdir(tmp_path)
    real_train = DQfD.train
    ctrl_c_after_updates(monkeypatch, 130)
    entry = "CartPole-v1:\n  pretrain_steps: 5\n  learning_rate: lin_1e-3\n  policy_kwargs: 'dict(net_arch=[16])'\n"
    Path("dqfd.yml").write_text(entry)  # a schedule and a policy_kwargs string: parsed, not comparable as such
    argv = ["train", "dqfd", "--env", "CartPole-v1", "--demos", "expert:1", "--hyperparams", "dqfd.yml", "--eval-freq", "50"]
    argv += ["--eval-episodes", "1", "--output-dir", "run", "--timesteps", "300"]
    assert run(*argv, "--checkpoint") == 130
    stopped_at = DQfD.load("run/dqfd_CartPole-v1").num_timesteps
    assert 130 <= stopped_at < 300
    assert f"--resume continues from the checkpoint in {Path('run/checkpoint')}" in capsys.readouterr().err
    monkeypatch.setattr(DQfD, "train", real_train)
    pretrainings = []
    monkeypatch.setattr(DQfD, "pretrain", lambda self, *args, **kwargs: pretrainings.append(args))

    assert run(*argv, "--resume", "--timesteps", "400") == 0  # and train longer than planned
    assert f"resuming at step {stopped_at:,}" in capsys.readouterr().out and pretrainings == []
    curve = json.loads(Path("run/results.json").read_text())["curves"][0]
    # The evaluations before the stop and the one at the stop kept; the schedule goes on every 50 steps from 0
    assert curve["resumed_at"] == [stopped_at] and curve["timesteps"] == [0, 50, 100, stopped_at, *range(150, 401, 50)]
    assert DQfD.load("run/dqfd_CartPole-v1").num_timesteps == 400

    def usage_error(*arguments: str) -> str:
        with pytest.raises(SystemExit) as exit_info:
            run(*arguments)
        error = capsys.readouterr().err
        assert exit_info.value.code == 2 and error.count("\n") == 1
        return error

    error = usage_error(*[arg if arg != "expert:1" else "expert:2" for arg in argv], "--resume")
    assert "--resume: the run in run/checkpoint was started with other options: demos 'expert:1' (now 'expert:2')\n" in error
    Path("dqfd.yml").write_text(entry.replace("lin_1e-3", "lin_2e-3"))
    error = usage_error(*argv, "--resume")
    assert "hyperparams entry {'pretrain_steps': 5, 'learning_rate': 'lin_1e-3'," in error and "'lin_2e-3'" in error
    Path("dqfd.yml").write_text(entry)
    error = usage_error(*argv[:-4], "--output-dir", "elsewhere", "--resume")
    assert "--resume: no checkpoint in elsewhere/checkpoint: start the run with --checkpoint" in error
    assert run(*argv, "--checkpoint", "--timesteps", "50") == 0  # without --resume: a new run
    assert "replacing the checkpoint in run/checkpoint" in capsys.readouterr().out
    assert json.loads(Path("run/results.json").read_text())["curves"][0]["resumed_at"] == []


def test_ctrl_c_during_pre_training_saves_the_model(tmp_path, monkeypatch, capsys, ctrl_c_raises):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(DQfD, "pretrain", lambda self, *args, **kwargs: signal.raise_signal(signal.SIGINT))
    argv = ["train", "dqfd", "--env", "CartPole-v1", "--demos", "expert:1", "--timesteps", "100", "--eval-freq", "50"]
    assert run(*argv, "--eval-episodes", "1", "--output-dir", "run") == 130
    assert Path("run/dqfd_CartPole-v1.zip").is_file() and not Path("run/results.json").exists()
    error = capsys.readouterr().err
    assert "sb3-dqfd: interrupted at step 0 of 100: saved run/dqfd_CartPole-v1.zip (no learning curve" in error
    assert error.count("\n") == 1
    assert run(*argv, "--eval-episodes", "1", "--output-dir", "run", "--checkpoint") == 130
    # The checkpoint of the first evaluation (before learn(), which pre-trains): --resume pre-trains again
    assert "--resume continues from the checkpoint in run/checkpoint\n" in capsys.readouterr().err
    assert not DQfD.load("run/checkpoint/step_0/model.zip").pretrained


def test_ctrl_c_elsewhere_is_one_line_and_exit_130(monkeypatch, capsys):
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "record_demonstrations", ctrl_c)
    assert run("record", "--env", "CartPole-v1", "--output", "x.npz") == 130
    assert capsys.readouterr().err == "sb3-dqfd: interrupted\n"


def test_evaluate_names_the_algorithm_it_read_from_the_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    save_untrained_dqfd("model")
    assert run("evaluate", "model.zip", "--env", "CartPole-v1", "--episodes", "1", "--json", "eval.json") == 0
    assert capsys.readouterr().out.startswith("dqfd on CartPole-v1: return ")
    assert json.loads(Path("eval.json").read_text())["algo"] == "dqfd"


def test_evaluate_creates_the_folder_of_the_json_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_untrained_dqfd("model")
    assert run("evaluate", "model.zip", "--env", "CartPole-v1", "--episodes", "1", "--json", "out/sub/eval.json") == 0
    assert json.loads(Path("out/sub/eval.json").read_text())["episodes"] == 1


def test_python_warnings_are_one_line_each_during_a_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    demos = record_demonstrations("CartPole-v1", "CartPole-v1", n_episodes=1, seed=0)
    episode = demos.episodes[0]
    # Stable-Baselines2's ExpertDataset format: loading it warns (the format does not say how its episodes ended)
    np.savez(
        "sb2.npz",
        obs=episode.observations[:-1],
        actions=episode.actions.reshape(-1, 1),
        rewards=episode.rewards,
        episode_returns=demos.episode_returns,
        episode_starts=np.arange(len(episode)) == 0,
    )
    showwarning = warnings.showwarning
    argv = ["train", "dqfd", "--env", "CartPole-v1", "--demos", "sb2.npz", "--timesteps", "10", "--eval-freq", "10"]
    assert run(*argv, "--eval-episodes", "1", "--pretrain-steps", "5", "--output-dir", "run") == 0
    lines = capsys.readouterr().err.splitlines()
    assert any("sb2.npz" in line and "Stable-Baselines2" in line for line in lines)
    assert lines and all(line.startswith("sb3-dqfd: warning: ") for line in lines), lines
    assert warnings.showwarning is showwarning  # restored: library users and tests see warnings as before


def test_every_option_has_help():
    parser = build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    for name, command in commands.choices.items():
        if name == "tune":
            continue  # defined in sb3_dqfd/zoo/command.py
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"sb3-dqfd {name} {action.option_strings or action.dest} has no help"
    train_help = commands.choices["train"].format_help()
    assert "Minari" in train_help and "expert:N" in train_help


def test_tensorboard_runs_of_two_trainings_go_to_two_folders(tmp_path):
    hyperparams = tmp_path / "dqfd.yml"
    hyperparams.write_text("CartPole-v1:\n  pretrain_steps: 10\n  policy_kwargs: 'dict(net_arch=[8])'\n")
    argv = ["train", "dqfd", "--env", "CartPole-v1", "--demos", "expert:1", "--hyperparams", str(hyperparams)]
    argv += ["--timesteps", "50", "--eval-freq", "50", "--eval-episodes", "1", "--tensorboard-log", str(tmp_path / "tb")]
    for run_index in range(2):
        assert run(*argv, "--output-dir", str(tmp_path / f"run{run_index}")) == 0
    assert sorted(path.name for path in (tmp_path / "tb").iterdir()) == ["DQfD_1", "DQfD_2"]
