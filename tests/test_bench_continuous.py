"""benchmarks/bench_continuous.py: options, each method's settings, the goals, errors, a run at a tiny budget."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from benchmark_helpers import BENCHMARKS, load_benchmark
from stable_baselines3.common.noise import NormalActionNoise

from sb3_dqfd import RLPD_HYPERPARAMS, SACfD, TD3fD
from sb3_dqfd.common.experiment import LearningCurve
from sb3_dqfd.common.hyperparams import shipped_hyperparameters, zoo_hyperparameters

LANDER = "LunarLanderContinuous-v3"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_continuous")


def test_default_options_and_small(bench):
    args = bench.parse_args([])
    assert (args.env, args.algos, args.seeds, args.budget, args.jobs) == (LANDER, list(bench.METHODS), 3, 100_000, 1)
    assert (args.eval_freq, args.eval_episodes, args.demo_episodes) == (5_000, 10, 20)
    assert args.rlpd_gradient_steps == RLPD_HYPERPARAMS["gradient_steps"] and args.output_dir == bench.RESULTS
    settings = bench.build_settings(args)
    assert settings["rlpd_budget"] == settings["budget"] == 100_000 and settings["fd_entry"] == LANDER
    assert settings["zoo_entry"] == LANDER and settings["expert_model"] is None
    small = bench.parse_args(["--small"])
    assert (small.seeds, small.budget, small.pretrain_steps) == (1, bench.SMALL["budget"], bench.SMALL_PRETRAIN_STEPS)
    assert small.rlpd_gradient_steps == bench.SMALL_RLPD_GRADIENT_STEPS
    # An explicit option wins over --small's
    assert bench.parse_args(["--small", "--budget", "500", "--rlpd-budget", "300"]).budget == 500
    assert bench.build_settings(bench.parse_args(["--rlpd-budget", "300"]))["rlpd_budget"] == 300


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "0"], "--seeds must be at least 1, got 0"),
        (["--rlpd-gradient-steps", "0"], "--rlpd-gradient-steps must be at least 1"),
        (["--pretrain-steps", "-1"], "--pretrain-steps must be at least 0"),
        (["--env", "Hopper-v5"], "--env Hopper-v5 has no built-in expert: give --expert-model"),
        (["--env", "Hopper-v5", "--expert-model", "missing.zip"], "--expert-model missing.zip: no such file"),
        (["--env", "Hopper-v5", "--expert-model", "EXPERT", "--demo-episodes", "11"], "at most 10 episodes"),
        (["--algos", "ppo"], "argument --algos: invalid choice"),
    ],
)
def test_bad_options(bench, tmp_path, capsys, argv, message):
    expert = tmp_path / "expert.zip"
    expert.write_bytes(b"")
    with pytest.raises(SystemExit):
        bench.parse_args([str(expert) if arg == "EXPERT" else arg for arg in argv])
    assert message in capsys.readouterr().err


def test_expert_model_takes_10_episodes_by_default(bench, tmp_path):
    expert = tmp_path / "expert.zip"
    expert.write_bytes(b"")
    args = bench.parse_args(["--env", "Hopper-v5", "--expert-model", str(expert), "--zoo-entry", "Hopper-v4"])
    assert args.demo_episodes == bench.MUJOCO_MAX_EPISODES == 10
    settings = bench.build_settings(args)
    assert settings["zoo_entry"] == "Hopper-v4" and settings["fd_entry"] == LANDER  # no shipped Hopper entry: borrowed
    assert settings["expert_algo"] is None
    assert bench.build_settings(bench.parse_args([*argv_of(expert), "--expert-algo", "ppo"]))["expert_algo"] == "ppo"


def argv_of(expert: Path) -> list[str]:
    return ["--env", "Hopper-v5", "--expert-model", str(expert)]


def test_an_expert_trained_under_vecnormalize_plays_with_its_statistics(bench, tmp_path):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_dqfd.common.experts import NormalizedExpert

    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=1, seed=0))
    PPO("MlpPolicy", env, n_steps=64, batch_size=32).save(tmp_path / "Pendulum-v1.zip")
    with pytest.raises(ValueError, match=r"give --expert-algo \(the algorithm that saved it: a2c, ppo, trpo\)"):
        bench.load_expert(str(tmp_path / "Pendulum-v1.zip"), None)  # a PPO zip does not tell PPO from A2C
    assert not isinstance(bench.load_expert(str(tmp_path / "Pendulum-v1.zip"), "ppo"), NormalizedExpert)
    (tmp_path / "Pendulum-v1").mkdir()
    env.save(str(tmp_path / "Pendulum-v1" / "vecnormalize.pkl"))  # rl-zoo3's layout
    expert = bench.load_expert(str(tmp_path / "Pendulum-v1.zip"), "ppo")
    assert isinstance(expert, NormalizedExpert) and isinstance(expert.model, PPO)


def test_each_method_gets_its_settings(bench):
    settings = bench.build_settings(bench.parse_args(["--pretrain-steps", "7", "--rlpd-gradient-steps", "3"]))
    sacfd = bench.method_hyperparameters("sacfd", settings)
    assert sacfd == shipped_hyperparameters(SACfD, LANDER) | {"pretrain_steps": 7}
    assert bench.method_hyperparameters("td3fd", settings) == shipped_hyperparameters(TD3fD, LANDER) | {"pretrain_steps": 7}
    assert bench.method_hyperparameters("rlpd", settings) == RLPD_HYPERPARAMS | {"gradient_steps": 3}
    sac = bench.method_hyperparameters("sac", settings)
    expected = zoo_hyperparameters("sac", LANDER)
    assert sac.keys() == expected.keys() and {key: repr(value) for key, value in sac.items()} == {
        key: repr(value) for key, value in expected.items()
    }
    td3 = bench.method_hyperparameters("td3", settings)
    assert isinstance(td3["action_noise"], NormalActionNoise) and td3["gamma"] == zoo_hyperparameters("td3", LANDER)["gamma"]
    # --learning-starts applies to every method
    settings["learning_starts"] = 123
    assert {bench.method_hyperparameters(method, settings)["learning_starts"] for method in bench.METHODS} == {123}
    with pytest.raises(ValueError, match="Unknown method 'ppo'"):
        bench.method_hyperparameters("ppo", settings)


def test_rlpd_label_says_what_was_cut(bench):
    assert bench.rlpd_label(RLPD_HYPERPARAMS["gradient_steps"], 1_000, 1_000) == "RLPD"
    assert bench.rlpd_label(2, 1_000, 1_000) == "RLPD (UTD 2)"
    assert bench.rlpd_label(2, 500, 1_000) == "RLPD (UTD 2, 500 steps)"


def test_a_discrete_task_or_a_missing_entry_is_refused_before_any_run(bench):
    settings = bench.build_settings(bench.parse_args([]))
    with pytest.raises(ValueError, match="CartPole-v1 has Discrete\\(2\\) actions: this benchmark needs a Box"):
        bench.check_task(settings | {"env_id": "CartPole-v1"}, ["sac"])
    with pytest.raises(ValueError, match="has no entry for 'Pendulum-v2'"):
        bench.check_task(settings | {"env_id": "Pendulum-v1", "zoo_entry": "Pendulum-v2"}, ["sac"])


def curve(label: str, seed: int, returns: list[float], pretrained: bool = True, step: int = 100) -> LearningCurve:
    return LearningCurve(
        label, seed, [step * index for index in range(len(returns))], returns, [0.0] * len(returns), 10.0, 1.0, [], pretrained
    )


def test_lander_goals_from_the_curves(bench):
    sacfd = [[210, 230, 250], [190, 260, 280], [220, 205, 300]]
    sac = [[-300, -100, 210], [-250, 50, 150], [-200, 220, 240]]
    curves = [curve("SACfD", seed, returns) for seed, returns in enumerate(sacfd)]
    curves += [curve("SAC (rl-zoo3)", seed, returns, pretrained=False) for seed, returns in enumerate(sac)]
    runs = [{"label": c.label, "method": "sacfd" if c.label == "SACfD" else "sac", "budget": 200} for c in curves]
    report = bench.goals(curves, runs, teacher=270.0, env_id=LANDER, return_floor=0.0)
    measures = report["methods"]["SACfD"]
    # Brute force: per seed the lowest evaluation from the first on, the median over seeds
    assert measures["lowest_eval_per_seed"] == [min(returns) for returns in sacfd]
    assert measures["median_lowest_eval"] == float(np.median([min(returns) for returns in sacfd]))
    assert measures["median_final"] == float(np.median([returns[-1] for returns in sacfd]))
    assert measures["retention_per_seed"] == pytest.approx([min(r[1:]) / r[0] for r in sacfd])
    assert measures["goals"] == {
        "final_above_teacher": float(np.median([r[-1] for r in sacfd])) > 270.0,
        "every_eval_at_200": float(np.median([min(r) for r in sacfd])) >= 200,
    }
    assert measures["median_env_steps_per_second"] == pytest.approx(200 / 10.0)
    # SAC: first evaluation >= 200 per seed (200, never, 100): the median counts "never" as infinitely many steps
    assert report["methods"]["SAC (rl-zoo3)"]["steps_to_threshold_per_seed"] == [200, None, 100]
    assert report["sac_first_eval_at_threshold"] == 200.0
    assert "goals" not in report["methods"]["SAC (rl-zoo3)"] and report["threshold"] == 200.0
    assert "SACfD: first eval" in bench.format_goals(report)


@pytest.mark.parametrize(
    "sac_returns, expected",
    [
        ([[0, 100, 200, 300, 400, 500]], True),  # SAC never reaches 810: its budget 500 counts, 500 / 5 >= SACfD's 100
        ([[0, 0, 0, 0, 0, 900]], True),  # SAC at step 500: SACfD's 100 <= 500 / 5
        ([[0, 0, 900, 900, 900, 900]], False),  # SAC at step 200: SACfD's 100 > 200 / 5
    ],
)
def test_mujoco_goal_a_fifth_of_sacs_steps(bench, sac_returns, expected):
    curves = [curve("SACfD", 0, [0, 850, 900, 900, 900, 900]), curve("SAC (rl-zoo3)", 0, sac_returns[0], False)]
    runs = [{"label": "SACfD", "method": "sacfd", "budget": 500}, {"label": "SAC (rl-zoo3)", "method": "sac", "budget": 500}]
    report = bench.goals(curves, runs, teacher=900.0, env_id="Hopper-v5", return_floor=0.0)
    assert report["threshold"] == pytest.approx(810.0)
    assert report["methods"]["SACfD"]["goals"]["within_a_fifth_of_sacs_steps"] is expected


def test_a_method_that_never_reaches_the_mujoco_threshold_fails_it(bench):
    curves = [curve("TD3fD", 0, [0, 10, 20]), curve("SAC (rl-zoo3)", 0, [0, 0, 0], False)]
    runs = [{"label": "TD3fD", "method": "td3fd", "budget": 200}, {"label": "SAC (rl-zoo3)", "method": "sac", "budget": 200}]
    report = bench.goals(curves, runs, teacher=100.0, env_id="Hopper-v5", return_floor=0.0)
    assert report["methods"]["TD3fD"]["goals"]["within_a_fifth_of_sacs_steps"] is False
    assert report["methods"]["TD3fD"]["median_steps_to_threshold"] is None


def test_the_teacher_is_measured_on_the_evaluation_env(bench):
    settings = bench.build_settings(bench.parse_args([]))
    teacher = bench.measure_teacher(settings, 2)
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_dqfd.common.experts import get_expert

    # The same two episodes, played by hand in the env the runs evaluate on (seed EVAL_SEED, reset once)
    env = make_vec_env(LANDER, n_envs=1, seed=bench.EVAL_SEED)
    observation, returns, total = env.reset(), [], 0.0
    expert = get_expert(LANDER)
    while len(returns) < 2:
        observation, reward, done, _ = env.step(np.stack([expert(observation[0])]))
        total += float(reward[0])
        if done[0]:
            returns.append(total)
            total = 0.0
    assert teacher["mean"] == pytest.approx(np.mean(returns)) and teacher["std"] == pytest.approx(np.std(returns))


@pytest.mark.slow
def test_small_run_at_a_tiny_budget(bench, tmp_path, capfd):
    argv = ["--small", "--budget", "400", "--eval-freq", "200", "--learning-starts", "100", "--pretrain-steps", "5"]
    argv += ["--rlpd-gradient-steps", "1", "--rlpd-budget", "300", "--teacher-episodes", "1", "--eval-episodes", "1"]
    report = bench.main([*argv, "--output-dir", str(tmp_path)])
    name = "bench_continuous_small_lunarlandercontinuous"
    results = json.loads((tmp_path / f"{name}.json").read_text())
    labels = [curve["label"] for curve in results["curves"]]
    assert labels == ["teacher (1 episodes)", "SACfD", "TD3fD", "RLPD (UTD 1, 300 steps)", "SAC (rl-zoo3)", "TD3 (rl-zoo3)"]
    for saved in results["curves"][1:]:
        budget = 300 if saved["label"].startswith("RLPD") else 400
        assert saved["timesteps"][0] == 0 and saved["timesteps"][-1] == budget
        assert saved["pretrained"] is (saved["label"] in ("SACfD", "TD3fD"))
    assert results["metadata"]["complete"] and set(report["goals"]["methods"]) == set(labels[1:])
    assert isinstance(report["goals"]["methods"]["SACfD"]["goals"]["every_eval_at_200"], bool)
    assert (tmp_path / f"{name}.png").exists() and (tmp_path / f"{name}.md").exists()
    assert not list(tmp_path.glob("*partial*"))
    printed = capfd.readouterr().out
    assert "lunarlandercontinuous SACfD seed 0: step 0/400 return" in printed  # the progress line of each evaluation


@pytest.mark.parametrize("file, env_id", [("ppo_hopper.yml", "Hopper"), ("ppo_halfcheetah.yml", "HalfCheetah")])
def test_expert_entries_are_rl_zoo3_ones_under_the_v5_id(file, env_id):
    import yaml

    zoo_file = Path(importlib.util.find_spec("rl_zoo3").origin).parent / "hyperparams" / "ppo.yml"
    ours = yaml.safe_load((BENCHMARKS / "experts" / file).read_text())
    assert list(ours) == [f"{env_id}-v5"]
    assert ours[f"{env_id}-v5"] == yaml.safe_load(zoo_file.read_text())[f"{env_id}-v4"]
