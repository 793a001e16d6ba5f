"""Learning curves, their summaries, tables, plots and JSON."""

import json
import signal
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from benchmark_helpers import load_benchmark
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env

from sb3_dqfd.common import experiment
from sb3_dqfd.common.experiment import (
    ZOO_DQN_HYPERPARAMS,
    LearningCurve,
    format_table,
    plot_curves,
    run_in_processes,
    save_results,
    summarize,
    train_with_curve,
)


def curve(label, seed, returns, step=1000):
    return LearningCurve(label, seed, [i * step for i in range(len(returns))], list(returns), [0.0] * len(returns), 10.0)


def test_steps_to_threshold_and_share():
    run = curve("A", 0, [10, 480, 400, 500])
    assert run.steps_to_threshold(475) == 1000
    assert run.steps_to_threshold(501) is None
    assert run.share_at_or_above(475) == pytest.approx(0.5)


def test_summarize_medians_over_seeds():
    curves = [curve("A", 0, [0, 500]), curve("A", 1, [500, 500]), curve("A", 2, [0, 0]), curve("B", 0, [0, 100])]
    rows = summarize(curves, 475)
    assert [row["method"] for row in rows] == ["A", "B"]
    a, b = rows
    assert a["reached"] == "2/3"
    assert a["median_steps_to_threshold"] == 500  # median of the seeds that reached: 1000 and 0
    assert a["median_final_return"] == 500
    assert b["reached"] == "0/1" and b["median_steps_to_threshold"] is None
    table = format_table(rows, 475)
    assert "| B | 1 | 0/1 | - |" in table
    untrained = summarize([LearningCurve("teacher", 0, [0, 1000], [500.0, 500.0], [0.0, 0.0])], 475)[0]
    assert untrained["median_train_seconds"] is None and untrained["median_steps_per_second"] is None
    assert format_table([untrained], 475).endswith("| 500.0 | - | - | - |")  # no retention: not pre-trained


def timed_curve(label, seed, returns, seconds):
    run = curve(label, seed, returns)
    run.train_seconds_at = list(seconds)
    return run


def test_seconds_to_threshold():
    run = timed_curve("A", 0, [10, 480, 500], [2.0, 7.5, 12.0])
    assert run.timed
    assert run.seconds_to_threshold(475) == 7.5
    assert run.seconds_to_threshold(10) == 2.0
    assert run.seconds_to_threshold(501) is None
    untimed = curve("A", 0, [10, 480])  # built by hand, or loaded from a JSON file older than the field
    assert not untimed.timed
    with pytest.raises(ValueError, match="no training time per evaluation"):
        untimed.seconds_to_threshold(475)
    assert LearningCurve(**json.loads(json.dumps({"label": "old", "seed": 0, "timesteps": [0]}))).train_seconds_at == []


def test_summarize_median_seconds_counts_unreached_seeds_as_slowest():
    fast, slow = timed_curve("A", 0, [0, 500], [1.0, 4.0]), timed_curve("A", 1, [0, 0, 500], [1.0, 5.0, 9.0])
    never = timed_curve("A", 2, [0, 0], [1.0, 30.0])
    rows = summarize([fast, slow, never], 475)
    assert rows[0]["median_seconds_to_threshold"] == 9.0  # sorted 4, 9, never: the median seed took 9 s
    assert rows[0]["median_steps_to_threshold"] == 1500  # the steps column keeps the median of the seeds that reached
    assert summarize([fast, never, timed_curve("A", 3, [0], [1.0])], 475)[0]["median_seconds_to_threshold"] is None
    assert summarize([fast, curve("A", 1, [0, 500])], 475)[0]["median_seconds_to_threshold"] is None  # one untimed
    assert "median_seconds_to_threshold" in summarize([fast], None)[0]
    header, _, row = format_table(rows, 475).splitlines()
    assert "median train seconds to 475" in header
    assert row.startswith("| A | 3 | 2/3 | 1,500 | 9.0 | 33% |")
    old_row = {key: value for key, value in rows[0].items() if key != "median_seconds_to_threshold"}
    assert "| 1,500 | - |" in format_table([old_row], 475)  # rows of JSON files written before the column


class ImprovingEnv(gym.Env):
    """One-step episodes whose reward is the number of resets so far: every evaluation scores more than the last."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.resets = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.resets += 1
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), float(self.resets), True, False, {}


def test_train_with_curve_times_each_evaluation_and_can_stop_at_the_threshold():
    model = DQN("MlpPolicy", ImprovingEnv(), learning_starts=10, seed=0)
    eval_env = make_vec_env(ImprovingEnv, n_envs=1)
    run = train_with_curve(
        model, "DQN", 0, 600, eval_env, 100, 1, before_learning=lambda: time.sleep(0.2), stop_at_threshold=-1.0
    )
    assert run.timesteps == [0] and model.num_timesteps == 0  # reached at the first evaluation: no learning at all
    assert run.train_seconds_at[0] >= 0.2  # before_learning (pre-training) counts as training time
    assert run.seconds_to_threshold(-1.0) == run.train_seconds_at[0]
    model = DQN("MlpPolicy", ImprovingEnv(), learning_starts=10, seed=0)
    run = train_with_curve(model, "DQN", 0, 600, make_vec_env(ImprovingEnv, n_envs=1), 100, 1, stop_at_threshold=4.0)
    # Evaluation returns 1, 3, 5 (each evaluation resets twice): learning stops at the third, at 200 of 600 steps
    assert run.mean_returns == [1.0, 3.0, 5.0] and run.timesteps == [0, 100, 200] and model.num_timesteps == 200
    assert run.timed and run.seconds_to_threshold(4.0) == run.train_seconds_at[2] > run.train_seconds_at[1]


def test_format_table_without_threshold_leaves_the_threshold_columns_out():
    rows = summarize([curve("A", 0, [10, 20])], None)
    header, _, row = format_table(rows, None).splitlines()
    assert "None" not in header and "reached" not in header
    assert header.count("|") == row.count("|") == 7
    assert row.startswith("| A | 1 | 20.0 |")


def test_train_with_curve_plot_and_json(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=1, seed=0)
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=100)
    model = DQN("MlpPolicy", env, learning_starts=100, seed=0)
    run = train_with_curve(model, "DQN", 0, 600, eval_env, eval_freq=250, n_eval_episodes=2)
    assert run.timesteps == [0, 250, 500, 600]
    assert len(run.mean_returns) == 4 and all(value > 0 for value in run.mean_returns)
    assert run.train_seconds > 0 and run.eval_seconds > 0
    assert run.timed and run.train_seconds_at == sorted(run.train_seconds_at)
    assert 0 <= run.train_seconds_at[0] < run.train_seconds_at[-1] <= run.train_seconds
    plot_curves([run, run], tmp_path / "curve.png", "test", threshold=475)
    assert (tmp_path / "curve.png").stat().st_size > 1000
    save_results(tmp_path / "results.json", [run], {"command": "test"})
    content = json.loads((tmp_path / "results.json").read_text())
    assert content["curves"][0]["timesteps"] == [0, 250, 500, 600]


def slow_square(job: int) -> int:
    time.sleep(0.05 * job)  # the longest job is submitted first and ends last
    return job * job


def test_run_in_processes_keeps_job_order_and_reports_each_finished_run():
    seen: list[list[int]] = []
    assert run_in_processes(slow_square, [4, 1, 2], max_workers=3, on_result=seen.append) == [16, 1, 4]
    assert [len(finished) for finished in seen] == [1, 2, 3]
    assert seen[0] == [1] and sorted(seen[-1]) == [1, 4, 16]  # completion order, the slow job last
    with pytest.raises(ValueError, match="max_workers must be at least 1"):
        run_in_processes(slow_square, [1], max_workers=0)


def touch_after_a_while(path: str) -> str:
    time.sleep(0.2)
    Path(path).touch()
    return path


def test_run_in_processes_starts_no_queued_job_after_ctrl_c(tmp_path):
    def ctrl_c(finished: list[str]) -> None:
        raise KeyboardInterrupt

    jobs = [str(tmp_path / f"job{index}") for index in range(8)]
    with pytest.raises(KeyboardInterrupt):
        run_in_processes(touch_after_a_while, jobs, max_workers=1, on_result=ctrl_c)
    time.sleep(1.5)  # the jobs already handed to the worker end (a Ctrl-C in the main process only); no other starts
    # 1 finished + at most 1 running and 2 in the pool's call queue (max_workers + 1)
    assert 1 <= len(list(tmp_path.iterdir())) <= 4


def test_a_worker_starts_no_job_after_a_ctrl_c(monkeypatch):
    monkeypatch.setattr(experiment, "_interrupted", True)
    with pytest.raises(KeyboardInterrupt, match="queued before a Ctrl-C"):
        experiment._call_unless_interrupted(pytest.fail, "a job")
    monkeypatch.setattr(experiment, "_interrupted", False)
    assert experiment._call_unless_interrupted(str.upper, "a job") == "A JOB"
    with pytest.raises(KeyboardInterrupt):  # the handler a worker installs: stops the running job, marks the worker
        experiment._record_interrupt(signal.SIGINT, None)
    assert experiment._interrupted


def test_retention_is_the_lowest_later_evaluation_over_the_pretrained_one_from_the_floor():
    pretrained = LearningCurve("DQfD", 0, [0, 10, 20, 30], [200.0, 150.0, 250.0, 180.0], [0.0] * 4, pretrained=True)
    assert pretrained.retention() == 150.0 / 200.0
    # MountainCar: -200 is a failed episode; from -120 down to -160 keeps half of the way up
    mountain_car = LearningCurve("DQfD", 0, [0, 10], [-120.0, -160.0], [0.0] * 2, pretrained=True)
    assert mountain_car.retention(floor=-200.0) == 0.5
    assert LearningCurve("DQN", 0, [0, 10], [10.0, 5.0], [0.0] * 2).retention() is None  # not pre-trained
    assert LearningCurve("DQfD", 0, [0], [10.0], [0.0], pretrained=True).retention() is None  # nothing after
    assert LearningCurve("DQfD", 0, [0, 10], [0.0, 5.0], [0.0] * 2, pretrained=True).retention() is None  # at the floor


def test_summarize_reports_the_median_retention_of_pretrained_runs_only():
    runs = [
        LearningCurve("DQfD", seed, [0, 10], [100.0, low], [0.0] * 2, pretrained=True)
        for seed, low in enumerate([50.0, 95.0, 120.0])
    ]
    rows = summarize([*runs, LearningCurve("DQN", 0, [0, 10], [10.0, 50.0], [0.0] * 2)], None)
    assert rows[0]["median_retention"] == 0.95
    assert rows[1]["median_retention"] is None
    assert "| 0.95 |" in format_table(rows, None)


def test_bench_dqfd_criteria_report_the_retention_from_each_tasks_floor():
    bench = load_benchmark("bench_dqfd")

    def dqfd(seed, returns):
        return LearningCurve(
            "DQfD", seed, [2500 * i for i in range(len(returns))], returns, [0.0] * len(returns), 1.0, pretrained=True
        )

    # MountainCar from -200: (200 - 132) / (200 - 120) = 0.85, 90 / 80, (200 - 128) / (200 - 120) = 0.9 -> median 0.9
    mountain_car = [dqfd(0, [-120.0, -132.0, -105.0]), dqfd(1, [-120.0, -110.0, -100.0]), dqfd(2, [-120.0, -128.0, -109.0])]
    dqn = LearningCurve("DQN (rl-zoo3)", 0, [0, 2500, 5000], [-200.0, -200.0, -150.0], [0.0] * 3, 1.0)
    checks = bench.criteria("MountainCar-v0", [*mountain_car, dqn], {})
    assert checks["return_floor"] == -200.0
    assert checks["retention_per_seed"] == pytest.approx([0.85, 1.125, 0.9])
    assert checks["median_retention"] == pytest.approx(0.9)
    assert checks["retention_at_least_0_9"] is True
    # From 0 (the ratio a floor of 0 would give MountainCar is another one: 132 / 120 > 1)
    cart_pole = [dqfd(seed, [500.0, low]) for seed, low in enumerate([350.0, 440.0, 500.0])]
    checks = bench.criteria("CartPole-v1", cart_pole, {})
    assert checks["return_floor"] == 0.0 and checks["median_retention"] == pytest.approx(0.88)
    assert checks["retention_at_least_0_9"] is False
    not_pretrained = [LearningCurve("DQfD", 0, [0, 2500], [100.0, 250.0], [0.0] * 2, 1.0)]
    checks = bench.criteria("LunarLander-v3", not_pretrained, {})
    assert checks["retention_per_seed"] == [None] and checks["median_retention"] is None
    assert checks["retention_at_least_0_9"] is False


@pytest.mark.parametrize("env_id", sorted(ZOO_DQN_HYPERPARAMS))
def test_the_dqn_baseline_is_the_installed_rl_zoo3_entry(env_id):
    pytest.importorskip("rl_zoo3")
    from sb3_dqfd.common.hyperparams import zoo_hyperparameters

    zoo = zoo_hyperparameters("dqn", env_id)
    assert set(ZOO_DQN_HYPERPARAMS[env_id]) == set(zoo)
    for key, value in zoo.items():
        assert ZOO_DQN_HYPERPARAMS[env_id][key] == value, key  # a schedule would be a function: no entry has one


def test_exit_on_ctrl_c_is_one_line_and_status_130(capsys):
    def stopped():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_info:
        experiment.exit_on_ctrl_c(stopped, "the finished runs in x.partial.json")
    assert exit_info.value.code == 130 == experiment.EXIT_CTRL_C
    assert capsys.readouterr().err == "\nstopped by Ctrl-C; kept: the finished runs in x.partial.json\n"
    finished = []
    experiment.exit_on_ctrl_c(lambda: finished.append(True))
    assert finished == [True] and capsys.readouterr().err == ""
