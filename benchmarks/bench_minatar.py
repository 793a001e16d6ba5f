"""
DQfD from the built-in scripted experts' demonstrations against SB3 DQN with the MinAtar paper's settings, on MinAtar
(Young & Tian 2019, https://arxiv.org/abs/1903.03176: Atari's game mechanics on 10x10xn images, cheap enough for a CPU).

Per game and seed: record the teacher's demonstrations (``MinAtarImage`` uint8 frames), pre-train DQfD (its defaults;
``CnnPolicy`` picks ``MinAtarCNN``, the buffer stores each frame once), evaluate it right after pre-training and every
``--eval-freq`` environment steps (deterministic, ``--eval-episodes`` episodes); train SB3 DQN with the MinAtar
paper's DQN settings (its 3x3 conv + 128 network, centred RMSProp at 2.5e-4, batch 32, replay 100k started at 5k,
target sync every 1k steps, epsilon 1 -> 0.1 over the first 100k steps, an update every step) on the same budget and
evaluation schedule. The teacher is measured on ``--teacher-episodes`` episodes of the same env.

Goals (medians over seeds), printed and saved with the curves:

* right after pre-training, DQfD scores at least 80% of the teacher's mean return;
* retention >= 0.75: no evaluation after pre-training falls below 75% of the pre-trained policy's return;
* by the end of the budget DQfD is above the teacher on a game whose teacher is imperfect by design (Breakout: it
  misses balls it could reach);
* DQN needs at least 5x DQfD's environment steps to reach the teacher's score (or never does within its budget).

The run behind README's MinAtar table (3 seeds, both games; about 1.5 hours on 2 cores)::

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_minatar.py --seeds 3 --jobs 2

A few minutes, to see it work: ``python benchmarks/bench_minatar.py --small``. Results:
``benchmarks/results/bench_minatar.json`` (``bench_minatar_partial.json`` while it runs: each finished run is saved at
once, so Ctrl-C keeps them) and one PNG per game.
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

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env

from sb3_dqfd.common.demonstrations import record_demonstrations
from sb3_dqfd.common.experiment import (
    LearningCurve,
    exit_on_ctrl_c,
    format_table,
    plot_curves,
    run_in_processes,
    save_results,
    summarize,
)
from sb3_dqfd.common.experts import get_expert
from sb3_dqfd.dqfd import DQfD, MinAtarCNN
from sb3_dqfd.wrappers import MinAtarImage

RESULTS = Path(__file__).parent / "results"
DQN_LABEL = "DQN (MinAtar paper)"

#: Demonstration episodes per game (Freeway's episodes are 2,500 steps long, Breakout's teacher's about 115)
GAMES: dict[str, dict[str, Any]] = {
    "MinAtar/Breakout-v1": dict(n_demo_episodes=20),
    "MinAtar/Freeway-v1": dict(n_demo_episodes=10),
}
#: The game whose teacher leaves points on the table by design, where DQfD must end above it
IMPERFECT_TEACHER = "MinAtar/Breakout-v1"


def minatar_dqn_hyperparameters(budget: int) -> dict[str, Any]:
    """SB3 DQN with the MinAtar paper's DQN settings (Young & Tian 2019, Table 2), for a run of ``budget`` steps."""
    return dict(
        learning_rate=2.5e-4,
        buffer_size=100_000,
        learning_starts=5_000,
        batch_size=32,
        gamma=0.99,
        train_freq=1,
        gradient_steps=1,
        target_update_interval=1_000,
        exploration_initial_eps=1.0,
        exploration_final_eps=0.1,
        # The paper anneals over its first 100k frames: the same absolute schedule within this budget
        exploration_fraction=min(1.0, 100_000 / budget),
        policy_kwargs=dict(
            features_extractor_class=MinAtarCNN,
            net_arch=[],
            optimizer_class=th.optim.RMSprop,
            optimizer_kwargs=dict(alpha=0.95, eps=0.01, centered=True),
        ),
    )


def register_minatar() -> None:
    if "MinAtar/Breakout-v1" not in gym.registry:  # registering twice warns
        import minatar.gym

        minatar.gym.register_envs()


def make_game(game: str) -> gym.Env:
    register_minatar()
    return MinAtarImage(gym.make(game))


def teacher_curve(game: str, n_episodes: int, budget: int) -> LearningCurve:
    """The teacher's mean return over ``n_episodes`` (seeds 77,000 + i), drawn flat over the budget."""
    demos = record_demonstrations(get_expert(game), make_game(game), n_episodes, seed=77_000)
    returns = demos.episode_returns
    return LearningCurve("teacher", 0, [0, budget], [float(returns.mean())] * 2, [float(returns.std())] * 2)


def run_one(job: tuple[str, str, int, dict[str, Any]]) -> LearningCurve:
    """
    One training run in its own process (one torch thread, so parallel runs give the curves of serial ones).

    :param job: method ("DQfD" or "DQN"), game, seed, and the settings (budget, evaluation, pre-training)
    :return: the learning curve
    """
    from sb3_dqfd.common.experiment import train_with_curve

    th.set_num_threads(1)
    method, game, seed, settings = job
    eval_env = make_vec_env(partial(make_game, game), n_envs=1, seed=1_000 + seed)
    budget, eval_freq, eval_episodes = settings["budget"], settings["eval_freq"], settings["eval_episodes"]
    if method == "DQfD":
        demos = record_demonstrations(
            get_expert(game), make_game(game), GAMES[game]["n_demo_episodes"], seed=10_000 * (seed + 1)
        )
        model = DQfD("CnnPolicy", make_game(game), demonstrations=demos, seed=seed, **settings["dqfd_kwargs"])
        pretrain = partial(model.pretrain, model.pretrain_steps)
        curve = train_with_curve(model, "DQfD", seed, budget, eval_env, eval_freq, eval_episodes, before_learning=pretrain)
    else:
        model = DQN("CnnPolicy", make_game(game), seed=seed, **minatar_dqn_hyperparameters(budget))
        curve = train_with_curve(model, DQN_LABEL, seed, budget, eval_env, eval_freq, eval_episodes)
    print(f"{game} {curve.label} seed {seed}: {np.round(curve.mean_returns, 1).tolist()}", flush=True)
    return curve


def goals(game: str, curves: list[LearningCurve], teacher: float) -> dict[str, Any]:
    """The issue's goals for one game, from the curves (medians over seeds)."""
    dqfd = [curve for curve in curves if curve.label == "DQfD"]
    dqn = [curve for curve in curves if curve.label == DQN_LABEL]
    pretrained_share = float(np.median([curve.mean_returns[0] for curve in dqfd])) / teacher
    retention = [curve.retention() for curve in dqfd]
    dqfd_steps = [curve.steps_to_threshold(teacher) for curve in dqfd]
    dqn_steps = [curve.steps_to_threshold(teacher) for curve in dqn]
    result: dict[str, Any] = {
        "teacher_mean_return": teacher,
        "pretrained_share_of_teacher": pretrained_share,
        "pretrained_at_least_80pct": pretrained_share >= 0.8,
        "retention_per_seed": retention,
        "median_retention": float(np.median([np.nan if r is None else r for r in retention])),
        "no_forgetting_75pct": bool(np.median([np.nan if r is None else r for r in retention]) >= 0.75),
        "median_final_dqfd": float(np.median([curve.mean_returns[-1] for curve in dqfd])),
        "median_final_dqn": float(np.median([curve.mean_returns[-1] for curve in dqn])) if dqn else None,
        "dqfd_steps_to_teacher_per_seed": dqfd_steps,
        "dqn_steps_to_teacher_per_seed": dqn_steps,
    }
    if game == IMPERFECT_TEACHER:
        result["dqfd_ends_above_teacher"] = result["median_final_dqfd"] > teacher
    if dqn:
        result["dqn_needs_5x_dqfd_steps"] = _needs_5x(dqfd_steps, dqn_steps)
    return result


def _needs_5x(dqfd_steps: list[int | None], dqn_steps: list[int | None]) -> bool | None:
    """
    Whether DQN's median steps to the teacher are at least 5x DQfD's (a run that never got there counts as
    infinitely many steps); None when DQfD's median run never got there either.
    """
    dqfd = float(np.median([np.inf if step is None else step for step in dqfd_steps]))
    dqn = float(np.median([np.inf if step is None else step for step in dqn_steps]))
    if not np.isfinite(dqfd):
        return None
    return dqn >= 5 * max(dqfd, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", nargs="+", default=list(GAMES), choices=list(GAMES), help="MinAtar games to run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per game and method")
    parser.add_argument("--budget", type=int, default=100_000, help="environment steps per run")
    parser.add_argument("--eval-freq", type=int, default=10_000, help="evaluate every this many environment steps")
    parser.add_argument("--eval-episodes", type=int, default=10, help="deterministic episodes per evaluation")
    parser.add_argument("--teacher-episodes", type=int, default=30, help="episodes to measure the teacher on")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="DQfD's pre-training updates (default: DQfD's)")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel processes")
    parser.add_argument("--no-dqn", action="store_true", help="run DQfD only")
    parser.add_argument("--small", action="store_true", help="a few minutes: 1 seed, 3,000 steps, 500 pre-training updates")
    parser.add_argument("--output", type=Path, default=RESULTS / "bench_minatar.json", help="the results JSON")
    args = parser.parse_args()
    if args.small:
        args.seeds, args.budget, args.eval_freq, args.eval_episodes, args.teacher_episodes = 1, 3_000, 1_000, 2, 5
        args.pretrain_steps = 500 if args.pretrain_steps is None else args.pretrain_steps
    for name in ("seeds", "budget", "eval_freq", "eval_episodes", "teacher_episodes", "jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    dqfd_kwargs = {} if args.pretrain_steps is None else {"pretrain_steps": args.pretrain_steps}
    settings = dict(budget=args.budget, eval_freq=args.eval_freq, eval_episodes=args.eval_episodes, dqfd_kwargs=dqfd_kwargs)
    methods = ["DQfD"] if args.no_dqn else ["DQfD", "DQN"]
    jobs = [(method, game, seed, settings) for game in args.games for seed in range(args.seeds) for method in methods]
    metadata = {
        "command": " ".join(["python", *sys.argv]),
        "settings": {key: value for key, value in vars(args).items() if key != "output"} | {"output": str(args.output)},
        "machine": {"python": platform.python_version(), "torch": th.__version__, "cpus": os.cpu_count()},
        "dqn_hyperparameters": {key: repr(value) for key, value in minatar_dqn_hyperparameters(args.budget).items()},
    }
    partial_path = args.output.with_name(args.output.stem + "_partial.json")
    start = time.perf_counter()
    curves = run_in_processes(
        run_one, jobs, args.jobs, on_result=lambda done: save_results(partial_path, done, metadata | {"complete": False})
    )
    report: dict[str, Any] = {}
    for game in args.games:
        teacher = teacher_curve(game, args.teacher_episodes, args.budget)
        game_curves = [curve for curve, job in zip(curves, jobs, strict=True) if job[1] == game]
        report[game] = goals(game, game_curves, teacher.mean_returns[0])
        table = format_table(summarize([teacher, *game_curves], teacher.mean_returns[0]), teacher.mean_returns[0])
        report[game]["table"] = table
        name = game.split("/")[1].split("-")[0].lower()
        plot_curves([teacher, *game_curves], args.output.with_name(f"{args.output.stem}_{name}.png"), f"{game}: DQfD vs DQN")
        print(f"\n{game} (threshold = the teacher's mean return)\n{table}\n{json.dumps(report[game], indent=1, default=str)}")
    metadata |= {"complete": True, "wall_seconds": time.perf_counter() - start, "goals": report}
    save_results(args.output, curves, metadata)
    partial_path.unlink(missing_ok=True)
    print(f"results: {args.output}")


if __name__ == "__main__":
    exit_on_ctrl_c(main, "the finished runs in <output>_partial.json")
