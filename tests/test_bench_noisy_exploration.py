"""benchmarks/bench_noisy_exploration.py: what it measures, on a tiny budget."""

import pytest
from benchmark_helpers import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_noisy_exploration")


def test_shares_of_a_noiseless_and_of_a_very_noisy_head(bench):
    demonstrations = bench.task_demonstrations("MountainCar-v0", 0)
    states = bench.probe_states("MountainCar-v0", demonstrations, 0)
    assert states["start"].shape == (bench.N_START_STATES, 2) and len(states["demo"]) == bench.N_DEMO_STATES
    settings = bench.variant_hyperparameters("DQfD + noisy", "MountainCar-v0")
    for std_init, expected in ((0.0, lambda share: share == 0.0), (50.0, lambda share: share > 0.3)):
        kwargs = settings["policy_kwargs"] | {"noisy_std_init": std_init}
        model = bench.make_dqfd("MountainCar-v0", demonstrations, seed=0, **settings | {"policy_kwargs": kwargs})
        measured = bench.exploration(model, states["start"], epsilon=0.2)
        assert expected(measured["noisy_share"]), (std_init, measured)
        assert measured["epsilon_share"] == pytest.approx(0.2 * 2 / 3) and measured["q_gap"] >= 0


def test_run_task_measures_each_stage_and_writes_table_and_plot(bench, tmp_path):
    rows = bench.run_task("MountainCar-v0", 0, checkpoints=[8, 16], pretrain_steps=20)
    stages = [(row["variant"], row["stage"], row["timesteps"]) for row in rows]
    assert stages == [
        ("DQfD + noisy", "initial", 0),
        ("DQfD + noisy", "pre-trained", 0),
        ("DQfD + noisy", "interaction", 8),
        ("DQfD + noisy", "interaction", 16),
        ("DQfD + noisy, l2_coef 0", "pre-trained", 0),
    ]
    assert rows[1]["start"]["epsilon_share"] == pytest.approx(0.2 * 2 / 3)  # the shipped entry starts at 0.2
    assert all(0.0 <= row[kind]["noisy_share"] <= 1.0 and row["sigma"] > 0 for row in rows for kind in ("start", "demo"))
    assert "| MountainCar-v0 | DQfD + noisy | interaction | 16 |" in bench.table(rows)
    bench.plot(rows, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000
