"""
TransformerA2C (the shipped ``sb3_dqfd/hyperparams/transformer_a2c.yml`` entry) against SB3 A2C with rl-zoo3's
MuJoCo settings on plain Walker2d-v5, side by side; with ``--methods TransformerPPO "PPO (rl-zoo3)"``, TransformerPPO
(the shipped ``transformer_ppo.yml`` entry) against SB3 PPO with rl-zoo3's tuned Walker2d settings.

Per seed: TransformerA2C with the shipped entry (10 envs x 32 steps, separate actor and critic encoders) and A2C as
rl-zoo3 trains it on Walker2d (``hyperparams/a2c.yml``: one env, SB3's A2C defaults, ``normalize: true``, i.e.
``VecNormalize`` on observations and rewards). Both get the same budget and a 10-episode deterministic evaluation on
the unrandomized env every ``--eval-freq`` steps (A2C's evaluation env shares the training observation statistics).
Reported: medians over seeds of the last and the best evaluation, and training speed with evaluation excluded.
rl-zoo3 publishes A2C Walker2d 582 at 1M steps (a single final evaluation, Walker2d-v3/v4). PPO is trained as rl-zoo3
trains it (``hyperparams/ppo.yml``'s tuned ``Walker2d-v4`` entry, :data:`ZOO_PPO_WALKER2D`: one env, ``normalize:
true``); TransformerPPO as its shipped entry says (8 envs, PopArt value targets and running observation statistics in
the policy, no ``VecNormalize``). With the PPO pair the summary also gives, per method, the mean of the last 5
evaluations over the best one (issue #17's stability measure: >= 0.8 in the median seed).

Small default (100k steps, 2 seeds)::

    OMP_NUM_THREADS=1 python benchmarks/bench_walker2d.py

The run behind the README numbers (1M steps, 3 seeds; ~3 CPU-hours, A2C with one env trains at ~400 steps/s)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_walker2d.py --full --jobs 2

TransformerPPO against rl-zoo3's PPO (1M steps, 3 seeds; ~1.5 CPU-hours, PPO's 20 epochs of 32-sample minibatches on
one env cost ~1 CPU s per 1,000 steps, TransformerPPO ~0.5)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_walker2d.py --full --jobs 2 --methods TransformerPPO "PPO (rl-zoo3)"
"""

import argparse
import json
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_dqfd.common.experiment import (
    LearningCurve,
    exit_on_ctrl_c,
    format_table,
    plot_curves,
    run_in_processes,
    save_results,
    summarize,
    train_with_curve,
)
from sb3_dqfd.common.hyperparams import HYPERPARAMS_DIR, load_hyperparameters
from sb3_dqfd.transformer_a2c import TransformerA2C
from sb3_dqfd.transformer_ppo import TransformerPPO

ENV_ID = "Walker2d-v5"
RESULTS = Path(__file__).parent / "results"
N_EVAL_EPISODES = 10
METHODS = ("TransformerA2C", "A2C (rl-zoo3)", "TransformerPPO", "PPO (rl-zoo3)")
#: rl-zoo3's tuned PPO ``Walker2d-v4`` entry (``hyperparams/ppo.yml``; no v5 entry) without its env keys (``normalize:
#: true``, ``n_envs: 1``, which :func:`make_zoo_baseline` reproduces); a test compares it with the installed rl-zoo3
ZOO_PPO_WALKER2D: dict[str, Any] = dict(
    batch_size=32,
    n_steps=512,
    gamma=0.99,
    learning_rate=5.05041e-05,
    ent_coef=0.000585045,
    clip_range=0.1,
    n_epochs=20,
    gae_lambda=0.95,
    max_grad_norm=1,
    vf_coef=0.871923,
)
#: Evaluations averaged for the stability ratio (mean of the last ones over the best one)
N_LAST_EVALUATIONS = 5


def make_transformer(algorithm_class: type[TransformerA2C] | type[TransformerPPO], seed: int) -> tuple[BaseAlgorithm, VecEnv]:
    """TransformerA2C or TransformerPPO with its shipped Walker2d-v5 entry, and its evaluation env."""
    file_name = "transformer_a2c.yml" if algorithm_class is TransformerA2C else "transformer_ppo.yml"
    entry = load_hyperparameters(HYPERPARAMS_DIR / file_name, ENV_ID, algorithm_class)
    n_envs, policy = entry.pop("n_envs"), entry.pop("policy")
    entry.pop("n_timesteps")
    model = algorithm_class(policy, make_vec_env(ENV_ID, n_envs=n_envs, seed=seed), seed=seed, **entry)
    return model, make_vec_env(ENV_ID, n_envs=1, seed=1_000 + seed)


def make_zoo_baseline(method: str, seed: int) -> tuple[BaseAlgorithm, VecEnv]:
    """
    A2C (rl-zoo3's MuJoCo settings: SB3's defaults) or PPO (:data:`ZOO_PPO_WALKER2D`) on one env under
    ``VecNormalize`` as rl-zoo3 trains them, and an evaluation env that shares the observation statistics.
    """
    train_env = VecNormalize(make_vec_env(ENV_ID, n_envs=1, seed=seed))
    eval_env = VecNormalize(make_vec_env(ENV_ID, n_envs=1, seed=1_000 + seed), training=False, norm_reward=False)
    # The same RunningMeanStd object: training updates it in place, evaluation always sees the current statistics
    eval_env.obs_rms = train_env.obs_rms
    if method == "PPO (rl-zoo3)":
        return PPO("MlpPolicy", train_env, seed=seed, **ZOO_PPO_WALKER2D), eval_env
    return A2C("MlpPolicy", train_env, seed=seed), eval_env


def run_one(job: tuple[str, int, int, int]) -> LearningCurve:
    """One training run in its own process with one torch thread (parallel runs give the same curves as serial)."""
    th.set_num_threads(1)
    method, seed, budget, eval_freq = job
    if method in ("TransformerA2C", "TransformerPPO"):
        model, eval_env = make_transformer(TransformerA2C if method == "TransformerA2C" else TransformerPPO, seed)
    else:
        model, eval_env = make_zoo_baseline(method, seed)
    curve = train_with_curve(model, method, seed, budget, eval_env, eval_freq, N_EVAL_EPISODES)
    print(f"{method} seed {seed}: {np.round(curve.mean_returns, 1).tolist()}", flush=True)
    return curve


def best_returns(curves: list[LearningCurve]) -> dict[str, float]:
    """Median over seeds of each method's best evaluation."""
    return {
        method: float(np.median([max(curve.mean_returns) for curve in curves if curve.label == method]))
        for method in dict.fromkeys(curve.label for curve in curves)
    }


def last_over_best(curves: list[LearningCurve]) -> dict[str, dict[str, Any]]:
    """
    Per method: each seed's mean of its last :data:`N_LAST_EVALUATIONS` evaluations divided by its best evaluation,
    and the median seed's ratio (issue #17: >= 0.8 in the median seed).
    """
    ratios: dict[str, list[float]] = {}
    for curve in curves:
        best = max(curve.mean_returns)
        last = float(np.mean(curve.mean_returns[-N_LAST_EVALUATIONS:]))
        ratios.setdefault(curve.label, []).append(last / best if best > 0 else float("nan"))
    return {method: {"per_seed": values, "median": float(np.median(values))} for method, values in ratios.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="1M steps per run and 3 seeds instead of 100k and 2")
    parser.add_argument("--timesteps", type=int, default=None, help="override the budget per run")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: 3 with --full, else 2)")
    parser.add_argument("--eval-freq", type=int, default=None, help="evaluate every this many steps (default: budget/20)")
    parser.add_argument("--jobs", type=int, default=1, help="training runs in parallel, one process and torch thread each")
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS[:2]), help="methods to run (default: the A2C pair)"
    )
    args = parser.parse_args()
    budget = args.timesteps or (1_000_000 if args.full else 100_000)
    n_seeds = args.seeds or (3 if args.full else 2)
    eval_freq = args.eval_freq or budget // 20
    if min(budget, n_seeds, eval_freq, args.jobs) < 1:
        parser.error("--timesteps, --seeds, --eval-freq and --jobs must be at least 1")
    th.set_num_threads(1)
    print("reproduce: OMP_NUM_THREADS=1 python " + shlex.join(sys.argv), flush=True)

    methods = [method for method in METHODS if method in args.methods]
    name = ("walker2d_full" if args.full else "walker2d_small") + ("" if methods == list(METHODS[:2]) else "_ppo")
    command = "OMP_NUM_THREADS=1 python " + shlex.join(sys.argv)
    # Every finished run is saved at once: stopping this multi-hour benchmark keeps the runs that ended
    partial = RESULTS / f"{name}.partial.json"

    def save_partial(finished: list[LearningCurve]) -> None:
        save_results(partial, finished, {"command": command, "complete": False})

    # Baselines first: with one env they train slower than the transformers, so starting them first ends the pool sooner
    jobs = [(method, seed, budget, eval_freq) for method in reversed(methods) for seed in range(n_seeds)]
    curves = run_in_processes(run_one, jobs, args.jobs, on_result=save_partial)
    curves.sort(key=lambda curve: METHODS.index(curve.label))

    rows = summarize(curves, threshold=None)
    best = best_returns(curves)
    stability = last_over_best(curves)
    print(f"\n{ENV_ID}, {budget:,} steps, {n_seeds} seeds\n{format_table(rows, None)}", flush=True)
    print("median best evaluation: " + json.dumps(best), flush=True)
    print(f"mean of the last {N_LAST_EVALUATIONS} evaluations / best: " + json.dumps(stability), flush=True)
    plot_curves(curves, RESULTS / f"{name}.png", f"{ENV_ID}: " + " vs ".join(methods))
    metadata: dict[str, Any] = {
        "command": command,
        "machine": f"{platform.processor() or platform.machine()}, torch threads 1, shared 2-core machine",
        "budget": budget,
        "eval_freq": eval_freq,
        "n_eval_episodes": N_EVAL_EPISODES,
        "summary": rows,
        "median_best_return": best,
        "last_over_best": stability,
    }
    save_results(RESULTS / f"{name}.json", curves, metadata)
    partial.unlink(missing_ok=True)


if __name__ == "__main__":
    exit_on_ctrl_c(main, "the finished runs in <name>.partial.json")
