"""
TransformerA2C (the shipped ``sb3_dqfd/hyperparams/transformer_a2c.yml`` entry) against SB3 A2C with rl-zoo3's
MuJoCo settings on plain Walker2d-v5, side by side.

Per seed: TransformerA2C with the shipped entry (10 envs x 32 steps, separate actor and critic encoders) and A2C as
rl-zoo3 trains it on Walker2d (``hyperparams/a2c.yml``: one env, SB3's A2C defaults, ``normalize: true``, i.e.
``VecNormalize`` on observations and rewards). Both get the same budget and a 10-episode deterministic evaluation on
the unrandomized env every ``--eval-freq`` steps (A2C's evaluation env shares the training observation statistics).
Reported: medians over seeds of the last and the best evaluation, and training speed with evaluation excluded.
rl-zoo3 publishes A2C Walker2d 582 at 1M steps (a single final evaluation, Walker2d-v3/v4).

Small default (100k steps, 2 seeds)::

    OMP_NUM_THREADS=1 python benchmarks/bench_walker2d.py

The run behind the README numbers (1M steps, 3 seeds; ~3 CPU-hours, A2C with one env trains at ~400 steps/s)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_walker2d.py --full --jobs 2
"""

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import A2C
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_dqfd.common.experiment import (
    LearningCurve,
    format_table,
    plot_curves,
    run_in_processes,
    save_results,
    summarize,
    train_with_curve,
)
from sb3_dqfd.common.hyperparams import HYPERPARAMS_DIR, load_hyperparameters
from sb3_dqfd.transformer_a2c import TransformerA2C

ENV_ID = "Walker2d-v5"
RESULTS = Path(__file__).parent / "results"
N_EVAL_EPISODES = 10
METHODS = ("TransformerA2C", "A2C (rl-zoo3)")


def make_transformer_a2c(seed: int) -> tuple[BaseAlgorithm, VecEnv]:
    """TransformerA2C with the shipped Walker2d-v5 entry, and its evaluation env."""
    entry = load_hyperparameters(HYPERPARAMS_DIR / "transformer_a2c.yml", ENV_ID, TransformerA2C)
    n_envs, policy = entry.pop("n_envs"), entry.pop("policy")
    entry.pop("n_timesteps")
    model = TransformerA2C(policy, make_vec_env(ENV_ID, n_envs=n_envs, seed=seed), seed=seed, **entry)
    return model, make_vec_env(ENV_ID, n_envs=1, seed=1_000 + seed)


def make_a2c(seed: int) -> tuple[BaseAlgorithm, VecEnv]:
    """A2C as rl-zoo3 trains it on MuJoCo, and an evaluation env that shares its observation statistics."""
    train_env = VecNormalize(make_vec_env(ENV_ID, n_envs=1, seed=seed))
    eval_env = VecNormalize(make_vec_env(ENV_ID, n_envs=1, seed=1_000 + seed), training=False, norm_reward=False)
    # The same RunningMeanStd object: training updates it in place, evaluation always sees the current statistics
    eval_env.obs_rms = train_env.obs_rms
    return A2C("MlpPolicy", train_env, seed=seed), eval_env


def run_one(job: tuple[str, int, int, int]) -> LearningCurve:
    """One training run in its own process with one torch thread (parallel runs give the same curves as serial)."""
    th.set_num_threads(1)
    method, seed, budget, eval_freq = job
    model, eval_env = make_transformer_a2c(seed) if method == "TransformerA2C" else make_a2c(seed)
    curve = train_with_curve(model, method, seed, budget, eval_env, eval_freq, N_EVAL_EPISODES)
    print(f"{method} seed {seed}: {np.round(curve.mean_returns, 1).tolist()}", flush=True)
    return curve


def best_returns(curves: list[LearningCurve]) -> dict[str, float]:
    """Median over seeds of each method's best evaluation."""
    return {
        method: float(np.median([max(curve.mean_returns) for curve in curves if curve.label == method]))
        for method in dict.fromkeys(curve.label for curve in curves)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="1M steps per run and 3 seeds instead of 100k and 2")
    parser.add_argument("--timesteps", type=int, default=None, help="override the budget per run")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: 3 with --full, else 2)")
    parser.add_argument("--eval-freq", type=int, default=None, help="evaluate every this many steps (default: budget/20)")
    parser.add_argument("--jobs", type=int, default=1, help="training runs in parallel, one process and torch thread each")
    args = parser.parse_args()
    budget = args.timesteps or (1_000_000 if args.full else 100_000)
    n_seeds = args.seeds or (3 if args.full else 2)
    eval_freq = args.eval_freq or budget // 20
    if min(budget, n_seeds, eval_freq, args.jobs) < 1:
        parser.error("--timesteps, --seeds, --eval-freq and --jobs must be at least 1")
    th.set_num_threads(1)
    print("reproduce: OMP_NUM_THREADS=1 python " + " ".join(sys.argv), flush=True)

    name = "walker2d_full" if args.full else "walker2d_small"
    command = "OMP_NUM_THREADS=1 python " + " ".join(sys.argv)
    # Every finished run is saved at once: stopping this multi-hour benchmark keeps the runs that ended
    partial = RESULTS / f"{name}.partial.json"

    def save_partial(finished: list[LearningCurve]) -> None:
        save_results(partial, finished, {"command": command, "complete": False})

    # A2C first: with one env it trains ~4x slower than TransformerA2C, so starting it first finishes the pool sooner
    jobs = [(method, seed, budget, eval_freq) for method in reversed(METHODS) for seed in range(n_seeds)]
    curves = run_in_processes(run_one, jobs, args.jobs, on_result=save_partial)
    curves.sort(key=lambda curve: METHODS.index(curve.label))

    rows = summarize(curves, threshold=None)
    best = best_returns(curves)
    print(f"\n{ENV_ID}, {budget:,} steps, {n_seeds} seeds\n{format_table(rows, None)}", flush=True)
    print("median best evaluation: " + json.dumps(best), flush=True)
    plot_curves(curves, RESULTS / f"{name}.png", f"{ENV_ID}: TransformerA2C (transformer_a2c.yml) vs A2C (rl-zoo3)")
    metadata: dict[str, Any] = {
        "command": command,
        "machine": f"{platform.processor() or platform.machine()}, torch threads 1, shared 2-core machine",
        "budget": budget,
        "eval_freq": eval_freq,
        "n_eval_episodes": N_EVAL_EPISODES,
        "summary": rows,
        "median_best_return": best,
    }
    save_results(RESULTS / f"{name}.json", curves, metadata)
    partial.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
