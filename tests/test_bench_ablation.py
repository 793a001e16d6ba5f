"""benchmarks/bench_ablation.py: the variants' settings, the hold share, its options, a run at a tiny budget."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from sb3_dqfd.common.experiment import LearningCurve

BENCH = Path(__file__).parents[1] / "benchmarks" / "bench_ablation.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_ablation", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ablation"] = module  # the worker processes unpickle run_one from it
    spec.loader.exec_module(module)
    return module


def test_variants_add_their_option_to_the_shipped_settings(bench):
    shipped = bench.variant_hyperparameters("DQfD", "MountainCar-v0")
    assert shipped["exploration_initial_eps"] == 0.2 and "noisy" not in shipped["policy_kwargs"]
    noisy = bench.variant_hyperparameters("DQfD + noisy", "MountainCar-v0")
    assert noisy["policy_kwargs"] == shipped["policy_kwargs"] | {"noisy": True}
    assert not set(bench.EPSILON_KEYS) & set(noisy)  # the noise explores: DQfD's epsilon defaults to 0
    assert {key: value for key, value in shipped.items() if key not in (*bench.EPSILON_KEYS, "policy_kwargs")} == {
        key: value for key, value in noisy.items() if key != "policy_kwargs"
    }
    both = bench.variant_hyperparameters("DQfD + noisy + distributional", "LunarLander-v3")
    assert both["policy_kwargs"]["n_quantiles"] == 170 and both["policy_kwargs"]["noisy"]
    assert bench.variant_hyperparameters("DQfD + distributional", "MountainCar-v0", 8)["policy_kwargs"]["n_quantiles"] == 8


@pytest.mark.parametrize(
    "returns, expected",
    [
        ([-200, -120, -105, -108, -130, -100], 2 / 3),  # first at -105, then 2 of 3 at or above -110
        ([-200, -110, -111], 0.0),  # reaching -110 counts, the evaluations after it do not hold it
        ([-200, -150, -120], None),  # never reached
        ([-200, -150, -100], None),  # reached at the last evaluation only: nothing to hold
    ],
)
def test_hold_share(bench, returns, expected):
    curve = LearningCurve("DQfD + noisy", 0, list(range(len(returns))), returns)
    assert bench.hold_share(curve, -110.0) == (pytest.approx(expected) if expected is not None else None)


def test_options(bench, capsys):
    args = bench.parse_args([])
    assert (args.seeds, args.envs, args.variants, args.jobs) == (3, bench.ENVS, list(bench.VARIANTS), 1)
    assert bench.parse_args(["--small"]).seeds == 1
    for argv, message in [(["--seeds", "0"], "--seeds must be at least 1"), (["--n-quantiles", "0"], "--n-quantiles")]:
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_small_run_at_a_tiny_budget(bench, tmp_path):
    costs = bench.step_costs("MountainCar-v0", n_quantiles=4, rounds=1, steps=2, warmup_steps=30)
    assert costs["DQfD"]["gradient_step_ratio"] == 1.0 and costs["DQfD + distributional"]["n_quantiles"] == 4
    assert all(costs[variant]["gradient_step_ms"] > 0 for variant in bench.VARIANTS)
    argv = ["--small", "--envs", "MountainCar-v0", "--timesteps", "300", "--n-quantiles", "4", "--no-step-costs"]
    report = bench.main([*argv, "--output-dir", str(tmp_path)])
    results = json.loads((tmp_path / "dqfd_ablation_small.json").read_text())
    assert results["metadata"]["complete"] and results["metadata"]["budgets"] == {"MountainCar-v0": 300}
    assert sorted(curve["label"] for curve in results["curves"]) == sorted(bench.VARIANTS)
    for curve in results["curves"]:
        assert curve["timesteps"][0] == 0 and curve["timesteps"][-1] == 300 and curve["pretrained"]
    assert [row["method"] for row in report["MountainCar-v0"]["summary"]] == list(bench.VARIANTS)
    assert isinstance(report["goal"]["met"], bool)
    assert (tmp_path / "dqfd_ablation_small_mountaincar.png").exists() and not list(tmp_path.glob("*partial*"))
