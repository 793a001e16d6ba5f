"""Continuous actions in the command lines: ``compare --algo sacfd|td3fd``, rl-zoo3's SAC/TD3 entries, zoo ``train``."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from gymnasium import spaces
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.utils import LinearSchedule

from sb3_dqfd import cli
from sb3_dqfd.common.hyperparams import shipped_hyperparameters, zoo_hyperparameters
from sb3_dqfd.sacfd import SACfD
from sb3_dqfd.td3fd import TD3fD
from sb3_dqfd.zoo.cli import main as zoo_main
from sb3_dqfd.zoo.registration import check_action_space

LANDER = "LunarLanderContinuous-v3"


def zoo_entry(algo: str, env_id: str) -> dict[str, Any]:
    """:return: the raw entry of the installed rl-zoo3's YAML file, read here independently of the code under test"""
    spec = importlib.util.find_spec("rl_zoo3")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "hyperparams" / f"{algo}.yml"
    return dict(yaml.safe_load(path.read_text())[env_id])


def spy_on_models(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """:return: filled by ``compare`` with each trained model, by label (the last seed's)"""
    models: dict[str, Any] = {}
    real = cli.train_with_curve

    def train_with_curve(model, label, *args, **kwargs):
        models[label] = model
        return real(model, label, *args, **kwargs)

    monkeypatch.setattr(cli, "train_with_curve", train_with_curve)
    return models


TINY = ["--demos", "expert:1", "--timesteps", "200", "--eval-freq", "100", "--eval-episodes", "1"]


def test_compare_sacfd_with_rl_zoo3_sac_and_its_retention(tmp_path, monkeypatch, capsys):
    # A floor below any lander return, so that the retention is defined however the tiny runs go
    monkeypatch.setitem(cli.RETURN_FLOORS, LANDER, -1_000.0)
    models = spy_on_models(monkeypatch)
    argv = ["compare", "--algo", "sacfd", *TINY, "--seeds", "0", "1", "--pretrain-steps", "10", "--output-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    stem = tmp_path / f"compare_sacfd_{LANDER}"
    saved = json.loads(stem.with_suffix(".json").read_text())
    labels = [curve["label"] for curve in saved["curves"]]
    assert labels[:4] == ["teacher (1 demonstrations)", "SACfD pre-training only (10 updates)", "SACfD", "SAC (rl-zoo3)"]
    assert len(labels) == 8 and saved["metadata"]["algo"] == "sacfd" and saved["metadata"]["env"] == LANDER
    # The models: SACfD with the shipped entry (pre-training from the command line), SAC with rl-zoo3's entry
    sacfd, sac = models["SACfD"], models["SAC (rl-zoo3)"]
    assert type(sacfd) is SACfD and type(sac) is SAC
    shipped = shipped_hyperparameters(SACfD, LANDER)
    assert (sacfd.learning_starts, sacfd.n_steps, sacfd.pretrain_steps) == (shipped["learning_starts"], shipped["n_steps"], 10)
    assert sacfd._n_pretrain_updates == 10
    entry = zoo_entry("sac", LANDER)
    assert (sac.learning_starts, sac.tau, sac.batch_size) == (entry["learning_starts"], entry["tau"], entry["batch_size"])
    assert sac.learning_rate(1.0) == pytest.approx(float(entry["learning_rate"].removeprefix("lin_")))
    # Retention of SACfD from the floor, per seed, recomputed from the saved curves
    retention = saved["metadata"]["retention"]
    runs = {curve["seed"]: curve["mean_returns"] for curve in saved["curves"] if curve["label"] == "SACfD"}
    expected = {str(seed): (min(returns[1:]) + 1_000) / (returns[0] + 1_000) for seed, returns in runs.items()}
    assert retention["method"] == "SACfD" and retention["pretrained"] and retention["return_floor"] == -1_000.0
    assert retention["per_seed"] == pytest.approx(expected)
    assert retention["median"] == pytest.approx(float(np.median(list(expected.values()))))
    table = stem.with_suffix(".md").read_text()
    assert "| SAC (rl-zoo3) |" in table and "SACfD retention" in table
    assert (stem.with_suffix(".png")).stat().st_size > 1000
    assert "SACfD retention" in capsys.readouterr().out


def test_compare_td3fd_without_pre_training_against_rl_zoo3_td3(tmp_path, monkeypatch, capsys):
    models = spy_on_models(monkeypatch)
    argv = ["compare", "--algo", "td3fd", "--env", LANDER, *TINY, "--seeds", "0", "--pretrain-steps", "0"]
    assert cli.main([*argv, "--output-dir", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / f"compare_td3fd_{LANDER}.json").read_text())
    # No pre-training: no pre-training-only curve, the first evaluation is at step 0, and no retention
    assert [curve["label"] for curve in saved["curves"]] == ["teacher (1 demonstrations)", "TD3fD", "TD3 (rl-zoo3)"]
    assert not saved["curves"][1]["pretrained"] and models["TD3fD"]._n_pretrain_updates == 0
    assert saved["metadata"]["retention"]["pretrained"] is False and saved["metadata"]["retention"]["median"] is None
    assert "TD3fD retention: none (no pre-training" in capsys.readouterr().out
    td3, entry = models["TD3 (rl-zoo3)"], zoo_entry("td3", LANDER)
    assert type(td3) is TD3 and type(models["TD3fD"]) is TD3fD
    assert (td3.gamma, td3.learning_starts, td3.buffer_size) == (
        entry["gamma"],
        entry["learning_starts"],
        entry["buffer_size"],
    )
    assert isinstance(td3.action_noise, NormalActionNoise)
    np.testing.assert_allclose(td3.action_noise._sigma, [entry["noise_std"]] * 2)
    np.testing.assert_allclose(td3.action_noise._mu, [0.0, 0.0])


def test_compare_keeps_dqfd_as_the_default(monkeypatch):
    seen: dict[str, Any] = {}

    def compare(env_id, *args, algo="dqfd", **kwargs):
        seen.update(env_id=env_id, algo=algo)

    monkeypatch.setattr(cli, "compare", compare)
    assert cli.main(["compare"]) == 0
    assert seen == {"env_id": "MountainCar-v0", "algo": "dqfd"}
    assert cli.main(["compare", "--algo", "td3fd"]) == 0
    assert seen == {"env_id": LANDER, "algo": "td3fd"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--algo", "sacfd", "--env", "CartPole-v1"], "compare --algo sacfd needs continuous actions (a Box): CartPole-v1 "
         "has Discrete(2) actions; use --algo dqfd"),
        (["--env", LANDER], f"compare --algo dqfd needs discrete actions: {LANDER} has Box(2,) float32 actions; use --algo "
         "sacfd or td3fd"),
        (["--algo", "dqfd", "--env", "Pendulum-v1"], "use --algo sacfd or td3fd"),
        (["--algo", "td3fd", "--env", "Pendulum-v1"], "td3fd.yml has no entry for 'Pendulum-v1'"),
        (["--algo", "td3fd", "--env", "NoSuchEnv-v0"], "NoSuchEnv"),
        (["--env", "NoSuchEnv-v0"], "compare has tuned DQN settings for"),
        (["--algo", "ppo"], "argument --algo: invalid choice"),
    ],
)  # fmt: skip
def test_compare_usage_errors_are_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", *argv, "--timesteps", "10", "--output-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("sb3-dqfd: error: ") and error.count("\n") == 1
    assert message in error
    assert not list(tmp_path.iterdir())  # refused before any work


def test_compare_reports_a_missing_rl_zoo3_entry_before_training(tmp_path, monkeypatch, capsys):
    # A shipped entry for an env rl-zoo3's SAC has none for: Pendulum's (SACfD's lander entry is the shipped one)
    monkeypatch.setattr(cli, "shipped_hyperparameters", lambda algorithm, env_id: shipped_hyperparameters(algorithm, LANDER))
    monkeypatch.setattr(cli, "zoo_hyperparameters", lambda algo, env_id: zoo_hyperparameters(algo, "NoEntry-v0"))
    trained = spy_on_models(monkeypatch)
    with pytest.raises(SystemExit):
        cli.main(["compare", "--algo", "sacfd", "--env", "Pendulum-v1", "--output-dir", str(tmp_path)])
    assert "sac.yml has no entry for 'NoEntry-v0' (entries: [" in capsys.readouterr().err
    assert not trained


def test_zoo_hyperparameters_read_the_installed_entries():
    entry = zoo_entry("sac", LANDER)
    kwargs = zoo_hyperparameters("sac", LANDER)
    assert set(kwargs) == set(entry) - {"n_timesteps", "policy"}
    schedule = kwargs["learning_rate"]
    assert isinstance(schedule, LinearSchedule)
    start = float(entry["learning_rate"].removeprefix("lin_"))
    for progress_remaining in (1.0, 0.5, 0.25):
        assert schedule(progress_remaining) == pytest.approx(start * progress_remaining)  # rl-zoo3's linear_schedule
    assert kwargs["policy_kwargs"] == eval(entry["policy_kwargs"], {"dict": dict})  # a literal: eval is safe here
    for key in set(entry) - {"n_timesteps", "policy", "learning_rate", "policy_kwargs"}:
        assert kwargs[key] == entry[key], key
    SAC("MlpPolicy", LANDER, **kwargs)  # SB3 takes them


def test_zoo_hyperparameters_action_noise_and_yaml_merge_keys():
    # Hopper-v4's TD3 entry is '<<: *mujoco-defaults' in rl-zoo3's file; the action space given, no MuJoCo needed
    entry = zoo_entry("td3", "Hopper-v4")
    kwargs = zoo_hyperparameters("td3", "Hopper-v4", spaces.Box(-1.0, 1.0, (3,)))
    assert kwargs["learning_starts"] == entry["learning_starts"] and kwargs["policy_kwargs"]["net_arch"] == [400, 300]
    assert isinstance(kwargs["action_noise"], NormalActionNoise)
    np.testing.assert_allclose(kwargs["action_noise"]._sigma, [entry["noise_std"]] * 3)
    ou = zoo_hyperparameters("td3", "MountainCarContinuous-v0")
    assert isinstance(ou["action_noise"], OrnsteinUhlenbeckActionNoise)
    np.testing.assert_allclose(ou["action_noise"]._sigma, [zoo_entry("td3", "MountainCarContinuous-v0")["noise_std"]])
    # A new noise object each call (each run explores with its own)
    assert zoo_hyperparameters("td3", LANDER)["action_noise"] is not zoo_hyperparameters("td3", LANDER)["action_noise"]


@pytest.mark.parametrize(
    "algo, env_id, error, message",
    [
        ("sacfd", LANDER, ValueError, "No rl-zoo3 hyperparameters for algorithm 'sacfd': use one of"),
        ("sac", "CartPole-v1", ValueError, "sac.yml has no entry for 'CartPole-v1' (entries: ['Ant-v4'"),
        ("sac", "HumanoidBulletEnv-v0", ValueError, "builds its environments with ['normalize']"),
        ("td3", LANDER, TypeError, "action noise needs a Box action space, got Discrete(3)"),
    ],
)
def test_zoo_hyperparameters_errors(algo, env_id, error, message):
    with pytest.raises(error) as info:
        zoo_hyperparameters(algo, env_id, spaces.Discrete(3) if error is TypeError else None)
    assert message in str(info.value)


def test_zoo_hyperparameters_without_rl_zoo3(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "rl_zoo3" else real(name, *args))
    with pytest.raises(ImportError, match="pip install 'sb3-dqfd\\[zoo\\]'"):
        zoo_hyperparameters("sac", LANDER)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--algo", "sacfd", "--env", "CartPole-v1"], "--algo sacfd needs continuous actions (a Box): CartPole-v1 has "
         "Discrete(2) actions; use --algo dqfd"),
        (["--algo", "td3fd", "--env", "CartPole-v1", "--conf-file", "cartpole.yml"], "use --algo dqfd"),
        (["--algo", "dqfd", "--env", LANDER], f"--algo dqfd needs discrete actions (a Discrete): {LANDER} has Box("),
    ],
)  # fmt: skip
def test_zoo_train_with_the_wrong_action_space_is_one_line(tmp_path, monkeypatch, capsys, argv, expected):
    monkeypatch.chdir(tmp_path)
    Path("cartpole.yml").write_text("CartPole-v1:\n  n_timesteps: 1000\n  policy: MlpPolicy\n")
    assert zoo_main(["train", *argv]) == 2
    error = capsys.readouterr().err
    assert error.startswith("python -m sb3_dqfd.zoo train: error: ") and error.count("\n") == 1
    assert expected in error


def test_zoo_train_sacfd_on_cartpole_from_the_shell():
    completed = subprocess.run(
        [sys.executable, "-m", "sb3_dqfd.zoo", "train", "--algo", "sacfd", "--env", "CartPole-v1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert completed.stderr.count("\n") == 1 and "use --algo dqfd" in completed.stderr


def test_the_action_space_check_makes_the_env_with_its_env_kwargs():
    check_action_space("sacfd", "LunarLander-v3", {"continuous": True})  # the continuous lander: accepted
    with pytest.raises(ValueError, match="use --algo dqfd"):
        check_action_space("sacfd", "LunarLander-v3")
    check_action_space("ppo", "CartPole-v1")  # rl-zoo3's own algorithms are left to rl-zoo3
