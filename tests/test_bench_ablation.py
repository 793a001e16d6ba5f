"""benchmarks/bench_ablation.py: the variants' settings (MinAtar too), the hold share, its options, --resume, tiny runs."""

import json
import sys

import pytest
from benchmark_helpers import BENCHMARKS, load_benchmark

from sb3_dqfd.common.experiment import LearningCurve


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_ablation")


def test_variants_add_their_option_to_the_shipped_settings(bench):
    shipped = bench.variant_hyperparameters("DQfD", "MountainCar-v0")
    assert shipped["exploration_initial_eps"] == 0.2 and "noisy" not in shipped["policy_kwargs"]
    noisy = bench.variant_hyperparameters("DQfD + noisy", "MountainCar-v0")
    assert noisy["policy_kwargs"] == shipped["policy_kwargs"] | {"noisy": True}
    assert not set(bench.EPSILON_KEYS) & set(noisy)  # the noise explores: DQfD's epsilon defaults to 0
    both = bench.variant_hyperparameters("DQfD + noisy", "MountainCar-v0", noisy_keeps_epsilon=True)
    assert both == shipped | {"policy_kwargs": noisy["policy_kwargs"]}
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
    assert bench.parse_args(["--envs", "MinAtar/Breakout-v1"]).envs == ["MinAtar/Breakout-v1"]
    assert bench.parse_args(["--variants", "DQfD + noisy", "DQfD", "DQfD"]).variants == ["DQfD", "DQfD + noisy"]
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


MINATAR = "MinAtar/Breakout-v1"


def test_minatar_variants_add_their_option_to_dqfd_defaults(bench):
    # bench_minatar.py runs DQfD with its defaults: each variant adds its option only
    assert bench.variant_hyperparameters("DQfD", MINATAR) == {"policy_kwargs": {}}
    assert bench.variant_hyperparameters("DQfD + noisy", MINATAR) == {"policy_kwargs": {"noisy": True}}
    assert bench.variant_hyperparameters("DQfD + distributional", MINATAR) == {"policy_kwargs": {"n_quantiles": 50}}
    both = bench.variant_hyperparameters("DQfD + noisy + distributional", MINATAR, 8)
    assert both == {"policy_kwargs": {"noisy": True, "n_quantiles": 8}}
    settings = bench.task_settings(MINATAR)
    assert settings == dict(n_demo_episodes=20, full=100_000, eval_freq=10_000, n_eval_episodes=10, threshold=9.9)
    assert bench.shortname(MINATAR) == "breakout" and bench.shortname("LunarLander-v3") == "lunarlander"
    for env_id in ("CartPole-v1", "MinAtar/Freeway-v1"):  # in bench_dqfd.py's TASKS, in bench_minatar.py's GAMES
        with pytest.raises(ValueError, match=f"No ablation settings for '{env_id}'"):
            bench.task_settings(env_id)


def test_minatar_settings_are_those_of_bench_minatar_measured_run(bench):
    measured = json.loads((BENCHMARKS / "results" / "bench_minatar.json").read_text())["metadata"]
    settings = measured["settings"]
    assert (settings["budget"], settings["eval_freq"], settings["eval_episodes"]) == (
        bench.MINATAR_BUDGET,
        bench.MINATAR_EVAL_FREQ,
        bench.MINATAR_EVAL_EPISODES,
    )
    for game, score in bench.MINATAR_TEACHER_SCORES.items():
        assert measured["goals"][game]["teacher_mean_return"] == score


@pytest.fixture(scope="module")
def minatar_demos():
    sys.path.insert(0, str(BENCHMARKS))
    from bench_minatar import make_game

    from sb3_dqfd.common.demonstrations import record_demonstrations
    from sb3_dqfd.common.experts import get_expert

    return record_demonstrations(get_expert(MINATAR), make_game(MINATAR), 1, seed=0)


@pytest.mark.parametrize("variant", ["DQfD", "DQfD + noisy", "DQfD + distributional", "DQfD + noisy + distributional"])
def test_each_minatar_variant_builds_with_cnn_policy_and_learns(bench, minatar_demos, variant):
    from sb3_dqfd.dqfd import CnnPolicy, MinAtarCNN

    settings = bench.variant_hyperparameters(variant, MINATAR) | dict(pretrain_steps=3, batch_size=8, seed=0)
    model = bench.make_dqfd(MINATAR, minatar_demos, **settings)
    assert isinstance(model.policy, CnnPolicy) and isinstance(model.q_net.features_extractor, MinAtarCNN)
    assert model.q_net.noisy == bench.VARIANTS[variant]["noisy"]
    assert model.q_net.n_quantiles == (50 if bench.VARIANTS[variant]["distributional"] else None)
    model.pretrain(model.pretrain_steps)
    model.learn(16)
    assert model.num_timesteps == 16


def test_run_one_on_minatar_and_its_checkpoints(bench, tmp_path):
    variant = "DQfD + noisy + distributional"
    hyperparameters = bench.variant_hyperparameters(variant, MINATAR) | dict(pretrain_steps=5, batch_size=8)
    folder = bench.checkpoint_folder(tmp_path, (variant, MINATAR, 0))
    assert folder == tmp_path / "breakout_dqfd_noisy_distributional_seed0"
    job = (variant, MINATAR, 0, 80, hyperparameters, 32, 1, str(folder))
    curve, run = bench.run_one(job)
    assert (curve.label, curve.seed, curve.timesteps, curve.pretrained) == (variant, 0, [0, 32, 64, 80], True)
    assert run["variant"] == variant and run["env_id"] == MINATAR and run["seed"] == 0
    # Saved at the end too: the same run with a larger budget trains on from there (the image buffer restored)
    assert (folder / "latest").read_text() == "step_80"
    longer, _ = bench.run_one((*job[:3], 96, *job[4:]))
    assert (
        longer.timesteps == [0, 32, 64, 80, 96] and longer.resumed_at == [80] and longer.mean_returns[:4] == curve.mean_returns
    )


def test_step_costs_on_minatar(bench):
    costs = bench.step_costs(MINATAR, n_quantiles=None, rounds=1, steps=2, warmup_steps=20)
    assert costs["env_id"] == MINATAR and costs["DQfD"]["gradient_step_ratio"] == 1.0
    assert costs["DQfD + distributional"]["n_quantiles"] == 50 and costs["DQfD"]["n_quantiles"] is None
    assert all(costs[variant]["acting_step_ms"] > 0 for variant in bench.VARIANTS)
    assert "| DQfD + noisy + distributional | 50 |" in bench.format_step_costs(costs)


# --resume, with run_one and run_in_processes replaced by fakes that run in this process and record what ran

ARGV = ["--small", "--envs", "MountainCar-v0", "--seeds", "2", "--no-step-costs"]
PARTIAL, FINAL = "dqfd_ablation_small.partial.json", "dqfd_ablation_small.json"


def fake_run_one(job):
    variant, env_id, seed, budget = job[:4]
    curve = LearningCurve(
        variant, seed, [0, budget], [-150.0, -100.0 - seed], [0.0, 0.0], 1.0, 0.1, [0.5, 1.0], pretrained=True
    )
    return curve, {"variant": variant, "env_id": env_id, "seed": seed, "cpu_share": 1.0}


@pytest.fixture
def fake_runs(bench, monkeypatch):
    """Which jobs ran (``ran``: their keys); ``stop_after``: a Ctrl-C after that many runs of the call (None: never)."""
    state = {"ran": [], "stop_after": None}

    def fake_run_in_processes(function, jobs, max_workers, on_result=None):
        results = []
        for job in jobs:
            if len(results) == state["stop_after"]:
                raise KeyboardInterrupt
            state["ran"].append(bench.job_key(job))
            results.append(function(job))
            on_result(list(results))
        return results

    monkeypatch.setattr(bench, "run_one", fake_run_one)
    monkeypatch.setattr(bench, "run_in_processes", fake_run_in_processes)
    return state


def all_keys(bench, envs=("MountainCar-v0",), seeds=2):
    return [(variant, env_id, seed) for env_id in envs for variant in bench.VARIANTS for seed in range(seeds)]


def interrupted_run(bench, fake_runs, argv, stop_after):
    """A session stopped by Ctrl-C after ``stop_after`` runs: the partial file keeps them."""
    fake_runs.update(ran=[], stop_after=stop_after)
    with pytest.raises(SystemExit) as stopped:
        bench.main(argv)
    assert stopped.value.code == 130
    fake_runs.update(ran=[], stop_after=None)


def test_resume_runs_only_the_unfinished_jobs_and_merges(bench, fake_runs, tmp_path, capsys):
    argv = [*ARGV, "--output-dir", str(tmp_path)]
    interrupted_run(bench, fake_runs, argv, stop_after=3)
    partial = json.loads((tmp_path / PARTIAL).read_text())
    assert not partial["metadata"]["complete"] and not (tmp_path / FINAL).exists()
    keys = all_keys(bench)
    assert [(run["variant"], run["env_id"], run["seed"]) for run in partial["metadata"]["runs"]] == keys[:3]
    assert partial["metadata"]["configuration"]["seeds"] == 2
    capsys.readouterr()

    report = bench.main([*argv, "--resume"])
    assert fake_runs["ran"] == keys[3:]
    assert "--resume: 3 of 8 runs finished already" in capsys.readouterr().out
    results = json.loads((tmp_path / FINAL).read_text())
    assert [(curve["label"], curve["seed"]) for curve in results["curves"]] == [(key[0], key[2]) for key in keys]
    assert results["curves"][:3] == partial["curves"]  # the finished runs, as the first session saved them
    assert [(run["variant"], run["seed"]) for run in results["metadata"]["runs"]] == [(key[0], key[2]) for key in keys]
    assert results["metadata"]["complete"] and len(results["metadata"]["sessions"]) == 2
    assert results["metadata"]["sessions"][1]["command"].endswith("--resume")
    assert [row["seeds"] for row in report["MountainCar-v0"]["summary"]] == [2] * 4
    assert not (tmp_path / PARTIAL).exists() and (tmp_path / "dqfd_ablation_small_mountaincar.png").exists()

    # Finished: nothing to resume
    with pytest.raises(SystemExit):
        bench.parse_args([*argv, "--resume"])
    assert "nothing to continue" in capsys.readouterr().err


def test_resume_keeps_the_checkpoints_of_runs_in_progress_only_for_the_same_options(bench, fake_runs, tmp_path, capsys):
    argv = [*ARGV, "--output-dir", str(tmp_path)]
    root = tmp_path / "dqfd_ablation_small.checkpoints"
    interrupted_run(bench, fake_runs, argv, stop_after=1)
    assert "the runs in progress from their last evaluation" in capsys.readouterr().out
    in_progress, finished = (bench.checkpoint_folder(root, key) for key in (all_keys(bench)[1], all_keys(bench)[0]))
    for folder in (in_progress, finished):  # as run_one leaves them; a finished run's is removed once it is saved
        folder.mkdir()
    interrupted_run(bench, fake_runs, [*argv, "--resume"], stop_after=1)
    assert "1 run(s) continue from their checkpoints: mountaincar_dqfd_seed1" in capsys.readouterr().out
    assert not in_progress.exists() and not finished.exists()  # the resumed run finished in that session
    in_progress.mkdir()
    interrupted_run(bench, fake_runs, [*argv, "--seeds", "3"], stop_after=0)  # other options: the checkpoints cannot serve
    assert not in_progress.exists() and "continue from their checkpoints" not in capsys.readouterr().out
    in_progress.mkdir()
    bench.main(argv)
    assert not root.exists()  # complete: no checkpoint left behind


def test_resume_without_a_partial_file_starts_afresh(bench, fake_runs, tmp_path, capsys):
    bench.main([*ARGV, "--output-dir", str(tmp_path), "--resume"])
    assert fake_runs["ran"] == all_keys(bench) and "starting afresh" in capsys.readouterr().out
    assert (tmp_path / FINAL).exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (["--seeds", "3"], "seeds: 2 in the file, 3 now"),
        (["--n-quantiles", "8"], "n_quantiles: null in the file, 8 now"),
        (["--timesteps", "500"], "tasks MountainCar-v0 budget: 2000 in the file, 500 now"),
        (["--envs", "MountainCar-v0", "LunarLander-v3"], "tasks LunarLander-v3: none in the file, {"),
        (["--variants", "DQfD", "DQfD + noisy"], 'variants: ["DQfD", "DQfD + noisy", "DQfD + distributional"'),
    ],
)
def test_resume_refused_for_other_options(bench, fake_runs, tmp_path, capsys, change, message):
    argv = [*ARGV, "--output-dir", str(tmp_path)]
    interrupted_run(bench, fake_runs, argv, stop_after=2)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        bench.parse_args([*argv, *change, "--resume"])
    error = capsys.readouterr().err
    assert "--resume:" in error and "was written by other options" in error and message in error
    assert len(json.loads((tmp_path / PARTIAL).read_text())["curves"]) == 2  # left as is


def test_resume_refused_for_the_settings_of_a_variant(bench, fake_runs, tmp_path, capsys, monkeypatch):
    argv = [*ARGV, "--output-dir", str(tmp_path)]
    interrupted_run(bench, fake_runs, argv, stop_after=1)
    capsys.readouterr()
    monkeypatch.setitem(bench.SMALL, "pretrain_steps", 100)  # e.g. the code changed between sessions
    with pytest.raises(SystemExit):
        bench.parse_args([*argv, "--resume"])
    error = capsys.readouterr().err
    assert 'hyperparameters MountainCar-v0 DQfD pretrain_steps: "500" in the file, "100" now' in error
    assert "hyperparameters MountainCar-v0 DQfD + noisy + distributional pretrain_steps" in error


def test_configuration_differences(bench):
    stored = {"seeds": 3, "tasks": {"A": {"budget": 1, "eval_freq": 2}}, "hyperparameters": {}}
    assert bench.configuration_differences(stored, stored) == []
    current = {"seeds": 2, "tasks": {"A": {"budget": 5, "eval_freq": 2}, "B": {"budget": 1}}, "hyperparameters": {}}
    assert bench.configuration_differences(stored, current) == [
        "seeds: 3 in the file, 2 now",
        "tasks A budget: 1 in the file, 5 now",
        'tasks B: none in the file, {"budget": 1} now',
    ]
    assert bench.configuration_differences(stored, current, limit=1) == ["seeds: 3 in the file, 2 now", "and 2 more"]


def test_resume_refused_for_a_partial_file_without_configuration(bench, tmp_path, capsys):
    from sb3_dqfd.common.experiment import save_results

    save_results(tmp_path / PARTIAL, [LearningCurve("DQfD", 0, [0], [-200.0])], {"command": "old", "complete": False})
    with pytest.raises(SystemExit):
        bench.parse_args([*ARGV, "--output-dir", str(tmp_path), "--resume"])
    assert "no configuration or run records: an older bench_ablation.py wrote it" in capsys.readouterr().err
    (tmp_path / PARTIAL).write_text("{not json")
    with pytest.raises(SystemExit):
        bench.parse_args([*ARGV, "--output-dir", str(tmp_path), "--resume"])
    assert "is not valid JSON" in capsys.readouterr().err


def test_without_resume_a_partial_file_is_overwritten_as_runs_finish(bench, fake_runs, tmp_path, capsys):
    argv = [*ARGV, "--output-dir", str(tmp_path)]
    interrupted_run(bench, fake_runs, argv, stop_after=3)
    capsys.readouterr()
    interrupted_run(bench, fake_runs, argv, stop_after=0)  # stopped before a run finished: the file is left as is
    assert "--resume would continue it" in capsys.readouterr().out
    assert len(json.loads((tmp_path / PARTIAL).read_text())["curves"]) == 3
    fake_runs["stop_after"] = 1
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert fake_runs["ran"] == all_keys(bench)[:1]  # from the first run again
    partial = json.loads((tmp_path / PARTIAL).read_text())
    assert len(partial["curves"]) == 1 and len(partial["metadata"]["sessions"]) == 1


def fake_step_costs(bench, calls):
    def step_costs(env_id, n_quantiles):
        calls.append(env_id)
        row = dict(n_quantiles=None, gradient_step_ms=1.0, acting_step_ms=0.1, gradient_step_ratio=1.0, acting_step_ratio=1.0)
        costs = dict(env_id=env_id, batch_size=64, rounds=1, steps_per_round=1, cpu_share=1.0)
        return costs | {variant: row for variant in bench.VARIANTS}

    return step_costs


def test_resume_keeps_the_step_costs_of_the_partial_file(bench, fake_runs, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "step_costs", fake_step_costs(bench, calls))
    argv = [*(arg for arg in ARGV if arg != "--no-step-costs"), "--output-dir", str(tmp_path)]
    interrupted_run(bench, fake_runs, argv, stop_after=1)
    assert calls == ["MountainCar-v0"]
    report = bench.main([*argv, "--resume"])
    assert calls == ["MountainCar-v0"] and [cost["env_id"] for cost in report["step_costs"]] == ["MountainCar-v0"]


def test_remeasured_step_costs_replace_those_of_the_partial_file(bench, fake_runs, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "step_costs", fake_step_costs(bench, calls))
    argv = [*(arg for arg in ARGV if arg != "--no-step-costs"), "--output-dir", str(tmp_path)]
    interrupted_run(bench, fake_runs, argv, stop_after=1)
    first = json.loads((tmp_path / PARTIAL).read_text())["metadata"]["step_costs"]
    report = bench.main([*argv, "--resume", "--remeasure-step-costs"])  # e.g. after the code got faster
    assert calls == ["MountainCar-v0", "MountainCar-v0"] and report["replaced_step_costs"] == first
    assert json.loads((tmp_path / FINAL).read_text())["metadata"]["replaced_step_costs"] == first


def test_a_minatar_game_without_a_measured_teacher_has_no_threshold(bench, fake_runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "MINATAR_TEACHER_SCORES", {})
    argv = ["--small", "--envs", MINATAR, "MountainCar-v0", "--no-step-costs", "--output-dir", str(tmp_path)]
    report = bench.main(argv)
    assert fake_runs["ran"] == all_keys(bench, (MINATAR, "MountainCar-v0"), seeds=1)
    assert report[MINATAR]["threshold"] is None and report[MINATAR]["hold"] is None
    assert {row["reached"] for row in report[MINATAR]["summary"]} == {"-"}
    assert report["MountainCar-v0"]["threshold"] == -110.0 and report["MountainCar-v0"]["hold"]["DQfD"]
    assert f"hold share: not reported ({MINATAR} has no threshold)" in capsys.readouterr().out
    assert (tmp_path / "dqfd_ablation_small_breakout.png").exists()
    assert json.loads((tmp_path / FINAL).read_text())["metadata"]["budgets"] == {MINATAR: 2_000, "MountainCar-v0": 2_000}


def test_the_minatar_threshold_is_the_teacher_score(bench, tmp_path):
    curves = [fake_run_one(("DQfD", MINATAR, seed, 100))[0] for seed in range(2)]
    for curve in curves:
        curve.mean_returns = [9.0, 10.0, 9.95]
        curve.timesteps, curve.train_seconds_at = [0, 50, 100], [0.5, 0.7, 1.0]
    task = bench.report_task(MINATAR, curves, 100, 2, tmp_path / "breakout.png")
    assert task["threshold"] == 9.9 and task["hold"]["DQfD"]["median_hold_share"] == 1.0
    assert task["summary"][0]["median_steps_to_threshold"] == 50
