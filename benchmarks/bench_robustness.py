"""
Robustness benchmark for DomainRandomization: the same PPO trained on CartPole-v1 with nominal dynamics and with pole
mass/length randomization, both evaluated on a grid of perturbed dynamics (pole length and pole mass factors).

Writes a table to stdout and JSON + PNG to benchmarks/results/.

    python benchmarks/bench_robustness.py            # 1 seed, 50k steps per model (~3 min on 2 busy cores)
    python benchmarks/bench_robustness.py --full     # 3 seeds, 100k steps per model, 20 episodes per grid point
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import LinearSchedule

from sb3_dqfd.common.experiment import exit_on_ctrl_c
from sb3_dqfd.wrappers import DomainRandomization, cartpole_specs

RESULTS = Path(__file__).resolve().parent / "results"
# Training ranges of the randomized model (factors of the nominal pole mass 0.1 kg and half-length 0.5 m)
TRAIN_MASSPOLE = (0.5, 2.0)
TRAIN_LENGTH = (0.5, 2.0)
# Evaluation grid: factors inside and outside the training ranges, one parameter perturbed at a time
GRID = {
    "length": [0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 4.0],
    "masspole": [0.25, 0.5, 1.0, 2.0, 4.0, 8.0],
}


def make_env(n_envs: int, seed: int, randomize: bool, masspole: tuple[float, float], length: tuple[float, float]) -> Any:
    """CartPole-v1 with the pole mass/length drawn per episode from the given factor ranges (fixed if low == high)."""
    specs = cartpole_specs(masspole=masspole, length=length)
    wrapper_kwargs = {"specs": specs, "enabled": randomize}
    return make_vec_env(
        "CartPole-v1",
        n_envs=n_envs,
        seed=seed,
        wrapper_class=DomainRandomization,
        wrapper_kwargs=wrapper_kwargs,
    )


def train(seed: int, randomize: bool, steps: int) -> tuple[PPO, float]:
    """PPO with rl-zoo3's tuned CartPole-v1 hyperparameters."""
    env = make_env(8, seed, randomize, TRAIN_MASSPOLE, TRAIN_LENGTH)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=LinearSchedule(1e-3, 0.0, 1.0),
        clip_range=LinearSchedule(0.2, 0.0, 1.0),
        seed=seed,
        device="cpu",
    )
    start = time.perf_counter()
    model.learn(steps)
    return model, time.perf_counter() - start


def evaluate_grid(model: PPO, episodes: int) -> dict[str, list[float]]:
    """Mean deterministic return at each grid point (same evaluation seeds for every model)."""
    returns: dict[str, list[float]] = {}
    for parameter, factors in GRID.items():
        returns[parameter] = []
        for factor in factors:
            fixed = (factor, factor)
            masspole, length = (fixed, (1.0, 1.0)) if parameter == "masspole" else ((1.0, 1.0), fixed)
            env = make_env(min(episodes, 10), 10_000, True, masspole, length)
            mean, _ = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=True)
            returns[parameter].append(float(mean))
    return returns


def summarize(results: dict[str, list[dict[str, list[float]]]]) -> dict[str, dict[str, float]]:
    """Medians over seeds, then the mean and the worst case over the grid, and the value at nominal dynamics."""
    summary = {}
    for name, per_seed in results.items():
        medians = {parameter: np.median([run[parameter] for run in per_seed], axis=0) for parameter in GRID}
        everything = np.concatenate(list(medians.values()))
        summary[name] = {
            "grid_mean": float(everything.mean()),
            "grid_worst": float(everything.min()),
            "nominal": float(medians["length"][GRID["length"].index(1.0)]),
            **{f"{parameter}_mean": float(values.mean()) for parameter, values in medians.items()},
        }
    return summary


def plot(results: dict[str, list[dict[str, list[float]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(GRID), figsize=(5 * len(GRID), 4), sharey=True)
    train_ranges = {"length": TRAIN_LENGTH, "masspole": TRAIN_MASSPOLE}
    for axis, parameter in zip(axes, GRID, strict=True):
        axis.axvspan(*train_ranges[parameter], color="grey", alpha=0.15, label="randomized training range")
        for name, per_seed in results.items():
            values = np.array([run[parameter] for run in per_seed])
            axis.plot(GRID[parameter], np.median(values, axis=0), marker="o", label=f"{name} (median of {len(values)})")
            axis.fill_between(GRID[parameter], values.min(axis=0), values.max(axis=0), alpha=0.2)
        axis.set_xscale("log")
        axis.set_xticks(GRID[parameter], [f"{factor:g}" for factor in GRID[parameter]])
        axis.minorticks_off()
        axis.set_xlabel(f"pole {parameter} factor (x nominal)")
        axis.set_title(f"CartPole-v1, PPO: return vs pole {parameter}")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("mean deterministic return")
    axes[0].legend(loc="lower center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="3 seeds, 100k steps, 20 episodes per grid point")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 1, 3 with --full)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per model (default 50k, 100k with --full)")
    parser.add_argument("--episodes", type=int, default=None, help="episodes per grid point (default 10, 20 with --full)")
    args = parser.parse_args()
    n_seeds = args.seeds or (3 if args.full else 1)
    steps = args.steps or (100_000 if args.full else 50_000)
    episodes = args.episodes or (20 if args.full else 10)
    torch.set_num_threads(1)
    command = "OMP_NUM_THREADS=1 python benchmarks/bench_robustness.py " + " ".join(sys.argv[1:])

    results: dict[str, list[dict[str, list[float]]]] = {"nominal": [], "randomized": []}
    train_seconds: dict[str, list[float]] = {"nominal": [], "randomized": []}
    for seed in range(n_seeds):
        for name in results:
            model, seconds = train(seed, randomize=name == "randomized", steps=steps)
            results[name].append(evaluate_grid(model, episodes))
            train_seconds[name].append(seconds)
            print(f"seed {seed} {name:>10}: trained {steps} steps in {seconds:.0f} s", flush=True)

    summary = summarize(results)
    print(f"\nMean deterministic return, median over {n_seeds} seed(s), {episodes} episodes per point, {steps} steps")
    for parameter, factors in GRID.items():
        print(f"\npole {parameter} factor | " + " | ".join(f"{factor:>5}" for factor in factors))
        for name, per_seed in results.items():
            medians = np.median([run[parameter] for run in per_seed], axis=0)
            print(f"{name:>20} | " + " | ".join(f"{value:5.0f}" for value in medians))
    print("\nsummary          | grid mean | grid worst | nominal")
    for name, values in summary.items():
        print(f"{name:>16} | {values['grid_mean']:9.1f} | {values['grid_worst']:10.1f} | {values['nominal']:7.1f}")
    ratio = summary["randomized"]["grid_mean"] / max(summary["nominal"]["grid_mean"], 1e-9)
    print(f"randomized / nominal grid-mean return: {ratio:.2f}")
    print(f"\nreproduce: {command}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "robustness_full" if args.full else "robustness"
    payload = {
        "command": command,
        "config": {"env": "CartPole-v1", "algo": "PPO (rl-zoo3 CartPole hyperparameters)", "steps": steps, "seeds": n_seeds},
        "train_ranges": {"masspole": TRAIN_MASSPOLE, "length": TRAIN_LENGTH},
        "grid": GRID,
        "episodes_per_point": episodes,
        "returns": results,
        "train_seconds": train_seconds,
        "summary": summary,
        "randomized_over_nominal_grid_mean": ratio,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
    }
    (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=2))
    plot(results, RESULTS / f"{stem}.png")
    print(f"wrote {RESULTS / stem}.json and .png")


if __name__ == "__main__":
    exit_on_ctrl_c(main)
