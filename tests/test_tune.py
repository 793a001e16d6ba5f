"""`tune`: Optuna search through rl-zoo3 on a shared SQLite study, the best trial as YAML, and bad input."""

import argparse
import socket
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from stable_baselines3.common.utils import LinearSchedule

from sb3_dqfd.common.demonstrations import record_demonstrations, save_demonstrations
from sb3_dqfd.common.hyperparams import load_hyperparameters
from sb3_dqfd.dqfd.dqfd import DQfD
from sb3_dqfd.zoo import HYPERPARAMS_DIR, ZooError, convert_dqfd_params, run_tune_command, tune_main
from sb3_dqfd.zoo.registration import read_zoo_entry
from sb3_dqfd.zoo.tune import open_storage

# Tiny trials: a few hundred environment steps, two evaluations (pruning points) of one episode
TINY = ["--n-timesteps", "200", "--n-evaluations", "2", "--eval-episodes", "1", "--verbose", "0", "--seed", "0"]
# Shrink the sampled knobs that cost time regardless of the budget (pre-training updates, network width)
FAST = ["--fix", "pretrain_steps=20", "net_arch=small", "batch_size=32"]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding the demonstrations the shipped CartPole entry points to."""
    demos = record_demonstrations("CartPole-v1", "CartPole-v1", n_episodes=2, seed=0)
    (tmp_path / "demos").mkdir()
    save_demonstrations(demos, tmp_path / "demos" / "cartpole_expert_5.npz")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_tune(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """:return: the exit status of ``tune`` and its stderr"""
    status = tune_main(list(argv))
    return status, capsys.readouterr().err


def test_workers_share_a_sqlite_study_and_best_yaml_is_usable(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storage = f"sqlite:///{workdir / 'study.db'}"
    common = ["dqfd", "--env", "CartPole-v1", "--storage", storage, "--study-name", "shared", *TINY, *FAST]
    # Two runs against one study (the second joins it), the first with two trials in parallel threads
    assert run_tune(capsys, *common, "--n-trials", "2", "--n-jobs", "2", "--output", "best.yml")[0] == 0
    assert run_tune(capsys, *common, "--n-trials", "1", "--output", "best.yml")[0] == 0

    study = optuna.load_study(study_name="shared", storage=storage)
    assert len(study.trials) == 3
    assert all(trial.state in FINISHED for trial in study.trials)
    assert all("worker" in trial.user_attrs for trial in study.trials)
    assert all(trial.params["pretrain_steps"] == 20 and trial.params["net_arch"] == "small" for trial in study.trials)

    # The YAML reproduces the best trial on top of the shipped entry, and both YAML readers accept it
    written = read_zoo_entry("best.yml", "CartPole-v1", DQfD)
    shipped = read_zoo_entry(HYPERPARAMS_DIR / "dqfd.yml", "CartPole-v1", DQfD)
    best = convert_dqfd_params(study.best_trial.params)
    if isinstance(best["learning_rate"], LinearSchedule):  # a linear decay is written as rl-zoo3's lin_<x>
        best["learning_rate"] = f"lin_{best['learning_rate'].start}"
    expected = {**shipped, **best}
    assert written == expected
    assert load_hyperparameters("best.yml", "CartPole-v1", DQfD)["margin"] == study.best_trial.params["margin"]
    assert f"trial #{study.best_trial.number}" in Path("best.yml").read_text()
    assert Path("best.png").stat().st_size > 10_000  # the study plot beside the YAML
    assert "set it to 200 to reproduce the trial" in Path("best.yml").read_text()  # trials ran shorter than the entry


def test_pruned_trials_stop_early_and_are_reported(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rl_zoo3.exp_manager import ExperimentManager

    # A pruner that prunes every trial at its first report: proves the reports reach Optuna and stop training
    monkeypatch.setattr(ExperimentManager, "_create_pruner", lambda self, name: optuna.pruners.ThresholdPruner(lower=1e9))
    storage = f"sqlite:///{workdir / 'pruned.db'}"
    status, err = run_tune(capsys, "dqfd", "--env", "CartPole-v1", "--storage", storage, "--n-trials", "2", *TINY, *FAST)
    study = optuna.load_study(study_name="dqfd-CartPole-v1", storage=storage)
    assert [trial.state for trial in study.trials] == [TrialState.PRUNED] * 2
    assert all(list(trial.intermediate_values) == [1] for trial in study.trials)  # stopped after evaluation 1 of 2
    assert status == 2
    assert "no completed trial" in err


def test_max_total_trials_caps_the_whole_study(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storage = f"sqlite:///{workdir / 'capped.db'}"
    argv = ["dqfd", "--env", "CartPole-v1", "--storage", storage, "--n-trials", "5", "--max-total-trials", "1", *TINY, *FAST]
    assert run_tune(capsys, *argv)[0] == 0
    assert run_tune(capsys, *argv)[0] == 0  # a late worker finds the study full and runs nothing
    assert len(optuna.load_study(study_name="dqfd-CartPole-v1", storage=storage).trials) == 1


def _one_error_line(status: int, err: str) -> str:
    assert status == 2
    assert err.startswith("sb3-dqfd tune: error: ")
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["dqfdd", "--env", "CartPole-v1"], "unknown algorithm 'dqfdd'"),
        (["dqfd", "--env", "CartPol-v1"], "unknown environment 'CartPol-v1' (did you mean CartPole-v1"),
        (["dqfd", "--env", "Acrobot-v1"], "no entry for 'Acrobot-v1'"),
        (["dqfd", "--env", "CartPole-v1", "--fix", "margin_typo=1"], "samples no parameter margin_typo"),
        (["dqfd", "--env", "CartPole-v1", "--fix", "batch_size=100"], "not one of the choices [32, 64, 128, 256]"),
        (["dqfd", "--env", "CartPole-v1", "--fix", "margin"], "expected NAME=VALUE"),
        (["dqfd", "--env", "CartPole-v1", "--n-trials", "0"], "--n-trials must be >= 1"),
        (["dqfd", "--env", "CartPole-v1", "--storage", "sqlite:////no/such/dir/x.db"], "cannot open Optuna storage"),
        (["dqfd", "--env", "CartPole-v1", "--storage", "nosuchdb://x"], "cannot open Optuna storage"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert expected in _one_error_line(*run_tune(capsys, *argv))


def test_yaml_with_unknown_keys_names_them(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry = {"n_timesteps": 1000, "policy": "MlpPolicy", "learning_rate": 1e-3, "marginn": 0.8, "pretrain_step": 10}
    Path("bad.yml").write_text(yaml.safe_dump({"CartPole-v1": entry}))
    err = _one_error_line(*run_tune(capsys, "dqfd", "--env", "CartPole-v1", "--conf-file", "bad.yml"))
    assert "unknown hyperparameters for DQfD: marginn, pretrain_step" in err


def test_missing_demonstrations_say_how_to_record_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no demos/ here
    err = _one_error_line(*run_tune(capsys, "dqfd", "--env", "CartPole-v1"))
    assert "demonstrations file 'demos/cartpole_expert_5.npz' does not exist" in err
    assert "python -m sb3_dqfd record --env CartPole-v1 --episodes <N> --output demos/cartpole_expert_5.npz" in err


def test_study_of_another_algorithm_is_refused(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storage = f"sqlite:///{workdir / 'other.db'}"
    optuna.create_study(storage=storage, study_name="taken").set_user_attr("algo", "ppo")
    err = _one_error_line(*run_tune(capsys, "dqfd", "--env", "CartPole-v1", "--storage", storage, "--study-name", "taken"))
    assert "belongs to ppo" in err


def test_unreachable_database_is_one_line_without_the_password(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://optuna:s3cret@127.0.0.1:{port}/optuna"
    err = _one_error_line(*run_tune(capsys, "dqfd", "--env", "CartPole-v1", "--storage", url))
    assert err.startswith("sb3-dqfd tune: error: cannot open Optuna storage 'postgresql://optuna:***@127.0.0.1")
    assert "s3cret" not in err


def test_journal_file_storage_for_workers_without_a_database(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["dqfd", "--env", "CartPole-v1", "--storage", "journal/study.log", "--n-trials", "1", *TINY, *FAST]
    assert run_tune(capsys, *argv)[0] == 0
    storage = optuna.storages.JournalStorage(JournalFileBackend("journal/study.log"))
    assert len(optuna.load_study(study_name="dqfd-CartPole-v1", storage=storage).trials) == 1


def test_transformer_ppo_study_and_best_yaml(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sb3_dqfd.transformer_ppo.transformer_ppo import TransformerPPO
    from sb3_dqfd.zoo.samplers import convert_transformer_ppo_params

    # The cheapest trial: short rollouts, one epoch, the smallest encoder
    fast = ["--fix", "n_steps=16", "batch_size=32", "n_epochs=1", "context_len=4", "d_model=16", "n_layers=1"]
    argv = ["transformer_ppo", "--env", "CartPoleNoVel-v1", "--storage", "journal/ppo.log", "--n-trials", "1"]
    assert run_tune(capsys, *argv, *TINY, *fast, "--output", "best.yml")[0] == 0
    storage = optuna.storages.JournalStorage(JournalFileBackend("journal/ppo.log"))
    study = optuna.load_study(study_name="transformer_ppo-CartPoleNoVel-v1", storage=storage)
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE]
    written = read_zoo_entry("best.yml", "CartPoleNoVel-v1", TransformerPPO)
    shipped = read_zoo_entry(HYPERPARAMS_DIR / "transformer_ppo.yml", "CartPoleNoVel-v1", TransformerPPO)
    assert written == {**shipped, **convert_transformer_ppo_params(study.best_trial.params)}
    assert written["batch_size"] == 16  # capped at n_steps: divides n_steps * n_envs


def test_workers_racing_to_create_the_tables_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import IntegrityError

    real, calls = optuna.storages.RDBStorage, []

    def racing(*args: Any, **kwargs: Any) -> optuna.storages.RDBStorage:
        calls.append(args)
        if len(calls) == 1:  # the other worker created the tables between our check and our CREATE TABLE
            raise IntegrityError("CREATE TABLE studies", {}, Exception("duplicate key value violates unique constraint"))
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    assert isinstance(open_storage("sqlite:///:memory:"), real)
    assert len(calls) == 2


def test_tune_without_the_zoo_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sb3_dqfd.zoo.tune", None)  # as if optuna or rl-zoo3 were missing
    with pytest.raises(ZooError, match=r"pip install 'sb3-dqfd\[zoo\]'"):
        run_tune_command(argparse.Namespace())


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning", "ignore::optuna.exceptions.ExperimentalWarning")
def test_a_dead_workers_trial_is_failed_and_queued_again(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'heartbeat.db'}", heartbeat_interval=1)
    study = optuna.create_study(storage=storage, study_name="heartbeat")
    lost = study.ask({"margin": optuna.distributions.FloatDistribution(0.1, 1.0)})
    assert storage is not None
    storage.record_heartbeat(lost._trial_id)  # its worker then dies: no more heartbeats
    time.sleep(3.5)  # past the grace period (2 heartbeat intervals; SQLite clocks count whole seconds)
    optuna.storages.fail_stale_trials(study)  # what every worker does before starting a trial
    retried = study.get_trials(states=(TrialState.WAITING,))
    assert study.trials[lost.number].state == TrialState.FAIL
    assert len(retried) == 1
    assert retried[0].params == {"margin": lost.params["margin"]}
    # The next worker runs the queued trial with the lost trial's parameters
    study.optimize(lambda trial: trial.suggest_float("margin", 0.1, 1.0), n_trials=1)
    assert study.trials[-1].state == TrialState.COMPLETE
    assert study.trials[-1].value == lost.params["margin"]


def test_sacfd_study_and_best_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sb3_dqfd.sacfd.sacfd import SACfD
    from sb3_dqfd.zoo.samplers import convert_sacfd_params

    env_id = "LunarLanderContinuous-v3"
    (tmp_path / "demos").mkdir()
    save_demonstrations(
        record_demonstrations(env_id, env_id, n_episodes=1, seed=0), tmp_path / "demos" / "lunarlandercontinuous_expert_10.npz"
    )
    monkeypatch.chdir(tmp_path)
    fast = ["--fix", "pretrain_steps=0", "net_arch=small", "batch_size=64", "train_freq=8", "learning_starts=0"]
    argv = ["sacfd", "--env", env_id, "--storage", "journal/sacfd.log", "--n-trials", "1"]
    assert run_tune(capsys, *argv, *TINY, *fast, "--output", "best.yml")[0] == 0
    storage = optuna.storages.JournalStorage(JournalFileBackend("journal/sacfd.log"))
    study = optuna.load_study(study_name=f"sacfd-{env_id}", storage=storage)
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE]
    written = read_zoo_entry("best.yml", env_id, SACfD)
    shipped = read_zoo_entry(HYPERPARAMS_DIR / "sacfd.yml", env_id, SACfD)
    assert written == {**shipped, **convert_sacfd_params(study.best_trial.params)}
