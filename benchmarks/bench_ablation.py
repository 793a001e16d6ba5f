"""
Ablation of DQfD's two Rainbow options: DQfD as shipped (``sb3_dqfd/hyperparams/dqfd.yml``), + noisy nets
(``policy_kwargs=dict(noisy=True)``), + a distributional head (``policy_kwargs=dict(n_quantiles=N)``) and both, side
by side on the same seeds, demonstrations and evaluation schedule as ``benchmarks/bench_dqfd.py`` (whose task
settings, expert demonstrations and evaluation frequency it imports):

* MountainCar-v0: 10 imperfect demonstrations (the scripted teacher scores about -120), 30k steps, threshold -110;
* LunarLander-v3: 20 demonstrations, 50k steps, threshold 200.

Variant settings: the shipped entry of the task, plus

* noisy: NoisyNet heads with the paper's ``sigma_0 = 0.5``; the entry's epsilon schedule
  (``exploration_initial_eps``, ``exploration_final_eps``, ``exploration_fraction``) is dropped, so that the noise
  alone explores (DQfD's default epsilon with a noisy network is 0);
* distributional: ``n_quantiles`` from rl-zoo3's tuned QR-DQN entry of the task (MountainCar 25, LunarLander 170).

Reported per task (medians over seeds): the table of :func:`sb3_dqfd.common.experiment.summarize` (steps and seconds
to the threshold, share of evaluations at it, final return, retention of the pre-trained policy from the task's
return floor, training time), and per variant the share of the evaluations after a run first reaches the threshold
that stay at or above it (``hold share``; a run that never reaches it, or reaches it at its last evaluation, has
none). Goal: on MountainCar, DQfD + noisy holds -110 at >= 50% of the evaluations after it first reaches it, in the
median seed (a seed without a hold share counts as 0). Every mode starts with the cost of each part: milliseconds per
gradient step (``train(gradient_steps=1)``, shipped batch 64 and [256, 256] network, a buffer of demonstrations and
agent data) and per acting step (``predict``) of every variant, timed in interleaved rounds inside one process.

The full ablation (4 variants x 2 tasks x 3 seeds; hours on 2 shared cores)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_ablation.py --seeds 3 --jobs 2

A quick check (1 seed, 2,000 steps per task, 500 pre-training updates, a few minutes)::

    OMP_NUM_THREADS=1 python benchmarks/bench_ablation.py --small --output-dir /tmp/ablation

Results: ``dqfd_ablation_{small,full}.json`` (curves, tables, goal, step costs; every finished run is saved at once to
``.partial.json``) and one PNG per task, in ``benchmarks/results`` or ``--output-dir``.
"""

import argparse
import json
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger

from sb3_dqfd.common.experiment import (
    RETURN_FLOORS,
    LearningCurve,
    format_table,
    plot_curves,
    run_in_processes,
    save_results,
    summarize,
    train_with_curve,
)
from sb3_dqfd.common.hyperparams import shipped_hyperparameters
from sb3_dqfd.common.utils import flush_denormal
from sb3_dqfd.dqfd import DQfD

sys.path.insert(0, str(Path(__file__).parent))
from bench_dqfd import EVAL_FREQ, RESULTS, TASKS, env_shortname, expert_demonstrations

ENVS = ["MountainCar-v0", "LunarLander-v3"]
#: The variants and what each adds to the shipped settings' ``policy_kwargs``
VARIANTS: dict[str, dict[str, bool]] = {
    "DQfD": dict(noisy=False, distributional=False),
    "DQfD + noisy": dict(noisy=True, distributional=False),
    "DQfD + distributional": dict(noisy=False, distributional=True),
    "DQfD + noisy + distributional": dict(noisy=True, distributional=True),
}
#: rl-zoo3's tuned QR-DQN ``n_quantiles`` (rl_zoo3/hyperparams/qrdqn.yml)
ZOO_QRDQN_N_QUANTILES = {"MountainCar-v0": 25, "LunarLander-v3": 170}
#: The epsilon schedule a noisy variant drops from the shipped entry: the noise explores
EPSILON_KEYS = ("exploration_initial_eps", "exploration_final_eps", "exploration_fraction")
#: The goal: on MountainCar, DQfD + noisy holds the threshold at this share of the evaluations after it first reaches it
HOLD_GOAL = 0.5
GOAL_VARIANT, GOAL_ENV = "DQfD + noisy", "MountainCar-v0"
SMALL = dict(seeds=1, budget=2_000, eval_freq=1_000, n_eval_episodes=5, pretrain_steps=500)


def variant_hyperparameters(variant: str, env_id: str, n_quantiles: int | None = None) -> dict[str, Any]:
    """
    The shipped DQfD settings of ``env_id`` with the variant's options.

    :param variant: a key of :data:`VARIANTS`
    :param env_id: the task
    :param n_quantiles: quantiles of a distributional variant (None: :data:`ZOO_QRDQN_N_QUANTILES`)
    :return: DQfD's keyword arguments
    """
    options = VARIANTS[variant]
    hyperparameters = shipped_hyperparameters(DQfD, env_id)
    policy_kwargs = dict(hyperparameters.get("policy_kwargs") or {})
    if options["noisy"]:
        policy_kwargs["noisy"] = True
        hyperparameters = {key: value for key, value in hyperparameters.items() if key not in EPSILON_KEYS}
    if options["distributional"]:
        policy_kwargs["n_quantiles"] = n_quantiles or ZOO_QRDQN_N_QUANTILES[env_id]
    return hyperparameters | {"policy_kwargs": policy_kwargs}


def run_one(job: tuple[str, str, int, int, dict[str, Any], int, int]) -> tuple[LearningCurve, dict[str, Any]]:
    """
    One training run in its own process (one torch thread): record the demonstrations (not timed), pre-train and
    train the variant, evaluating after pre-training and every ``eval_freq`` steps.

    :param job: variant, env id, seed, budget, DQfD's keyword arguments, evaluation frequency, evaluation episodes
    :return: the curve and the run's env id and share of a core
    """
    th.set_num_threads(1)
    variant, env_id, seed, budget, hyperparameters, eval_freq, n_eval_episodes = job
    wall, cpu = time.perf_counter(), time.process_time()
    demos = expert_demonstrations(env_id, TASKS[env_id]["n_demo_episodes"], seed)
    model = DQfD("MlpPolicy", env_id, demonstrations=demos, seed=seed, **hyperparameters)
    eval_env = make_vec_env(env_id, n_envs=1, seed=1_000 + seed)
    before_learning = partial(model.pretrain, model.pretrain_steps)
    curve = train_with_curve(
        model, variant, seed, budget, eval_env, eval_freq, n_eval_episodes, before_learning=before_learning
    )
    print(f"{env_id} {variant} seed {seed}: {np.round(curve.mean_returns, 1).tolist()}", flush=True)
    return curve, {"env_id": env_id, "cpu_share": (time.process_time() - cpu) / (time.perf_counter() - wall)}


def hold_share(curve: LearningCurve, threshold: float) -> float | None:
    """
    :param curve: a run's evaluations
    :param threshold: the return to hold
    :return: the share of the evaluations after the first one at ``threshold`` that are at or above it; None if no
        evaluation reaches it or the first that does is the last
    """
    returns = np.asarray(curve.mean_returns)
    reached = np.flatnonzero(returns >= threshold)
    if len(reached) == 0 or reached[0] == len(returns) - 1:
        return None
    return float(np.mean(returns[reached[0] + 1 :] >= threshold))


def hold_summary(curves: list[LearningCurve], threshold: float) -> dict[str, dict[str, Any]]:
    """Per variant: the hold share of each seed and the median, a seed without one counting as 0."""
    summary = {}
    for variant in dict.fromkeys(curve.label for curve in curves):
        shares = [hold_share(curve, threshold) for curve in curves if curve.label == variant]
        summary[variant] = {
            "hold_share_per_seed": shares,
            "median_hold_share": float(np.median([0.0 if share is None else share for share in shares])),
        }
    return summary


def step_costs(
    env_id: str, n_quantiles: int | None, rounds: int = 7, steps: int = 50, warmup_steps: int = 500
) -> dict[str, Any]:
    """
    Milliseconds per gradient step and per acting step of every variant, with the task's shipped settings.

    Each model gets the task's demonstrations and ``warmup_steps`` steps of its own interaction (which also warm it
    up); then, in interleaved rounds of ``steps`` calls, ``train(gradient_steps=1)`` and ``predict`` of one observation
    (the acting of ``learn()``, ``deterministic=False``) are timed, denormals flushed as in ``learn()``. Each figure is
    the median over rounds of the round's mean, so other processes on a shared machine hit every variant alike.

    :return: per variant the ms of a gradient step and of an acting step and their ratio to DQfD's; the share of a
        core the process had (below ~0.9 the machine was loaded: absolute figures are inflated, ratios hold better)
    """
    th.set_num_threads(1)
    demos = expert_demonstrations(env_id, TASKS[env_id]["n_demo_episodes"], 0)
    models = {}
    for variant in VARIANTS:
        settings = variant_hyperparameters(variant, env_id, n_quantiles) | dict(pretrain_steps=0, seed=0)
        model = DQfD("MlpPolicy", env_id, demonstrations=demos, **settings)
        model.learn(warmup_steps)
        model.set_logger(Logger(folder=None, output_formats=[]))
        models[variant] = model
    observation = models["DQfD"].observation_space.sample()
    train_ms: dict[str, list[float]] = {variant: [] for variant in models}
    act_ms: dict[str, list[float]] = {variant: [] for variant in models}
    wall, cpu = time.perf_counter(), time.process_time()
    with flush_denormal():
        for _ in range(rounds):
            for variant, model in models.items():
                start = time.perf_counter()
                for _ in range(steps):
                    model.train(gradient_steps=1, batch_size=model.batch_size)
                train_ms[variant].append(1e3 * (time.perf_counter() - start) / steps)
                start = time.perf_counter()
                for _ in range(steps):
                    model.predict(observation, deterministic=False)
                act_ms[variant].append(1e3 * (time.perf_counter() - start) / steps)
    result: dict[str, Any] = {
        "env_id": env_id,
        "batch_size": models["DQfD"].batch_size,
        "rounds": rounds,
        "steps_per_round": steps,
        "cpu_share": (time.process_time() - cpu) / (time.perf_counter() - wall),
    }
    base_train, base_act = float(np.median(train_ms["DQfD"])), float(np.median(act_ms["DQfD"]))
    for variant in models:
        train, act = float(np.median(train_ms[variant])), float(np.median(act_ms[variant]))
        result[variant] = {
            "n_quantiles": models[variant].q_net.n_quantiles,
            "gradient_step_ms": train,
            "acting_step_ms": act,
            "gradient_step_ratio": train / base_train,
            "acting_step_ratio": act / base_act,
        }
    return result


def format_step_costs(costs: dict[str, Any]) -> str:
    """A Markdown table of :func:`step_costs`."""
    lines = [
        f"{costs['env_id']}: ms per step, batch {costs['batch_size']}, median of {costs['rounds']} interleaved rounds of "
        f"{costs['steps_per_round']}; this process had {costs['cpu_share']:.2f} of a core (1.0: an idle machine)",
        "",
        "| variant | quantiles | gradient step ms | x DQfD | acting step ms | x DQfD |",
        "|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        row = costs[variant]
        lines.append(
            f"| {variant} | {row['n_quantiles'] or '-'} | {row['gradient_step_ms']:.2f} | {row['gradient_step_ratio']:.2f} "
            f"| {row['acting_step_ms']:.3f} | {row['acting_step_ratio']:.2f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--small", action="store_true", help="a quick check: " + ", ".join(f"{k}={v}" for k, v in SMALL.items())
    )
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3, 1 with --small)")
    parser.add_argument("--envs", nargs="+", default=ENVS, choices=ENVS, help="tasks to run")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), help="variants to run")
    parser.add_argument("--timesteps", type=int, default=None, help="override the budget of every task")
    parser.add_argument("--n-quantiles", type=int, default=None, help="quantiles of the distributional variants")
    parser.add_argument("--jobs", type=int, default=1, help="training runs in parallel, one process and torch thread each")
    parser.add_argument("--output-dir", type=Path, default=RESULTS, help="where the JSON and PNGs go")
    parser.add_argument("--no-step-costs", action="store_true", help="skip the timing of a step per variant")
    args = parser.parse_args(argv)
    args.seeds = args.seeds if args.seeds is not None else (SMALL["seeds"] if args.small else 3)
    for name in ("seeds", "jobs", "timesteps", "n_quantiles"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    th.set_num_threads(1)
    command = "OMP_NUM_THREADS=1 python benchmarks/bench_ablation.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print("reproduce: " + command, flush=True)
    output: Path = args.output_dir
    name = f"dqfd_ablation_{'small' if args.small else 'full'}"
    report: dict[str, Any] = {
        "command": command,
        "machine": f"{platform.processor() or platform.machine()}, torch threads 1, load {os.getloadavg()[0]:.1f} at start",
        "step_costs": [],
    }
    if not args.no_step_costs:
        for env_id in args.envs:
            report["step_costs"].append(step_costs(env_id, args.n_quantiles))
            print("\n" + format_step_costs(report["step_costs"][-1]) + "\n", flush=True)
    jobs, budgets = [], {}
    for env_id in args.envs:
        task = TASKS[env_id]
        budgets[env_id] = args.timesteps or (SMALL["budget"] if args.small else task["full"])
        eval_freq, n_eval_episodes = (
            (SMALL["eval_freq"], SMALL["n_eval_episodes"]) if args.small else (EVAL_FREQ, task["n_eval_episodes"])
        )
        for variant in args.variants:
            hyperparameters = variant_hyperparameters(variant, env_id, args.n_quantiles)
            if args.small:
                hyperparameters["pretrain_steps"] = SMALL["pretrain_steps"]
            for seed in range(args.seeds):
                jobs.append((variant, env_id, seed, budgets[env_id], hyperparameters, eval_freq, n_eval_episodes))
    report["budgets"] = budgets
    report["hyperparameters"] = {f"{job[1]} {job[0]}": {key: str(value) for key, value in job[4].items()} for job in jobs}
    partial_path = output / f"{name}.partial.json"

    def save_partial(finished: list[tuple[LearningCurve, dict[str, Any]]]) -> None:
        save_results(partial_path, [curve for curve, _ in finished], {"command": command, "complete": False})

    results = run_in_processes(run_one, jobs, args.jobs, on_result=save_partial)
    report["runs"] = [run for _, run in results]
    all_curves: list[LearningCurve] = []
    for env_id in args.envs:
        threshold = TASKS[env_id]["threshold"]
        curves = [curve for (curve, run), job in zip(results, jobs, strict=True) if job[1] == env_id]
        all_curves += curves
        rows = summarize(curves, threshold, RETURN_FLOORS.get(env_id, 0.0))
        holds = hold_summary(curves, threshold)
        print(f"\n{env_id}, {budgets[env_id]:,} steps, {args.seeds} seed(s)\n{format_table(rows, threshold)}", flush=True)
        print("hold share (evaluations >= threshold after the first one there): " + json.dumps(holds), flush=True)
        report[env_id] = {"summary": rows, "hold": holds}
        plot_curves(curves, output / f"{name}_{env_shortname(env_id)}.png", f"{env_id}: DQfD ablation", threshold)
    if GOAL_ENV in args.envs and GOAL_VARIANT in args.variants:
        median = report[GOAL_ENV]["hold"][GOAL_VARIANT]["median_hold_share"]
        report["goal"] = {
            "statement": f"{GOAL_VARIANT} on {GOAL_ENV} holds {TASKS[GOAL_ENV]['threshold']} at >= {HOLD_GOAL:.0%} of "
            "the evaluations after it first reaches it (median seed)",
            "median_hold_share": median,
            "met": median >= HOLD_GOAL,
        }
        print(json.dumps(report["goal"]), flush=True)
    save_results(output / f"{name}.json", all_curves, report | {"complete": True})
    partial_path.unlink(missing_ok=True)
    return report


if __name__ == "__main__":
    main()
