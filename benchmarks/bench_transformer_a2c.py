"""
TransformerA2C vs A2C (MLP), A2C + 4-frame stack and RecurrentPPO on CartPole without velocities, side by side.

Each method trains on 8 envs of CartPole-v1 whose observations keep only the cart position and the pole angle
(rl-zoo3's CartPoleNoVel), with a 10-episode deterministic evaluation every ``--eval-freq`` steps. Reported per
method (medians over seeds): the first evaluation step with mean reward >= 475, the share of later evaluations
still >= 475 ("hold"), the last evaluation, and the training speed in env steps/s with evaluation time excluded.

Default: a small budget (50k steps, RecurrentPPO 20k as it trains ~10x slower, 3 seeds). ``--full``: 200k steps for
every method (``--rppo-timesteps`` overrides RecurrentPPO's budget). Writes JSON + PNG to benchmarks/results/.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_transformer_a2c.py [--full] [--seeds 0 1 2]
"""

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from stable_baselines3 import A2C
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecNormalize
from torch import nn

from sb3_dqfd.common.experiment import exit_on_ctrl_c
from sb3_dqfd.transformer_a2c import TransformerA2C

RESULTS = Path(__file__).parent / "results"
THRESHOLD = 475.0
N_ENVS = 8


class CartPoleNoVel(gym.ObservationWrapper):
    """CartPole with the velocities hidden (rl-zoo3's CartPoleNoVel): only cart position and pole angle."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        low, high = env.observation_space.low[[0, 2]], env.observation_space.high[[0, 2]]  # type: ignore[attr-defined]
        self.observation_space = spaces.Box(low, high, dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[[0, 2]].astype(np.float32)


def make_env(n_envs: int, seed: int) -> VecEnv:
    return make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed, wrapper_class=CartPoleNoVel)


class PeriodicEval(BaseCallback):
    """Deterministic evaluation every ``eval_freq`` env steps; its wall time is recorded so it can be excluded."""

    def __init__(self, eval_env: VecEnv, eval_freq: int, n_episodes: int, sync: Callable[[], None] | None = None):
        super().__init__()
        self.eval_env, self.eval_freq, self.n_episodes, self.sync = eval_env, eval_freq, n_episodes, sync
        self.evaluations: list[tuple[int, float]] = []
        self.eval_seconds = 0.0
        self.next_eval = eval_freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            start = time.perf_counter()
            if self.sync is not None:
                self.sync()
            mean_reward, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.n_episodes, deterministic=True)
            self.evaluations.append((self.num_timesteps, float(mean_reward)))
            self.next_eval += self.eval_freq
            self.eval_seconds += time.perf_counter() - start
        return True


def build(method: str, seed: int) -> tuple[BaseAlgorithm, VecEnv, Callable[[VecEnv], None] | None]:
    """The model, its eval env, and (RecurrentPPO) a function that copies the obs normalization to the eval env."""
    env, eval_env = make_env(N_ENVS, seed), make_env(10, seed + 10_000)
    if method == "TransformerA2C":
        return TransformerA2C("MlpPolicy", env, policy_kwargs=dict(context_len=16), seed=seed), eval_env, None
    if method == "TransformerA2C K=1":
        return TransformerA2C("MlpPolicy", env, policy_kwargs=dict(context_len=1), seed=seed), eval_env, None
    if method == "A2C MLP":
        return A2C("MlpPolicy", env, seed=seed), eval_env, None
    if method == "A2C 4-frame stack":
        return A2C("MlpPolicy", VecFrameStack(env, 4), seed=seed), VecFrameStack(eval_env, 4), None
    if method == "RecurrentPPO":
        # rl-zoo3's ppo_lstm hyperparameters for CartPoleNoVel-v1 (as published with its sb3/ppo_lstm-CartPoleNoVel-v1
        # model card): VecNormalize on observations only.
        train_env = VecNormalize(env, norm_obs=True, norm_reward=False)
        eval_norm = VecNormalize(eval_env, norm_obs=True, norm_reward=False, training=False)
        model = RecurrentPPO(
            "MlpLstmPolicy",
            train_env,
            n_steps=32,
            batch_size=256,
            gae_lambda=0.8,
            gamma=0.98,
            n_epochs=20,
            ent_coef=0.0,
            learning_rate=LinearSchedule(1e-3, 0.0, 1.0),
            clip_range=LinearSchedule(0.2, 0.0, 1.0),
            policy_kwargs=dict(
                ortho_init=False,
                activation_fn=nn.ReLU,
                lstm_hidden_size=64,
                enable_critic_lstm=True,
                net_arch=dict(pi=[64], vf=[64]),
            ),
            seed=seed,
        )

        def sync(_env: VecEnv = eval_norm) -> None:
            _env.obs_rms = train_env.obs_rms.copy()

        return model, eval_norm, sync
    raise ValueError(f"unknown method {method!r}")


def run(method: str, seed: int, timesteps: int, eval_freq: int) -> dict[str, Any]:
    model, eval_env, sync = build(method, seed)
    callback = PeriodicEval(eval_env, eval_freq, 10, sync)  # type: ignore[arg-type]
    start = time.perf_counter()
    model.learn(timesteps, callback=callback)
    train_seconds = time.perf_counter() - start - callback.eval_seconds
    steps = [s for s, _ in callback.evaluations]
    rewards = [r for _, r in callback.evaluations]
    first = next((i for i, r in enumerate(rewards) if r >= THRESHOLD), None)
    later = rewards[first + 1 :] if first is not None else []
    return {
        "method": method,
        "seed": seed,
        "steps": steps,
        "rewards": rewards,
        "first_475": steps[first] if first is not None else None,
        "hold": float(np.mean([r >= THRESHOLD for r in later])) if later else (1.0 if first is not None else 0.0),
        "final": rewards[-1],
        "train_fps": model.num_timesteps / train_seconds,
    }


def median_or_none(values: list[float | None]) -> float | None:
    # A run that never reached the threshold counts as "later than the budget" (+inf) in the median.
    if not values:
        return None
    median = float(np.median([np.inf if v is None else v for v in values]))
    return None if np.isinf(median) else median


def summarize(runs: list[dict[str, Any]], methods: list[str]) -> dict[str, dict[str, Any]]:
    summary = {}
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        summary[method] = {
            "first_475_median": median_or_none([r["first_475"] for r in mine]),
            "hold_median": float(np.median([r["hold"] for r in mine])),
            "final_median": float(np.median([r["final"] for r in mine])),
            "max_median": float(np.median([max(r["rewards"]) for r in mine])),
            "train_fps_median": float(np.median([r["train_fps"] for r in mine])),
        }
    return summary


def check_criteria(summary: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """The targets: first >= 475 within 60k and held at >= 90% of later evaluations; K=1 far below; >= 4x RPPO speed."""
    criteria = {}
    ours = summary.get("TransformerA2C")
    if ours is not None:
        first = ours["first_475_median"]
        criteria["TransformerA2C: first eval >= 475 within 60k steps (median)"] = first is not None and first <= 60_000
        criteria["TransformerA2C: >= 475 at >= 90% of later evaluations (median)"] = ours["hold_median"] >= 0.9
    if "TransformerA2C K=1" in summary:
        criteria["TransformerA2C K=1: best eval < 250 (median)"] = summary["TransformerA2C K=1"]["max_median"] < 250
    if ours is not None and "RecurrentPPO" in summary:
        ratio = ours["train_fps_median"] / summary["RecurrentPPO"]["train_fps_median"]
        criteria["TransformerA2C: >= 4x RecurrentPPO's training env steps/s"] = ratio >= 4
    return criteria


def plot(runs: list[dict[str, Any]], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        steps = mine[0]["steps"]
        rewards = np.array([r["rewards"][: len(steps)] for r in mine])
        line = ax.plot(steps, np.median(rewards, axis=0), label=method)[0]
        ax.fill_between(steps, rewards.min(axis=0), rewards.max(axis=0), color=line.get_color(), alpha=0.15)
    ax.axhline(THRESHOLD, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("env steps")
    ax.set_ylabel("10-episode deterministic eval (median, min-max over seeds)")
    ax.set_title("CartPole-v1 without velocities, 8 envs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="200k steps per run instead of 50k")
    parser.add_argument("--timesteps", type=int, default=None, help="override the budget per run")
    parser.add_argument(
        "--rppo-timesteps",
        type=int,
        default=None,
        help="budget of RecurrentPPO (~10x slower than the others): 20k by default, the full budget with --full",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-freq", type=int, default=10_000)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["TransformerA2C", "TransformerA2C K=1", "A2C MLP", "A2C 4-frame stack", "RecurrentPPO"],
    )
    args = parser.parse_args()
    th.set_num_threads(1)
    timesteps = args.timesteps or (200_000 if args.full else 50_000)
    rppo_timesteps = args.rppo_timesteps or (timesteps if args.full else min(timesteps, 20_000))

    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "transformer_a2c_full" if args.full else "transformer_a2c"
    record = {
        "command": "OMP_NUM_THREADS=1 python " + " ".join(sys.argv),
        "timesteps": timesteps,
        "rppo_timesteps": rppo_timesteps,
        "seeds": args.seeds,
    }
    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        for method in args.methods:
            result = run(method, seed, rppo_timesteps if method == "RecurrentPPO" else timesteps, args.eval_freq)
            runs.append(result)
            print(
                f"{method:20s} seed {seed}: evals {[round(r) for r in result['rewards']]} "
                f"first>=475 {result['first_475']} hold {result['hold']:.2f} fps {result['train_fps']:.0f}",
                flush=True,
            )
            # Written after every run so an interrupted benchmark keeps what it measured.
            with open(RESULTS / f"{name}.json", "w") as file:
                json.dump({**record, "complete": False, "runs": runs}, file, indent=2)

    summary = summarize(runs, args.methods)
    print_table(summary, f"CartPoleNoVel, 8 envs, {timesteps} steps (RecurrentPPO {rppo_timesteps}), seeds {args.seeds}")
    criteria = check_criteria(summary)
    for criterion, passed in criteria.items():
        print(f"  {'PASS' if passed else 'FAIL'}  {criterion}")
    with open(RESULTS / f"{name}.json", "w") as file:
        json.dump({**record, "complete": True, "summary": summary, "criteria": criteria, "runs": runs}, file, indent=2)
    plot(runs, args.methods, RESULTS / f"{name}.png")
    print(f"\nwrote {RESULTS / name}.json and .png; reproduce with: {record['command']}")


def print_table(summary: dict[str, dict[str, Any]], title: str) -> None:
    reference_fps = summary.get("RecurrentPPO", {}).get("train_fps_median")
    print(f"\n{title} (medians over seeds; fps = training env steps/s, evaluation excluded)")
    print(f"{'method':20s} {'first>=475':>10s} {'hold':>6s} {'max':>6s} {'final':>6s} {'train fps':>10s} {'fps / RPPO':>10s}")
    for method, row in summary.items():
        first = "never" if row["first_475_median"] is None else f"{row['first_475_median']:.0f}"
        ratio = f"{row['train_fps_median'] / reference_fps:.1f}x" if reference_fps else "-"
        print(
            f"{method:20s} {first:>10s} {row['hold_median']:6.2f} {row['max_median']:6.0f} {row['final_median']:6.0f} "
            f"{row['train_fps_median']:10.0f} {ratio:>10s}"
        )


if __name__ == "__main__":
    exit_on_ctrl_c(main)
