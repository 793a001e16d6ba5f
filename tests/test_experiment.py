"""Learning curves, their summaries, tables, plots and JSON."""

import json
import time

import pytest
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env

from sb3_dqfd.common.experiment import (
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
    assert format_table([untrained], 475).endswith("| 500.0 | - | - |")


def test_format_table_without_threshold_leaves_the_threshold_columns_out():
    rows = summarize([curve("A", 0, [10, 20])], None)
    header, _, row = format_table(rows, None).splitlines()
    assert "None" not in header and "reached" not in header
    assert header.count("|") == row.count("|") == 6
    assert row.startswith("| A | 1 | 20.0 |")


def test_train_with_curve_plot_and_json(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=1, seed=0)
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=100)
    model = DQN("MlpPolicy", env, learning_starts=100, seed=0)
    run = train_with_curve(model, "DQN", 0, 600, eval_env, eval_freq=250, n_eval_episodes=2)
    assert run.timesteps == [0, 250, 500, 600]
    assert len(run.mean_returns) == 4 and all(value > 0 for value in run.mean_returns)
    assert run.train_seconds > 0 and run.eval_seconds > 0
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
