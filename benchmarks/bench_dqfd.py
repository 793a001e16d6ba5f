"""
DQfD (the shipped sb3_dqfd/hyperparams/dqfd.yml) against SB3 DQN (rl-zoo3 tuned) side by side, plus the cost of one
gradient step.

Per task and seed: record expert demonstrations, pre-train DQfD and evaluate it (10 deterministic episodes, 20 on
MountainCar) right after pre-training and every 2,500 environment steps; train DQN with rl-zoo3's hyperparameters
on the same budget and evaluation schedule. Medians over seeds; JSON and PNG in ``benchmarks/results/``.

Small default budget (a few minutes on 2 cores)::

    OMP_NUM_THREADS=1 python benchmarks/bench_dqfd.py

The full run behind the README numbers (hours on 2 shared cores)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_dqfd.py --full

Only the cost of one gradient step, at another network size (~15 s)::

    OMP_NUM_THREADS=1 python benchmarks/bench_dqfd.py --cost-only --cost-net-arch 64 64
"""

import argparse
import json
import platform
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import yaml
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env

from sb3_dqfd.common.demonstrations import Demonstrations, record_demonstrations
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
from sb3_dqfd.common.experts import get_expert
from sb3_dqfd.common.hyperparams import parse_hyperparameter, shipped_hyperparameters
from sb3_dqfd.dqfd import DQfD

RESULTS = Path(__file__).parent / "results"

# Task settings: demonstrations, threshold, evaluation episodes and budgets (small default, --full). DQfD's
# hyperparameters are the shipped ones (sb3_dqfd/hyperparams/dqfd.yml), as rl-zoo3 keeps them per environment.
TASKS: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(n_demo_episodes=5, threshold=475.0, n_eval_episodes=10, small=10_000, full=50_000),
    "MountainCar-v0": dict(n_demo_episodes=10, threshold=-110.0, n_eval_episodes=20, small=10_000, full=30_000),
    "LunarLander-v3": dict(n_demo_episodes=20, threshold=200.0, n_eval_episodes=10, small=5_000, full=50_000),
}
EVAL_FREQ = 2_500


def expert_demonstrations(env_id: str, n_episodes: int, seed: int) -> Demonstrations:
    return record_demonstrations(get_expert(env_id), gym.make(env_id), n_episodes, seed=10_000 * (seed + 1))


def teacher_score(env_id: str, n_episodes: int, seed: int) -> float:
    """Mean return of the scripted expert on the evaluation seeds used for the agents' final score."""
    demos = record_demonstrations(get_expert(env_id), gym.make(env_id), n_episodes, seed=50_000 + seed)
    return float(demos.episode_returns.mean())


def final_score(model: Any, env_id: str, n_episodes: int, seed: int) -> float:
    env = gym.make(env_id)
    returns = []
    for episode in range(n_episodes):
        observation, _ = env.reset(seed=50_000 + seed + episode)
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(observation, deterministic=True)
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def run_dqfd(env_id: str, seed: int, budget: int, hyperparameters: dict[str, Any]) -> tuple[LearningCurve, dict[str, Any]]:
    """Pre-train and train DQfD with the given hyperparameters on one seed."""
    task = TASKS[env_id]
    demos = expert_demonstrations(env_id, task["n_demo_episodes"], seed)
    extra: dict[str, Any] = {f"demo_return_seed{seed}": float(demos.episode_returns.mean())}
    eval_env = make_vec_env(env_id, n_envs=1, seed=1_000 + seed)
    model = DQfD("MlpPolicy", env_id, demonstrations=demos, seed=seed, **hyperparameters)
    curve = train_with_curve(
        model,
        "DQfD",
        seed,
        budget,
        eval_env,
        EVAL_FREQ,
        task["n_eval_episodes"],
        before_learning=partial(model.pretrain, model.pretrain_steps),
    )
    if env_id == "LunarLander-v3":
        extra[f"dqfd_final100_seed{seed}"] = final_score(model, env_id, 100, seed)
        extra[f"teacher_final100_seed{seed}"] = teacher_score(env_id, 100, seed)
    return curve, extra


def run_dqn(env_id: str, seed: int, budget: int) -> tuple[LearningCurve, dict[str, Any]]:
    """Train SB3 DQN with rl-zoo3's hyperparameters on one seed, same budget and evaluation schedule."""
    eval_env = make_vec_env(env_id, n_envs=1, seed=1_000 + seed)
    dqn = DQN("MlpPolicy", env_id, seed=seed, **ZOO_DQN_HYPERPARAMS[env_id])
    return train_with_curve(dqn, "DQN (rl-zoo3)", seed, budget, eval_env, EVAL_FREQ, TASKS[env_id]["n_eval_episodes"]), {}


def run_one(job: tuple[str, str, int, int, dict[str, Any]]) -> tuple[LearningCurve, dict[str, Any]]:
    """One training run in its own process: one torch thread, so parallel runs give the same curves as serial ones."""
    th.set_num_threads(1)
    method, env_id, seed, budget, hyperparameters = job
    curve, extra = run_dqfd(env_id, seed, budget, hyperparameters) if method == "DQfD" else run_dqn(env_id, seed, budget)
    print(f"{env_id} {curve.label} seed {seed}: {np.round(curve.mean_returns, 1).tolist()}", flush=True)
    return curve, extra


def run_task(
    env_id: str, seeds: list[int], budget: int, run_dqn: bool, jobs: int, hyperparameters: dict[str, Any], partial: Path
) -> tuple[list[LearningCurve], dict[str, Any]]:
    """
    All runs of one task, ``jobs`` processes at a time (DQfD with ``hyperparameters`` and DQN side by side).

    Each finished run is saved to ``partial`` at once, so that stopping a run of hours keeps the runs that ended.
    """
    methods = ["DQfD", "DQN"] if run_dqn else ["DQfD"]
    runs = [(method, env_id, seed, budget, hyperparameters) for seed in seeds for method in methods]

    def save_partial(finished: list[tuple[LearningCurve, dict[str, Any]]]) -> None:
        save_results(partial, [curve for curve, _ in finished], {"command": " ".join(sys.argv), "complete": False})

    results = run_in_processes(run_one, runs, jobs, on_result=save_partial)
    curves = [curve for curve, _ in results]
    extra = {key: value for _, run_extra in results for key, value in run_extra.items()}
    return curves, extra


def criteria(env_id: str, curves: list[LearningCurve], extra: dict[str, Any]) -> dict[str, Any]:
    """The task's success criteria for DQfD, evaluated on the curves (all evaluations after pre-training)."""
    threshold = TASKS[env_id]["threshold"]
    runs = [curve for curve in curves if curve.label == "DQfD"]
    shares = [run.share_at_or_above(threshold) for run in runs]
    result: dict[str, Any] = {"share_of_evals_at_threshold_per_seed": shares}
    if env_id == "CartPole-v1":
        median_run = runs[int(np.argsort(shares)[len(shares) // 2])]
        result["every_seed_at_least_90pct"] = all(share >= 0.9 for share in shares)
        result["median_seed_all_evals"] = median_run.share_at_or_above(threshold) == 1.0
    elif env_id == "MountainCar-v0":
        result["first_step_at_threshold_per_seed"] = [run.steps_to_threshold(threshold) for run in runs]
    else:
        result["every_eval_at_least_200_per_seed"] = [share == 1.0 for share in shares]
        seeds = [run.seed for run in runs]
        result["final100_dqfd"] = [extra.get(f"dqfd_final100_seed{seed}") for seed in seeds]
        result["final100_teacher"] = [extra.get(f"teacher_final100_seed{seed}") for seed in seeds]
    return result


def gradient_step_cost(n_steps: int = 300, batch_size: int = 64, net_arch: tuple[int, ...] = (256, 256)) -> dict[str, float]:
    """
    Seconds per gradient step of DQfD and SB3 DQN on CartPole, same network width and batch, buffers filled alike.

    DQfD as shipped (dueling head, fused Adam) against SB3 DQN as shipped (plain head, Adam's per-tensor loop), and
    DQfD with ``dueling=False`` (the same network as DQN) against DQN given the same fused Adam: that ratio is the
    cost of DQfD's own work (prioritized sampling of 1-step and n-step fields, double-Q on both, margin loss, L2,
    priority update). All four are timed in interleaved rounds and the median round is kept: other processes on a
    shared machine hit them alike.
    """
    demos = expert_demonstrations("CartPole-v1", 5, 0)
    common = dict(batch_size=batch_size, learning_starts=10_000, seed=0)
    arch = dict(net_arch=list(net_arch))
    models = {
        "DQfD": DQfD("MlpPolicy", "CartPole-v1", demonstrations=demos, pretrain_steps=0, policy_kwargs=arch, **common),
        "DQfD plain head": DQfD(
            "MlpPolicy",
            "CartPole-v1",
            demonstrations=demos,
            pretrain_steps=0,
            policy_kwargs=dict(arch, dueling=False),
            **common,
        ),
        "DQN": DQN("MlpPolicy", "CartPole-v1", policy_kwargs=arch, **common),
        "DQN fused Adam": DQN(
            "MlpPolicy", "CartPole-v1", policy_kwargs=dict(arch, optimizer_kwargs=dict(fused=True)), **common
        ),
    }
    for model in models.values():
        model.learn(2_000)  # fills the buffers with agent data; no update yet (learning_starts)
        model.train(gradient_steps=20, batch_size=batch_size)  # warm-up
    rounds: dict[str, list[float]] = {label: [] for label in models}
    for _ in range(5):
        for label, model in models.items():
            start = time.perf_counter()
            model.train(gradient_steps=n_steps // 5, batch_size=batch_size)
            rounds[label].append((time.perf_counter() - start) / (n_steps // 5))
    timings = {label: float(np.median(seconds)) for label, seconds in rounds.items()}
    timings["ratio"] = timings["DQfD"] / timings["DQN"]
    timings["ratio_same_network_and_optimizer"] = timings["DQfD plain head"] / timings["DQN fused Adam"]
    return timings


def parse_overrides(parser: argparse.ArgumentParser, pairs: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` to keyword arguments, each value read as in ``dqfd.yml`` (YAML, ``lin_<x>``, ``dict(...)``)."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            parser.error(f"--set expects KEY=VALUE, got {pair!r}")
        overrides[key] = parse_hyperparameter(key, yaml.safe_load(value), "--set")
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="full budgets (CartPole 50k, MountainCar 30k, LunarLander 50k)")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (>= 3 for the reported medians)")
    parser.add_argument("--envs", nargs="+", default=list(TASKS), choices=list(TASKS), help="tasks to run")
    parser.add_argument("--no-dqn", action="store_true", help="skip the SB3 DQN baseline")
    parser.add_argument("--timesteps", type=int, default=None, help="override the budget of every task")
    parser.add_argument("--jobs", type=int, default=1, help="training runs in parallel, one process and torch thread each")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="try DQfD hyperparameters other than the shipped ones, read as in dqfd.yml "
        "(e.g. target_update_interval=2000 learning_rate=lin_3e-4); the report records them",
    )
    parser.add_argument(
        "--cost-net-arch", type=int, nargs="+", default=[256, 256], help="hidden layers of the networks the cost line times"
    )
    parser.add_argument("--cost-only", action="store_true", help="only time the gradient step, train nothing")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    overrides = parse_overrides(parser, args.set)
    th.set_num_threads(1)
    print("reproduce: OMP_NUM_THREADS=1 python " + " ".join(sys.argv), flush=True)

    report: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, torch threads 1, shared 2-core machine",
    }
    cost = gradient_step_cost(net_arch=tuple(args.cost_net_arch))
    report["gradient_step_seconds"] = cost
    print(
        f"gradient step (CartPole, {args.cost_net_arch}, batch 64): DQfD {cost['DQfD'] * 1e3:.2f} ms, "
        f"DQN {cost['DQN'] * 1e3:.2f} ms (ratio {cost['ratio']:.2f}), "
        f"DQfD with a plain head {cost['DQfD plain head'] * 1e3:.2f} ms "
        f"vs DQN with fused Adam {cost['DQN fused Adam'] * 1e3:.2f} ms "
        f"(ratio {cost['ratio_same_network_and_optimizer']:.2f})",
        flush=True,
    )
    if args.cost_only:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "full" if args.full else "small"
    for env_id in args.envs:
        task = TASKS[env_id]
        budget = args.timesteps or (task["full"] if args.full else task["small"])
        seeds = list(range(args.seeds))
        # Read once here: the runs get the values, so editing dqfd.yml during a run cannot change it
        hyperparameters = shipped_hyperparameters(DQfD, env_id) | overrides
        # Runs with --set never overwrite the results of the shipped settings
        name = f"dqfd_{env_id.split('-')[0].lower()}_{suffix}" + ("_custom" if overrides else "")
        partial = RESULTS / f"{name}.partial.json"
        curves, extra = run_task(env_id, seeds, budget, not args.no_dqn, args.jobs, hyperparameters, partial)
        rows = summarize(curves, task["threshold"])
        print(f"\n{env_id}, {budget:,} steps, {args.seeds} seeds\n{format_table(rows, task['threshold'])}", flush=True)
        checks = criteria(env_id, curves, extra)
        print(json.dumps(checks), flush=True)
        plot_curves(
            curves,
            RESULTS / f"{name}.png",
            f"{env_id}: DQfD (hyperparams/dqfd.yml) vs DQN (rl-zoo3)",
            task["threshold"],
        )
        report[env_id] = {
            "command": report["command"],
            "budget": budget,
            "dqfd_hyperparameters": {key: str(value) for key, value in hyperparameters.items()},
            "dqfd_overrides": {key: str(value) for key, value in overrides.items()},
            "summary": rows,
            "criteria": checks,
            "extra": extra,
        }
        report[env_id]["curves"] = [curve.__dict__ for curve in curves]
        (RESULTS / f"{name}.json").write_text(json.dumps(report[env_id] | {"gradient_step_seconds": cost}, indent=2))
        partial.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
