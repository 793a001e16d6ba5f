"""
A memory benchmark suite for a 2-core CPU: TransformerPPO, TransformerA2C, sb3-contrib's RecurrentPPO (LSTM), PPO with
a 4-frame stack and PPO (MLP, no memory), side by side on the same env-step budget per task.

Tasks (every one needs memory: the current observation alone does not tell the best action):

* ``CartPoleNoVel``: CartPole-v1 with the velocities dropped (cart position and pole angle only, as
  ``bench_transformer_a2c.py``; rl-zoo3's CartPoleNoVel-v1 zeroes them: same information), 500 steps, solved at 475;
* ``PositionOnlyCartPoleEasy`` (POPGym's "Stateless CartPole", Easy): the same observation, 200 steps, reward 1/200 a
  step (return 1 = balanced to the end), threshold 0.95 (190 steps, the share 475/500 is of CartPole-v1);
* ``RepeatPreviousEasy`` (POPGym): a card a step (its suit, ``Discrete(4)``), answer the suit dealt 4 steps before;
  51 steps, +-1/48 per answer (return in [-1, 1], 0 for guessing);
* ``CountRecallEasy`` (POPGym): a dealt colour and a queried colour each step (``MultiDiscrete([2, 2])``), answer how
  many cards of the queried colour were dealt so far (``Discrete(27)``); 51 steps, +-1/51 per answer. Its memory spans
  the whole episode (order-agnostic counting), so the transformers get a 52-step context there.

The POPGym tasks need the optional ``popgym`` package (``pip install "sb3-dqfd[popgym]"`` or ``pip install popgym``);
without it they are skipped with a message and the suite runs ``CartPoleNoVel`` alone. Discrete and MultiDiscrete
observations are one-hot encoded by SB3's preprocessing in every policy; only the frame stack needs a Box, so that
method one-hot encodes them in the env (:class:`OneHotObservation`) before ``VecFrameStack``.

Settings, all on 8 envs (the same data per update for every method):

* TransformerPPO / TransformerA2C: the shipped ``CartPoleNoVel-v1`` entries of ``sb3_dqfd/hyperparams/
  transformer_{ppo,a2c}.yml`` on every task (no entry exists for the POPGym tasks; they are untuned starting points),
  context 16 steps, 52 on CountRecallEasy;
* RecurrentPPO: rl-zoo3's ``ppo_lstm.yml`` ``CartPoleNoVel-v1`` entry (tuned there) on every task: ``VecNormalize``
  on observations and rewards (gamma 0.98; rewards only where the observations are discrete, which VecNormalize
  refuses), 32 steps x 8 envs, minibatch 256, 20 epochs, lr 1e-3 and clip 0.2 both linearly to 0, LSTM 64 for actor
  and critic;
* PPO 4-frame stack and PPO MLP: the same entry with the LSTM removed (rl-zoo3's PPO CartPole-v1 entry has the same
  values), so that they differ from RecurrentPPO by the memory only.

Each run evaluates the deterministic policy (``--eval-episodes`` episodes on 5 envs) every ``--eval-freq`` steps
(default: 20 evaluations per run). Reported per task and method (medians over seeds): final and best evaluation, steps
to the threshold where one exists, and training env steps/s (evaluation excluded). Goals, per task: TransformerPPO's
median final return above RecurrentPPO's at the same steps, and TransformerPPO's training throughput at least 4x
RecurrentPPO's. The POPGym paper's numbers (Morad et al. 2023, PPO with GRU/LSTM, trained far longer) are shown as an
outside reference where filled in :data:`POPGYM_PAPER_REFERENCE`.

The full suite (4 tasks x 5 methods x 3 seeds at the default budget of 300k env steps per run; the estimate is
printed at start, about 2.2 hours on 2 free cores)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_memory.py --seeds 3 --jobs 2

CartPoleNoVel alone at rl-zoo3's budget for these entries (README's table; ~11 minutes on 2 free cores)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_memory.py --tasks CartPoleNoVel --seeds 3 --budget 100000 \\
        --jobs 2 --output benchmarks/results/bench_memory_cartpolenovel.json

A couple of minutes, to see it work: ``python benchmarks/bench_memory.py --small``. Results: the JSON (every finished
run is saved at once to ``<output>_partial.json``, so Ctrl-C keeps them), a Markdown report beside it (``.md``: the
tables and the goals) and one PNG per task (``<output>_<task>.png``; ``<output>.png`` when one task ran).
"""

import argparse
import importlib.util
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
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecNormalize
from torch import nn

from sb3_dqfd.common.experiment import LearningCurve, exit_on_ctrl_c, plot_curves, run_in_processes, save_results
from sb3_dqfd.common.hyperparams import shipped_hyperparameters
from sb3_dqfd.transformer_a2c import TransformerA2C
from sb3_dqfd.transformer_ppo import TransformerPPO

RESULTS = Path(__file__).parent / "results"
N_ENVS = 8
N_EVAL_ENVS = 5
METHODS = ["TransformerPPO", "TransformerA2C", "RecurrentPPO", "PPO 4-frame stack", "PPO MLP"]

#: Per task: POPGym's env class ("module:class"; None: built here), the threshold for "steps to threshold" (None: none
#: defined), the transformers' context length and the default budget (env steps per run; the suite at these budgets is
#: about 2.2 hours on 2 free cores)
TASKS: dict[str, dict[str, Any]] = {
    "CartPoleNoVel": dict(popgym=None, threshold=475.0, context_len=16, budget=300_000),
    "PositionOnlyCartPoleEasy": dict(
        popgym="popgym.envs.position_only_cartpole:PositionOnlyCartPoleEasy", threshold=0.95, context_len=16, budget=300_000
    ),
    "RepeatPreviousEasy": dict(
        popgym="popgym.envs.repeat_previous:RepeatPreviousEasy", threshold=None, context_len=16, budget=300_000
    ),
    "CountRecallEasy": dict(popgym="popgym.envs.count_recall:CountRecallEasy", threshold=None, context_len=52, budget=300_000),
}

#: Training env steps per CPU second of each method (one torch thread; medians of ``--small`` over the four tasks), used
#: only for the time estimate printed before a run. TransformerPPO's 52-step context on CountRecallEasy cost ~1.2x its
#: 16-step one there: the estimate ignores it
STEPS_PER_SECOND = {
    "TransformerPPO": 750,
    "TransformerA2C": 4_000,
    "RecurrentPPO": 550,
    "PPO 4-frame stack": 4_300,
    "PPO MLP": 4_600,
}

#: The POPGym paper's (Morad et al. 2023, ICLR, https://openreview.net/forum?id=chDrutUTs0K) results for its PPO
#: baselines with a GRU / LSTM memory on the Easy level of these tasks: an outside reference only (RLlib PPO, its own
#: hyperparameters, 15M steps; its metric is the maximum over training of the mean episodic return of the stochastic
#: policy, closest to this benchmark's "best" column). Read from a third-party transcription of the paper's Appendix B
#: Table 3 (github.com/bryjudy/fly-critic, flycritic/popgym/results.py @ a93e8b9f), NOT checked against the paper
#: itself; it gives the GRU for every task and another model only where it scored best (None: not given).
POPGYM_PAPER_REFERENCE: dict[str, dict[str, float | None]] = {
    "PositionOnlyCartPoleEasy": {"PPO-GRU": 1.000, "PPO-LSTM": None},  # the paper's "Stateless CartPole"
    "RepeatPreviousEasy": {"PPO-GRU": 1.000, "PPO-LSTM": None},
    "CountRecallEasy": {"PPO-GRU": 0.177, "PPO-LSTM": 0.509},
}


class CartPoleNoVel(gym.ObservationWrapper):
    """CartPole with the velocities dropped (rl-zoo3's CartPoleNoVel zeroes them): cart position and pole angle."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        low, high = env.observation_space.low[[0, 2]], env.observation_space.high[[0, 2]]  # type: ignore[attr-defined]
        self.observation_space = spaces.Box(low, high, dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[[0, 2]].astype(np.float32)


class OneHotObservation(gym.ObservationWrapper):
    """
    Discrete or MultiDiscrete observations as a float32 Box of concatenated one-hot vectors, as SB3's preprocessing
    encodes them inside a policy: ``VecFrameStack`` only stacks Box observations.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        if isinstance(space, spaces.Discrete):
            self.sizes, self.starts = np.array([int(space.n)]), np.array([int(space.start)])
        elif isinstance(space, spaces.MultiDiscrete):
            self.sizes, self.starts = space.nvec.reshape(-1).astype(int), space.start.reshape(-1).astype(int)
        else:
            raise TypeError(f"OneHotObservation: expected Discrete or MultiDiscrete observations, got {space}")
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.observation_space = spaces.Box(0.0, 1.0, (int(self.sizes.sum()),), dtype=np.float32)

    def observation(self, observation: Any) -> np.ndarray:
        encoded = np.zeros(self.observation_space.shape, dtype=np.float32)
        encoded[self.offsets + np.asarray(observation, dtype=np.int64).reshape(-1) - self.starts] = 1.0
        return encoded


class IntFlattenExtractor(FlattenExtractor):
    """
    SB3's ``FlattenExtractor`` with a Python ``int`` ``features_dim``: for MultiDiscrete observations SB3 computes it as
    a numpy integer, which sb3-contrib passes to ``nn.LSTM`` and torch >= 2.13 refuses (``input_size should be of type
    int``). Same network otherwise; given to RecurrentPPO on every task.
    """

    def __init__(self, observation_space: spaces.Space):
        super().__init__(observation_space)
        self._features_dim = int(self._features_dim)


def popgym_available() -> bool:
    """Whether the optional ``popgym`` package is installed."""
    return importlib.util.find_spec("popgym") is not None


def make_task(task: str) -> gym.Env:
    """One env of the task (POPGym's envs stop by themselves: Monitor is added by ``make_vec_env``)."""
    if TASKS[task]["popgym"] is None:
        return CartPoleNoVel(gym.make("CartPole-v1"))
    module, name = TASKS[task]["popgym"].split(":")
    return getattr(importlib.import_module(module), name)()


def make_one_hot_task(task: str) -> gym.Env:
    env = make_task(task)
    return OneHotObservation(env) if isinstance(env.observation_space, spaces.Discrete | spaces.MultiDiscrete) else env


def zoo_recurrent_ppo_hyperparameters() -> dict[str, Any]:
    """rl-zoo3's ``ppo_lstm.yml`` entry for CartPoleNoVel-v1 (``normalize: True`` and the run keys left out)."""
    return dict(
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
            # Not in rl-zoo3's entry: SB3's default extractor with an int width (see IntFlattenExtractor)
            features_extractor_class=IntFlattenExtractor,
        ),
    )


def ppo_hyperparameters() -> dict[str, Any]:
    """The RecurrentPPO entry without the LSTM: the PPO baselines differ from RecurrentPPO by the memory only."""
    settings = zoo_recurrent_ppo_hyperparameters()
    settings["policy_kwargs"] = dict(
        ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[64], vf=[64])
    )  # SB3's extractor
    return settings


def transformer_hyperparameters(algorithm: type[BaseAlgorithm], task: str) -> dict[str, Any]:
    """The shipped CartPoleNoVel-v1 entry, with the task's context length."""
    settings = shipped_hyperparameters(algorithm, "CartPoleNoVel-v1")
    settings["policy_kwargs"] = {**settings.get("policy_kwargs", {}), "context_len": TASKS[task]["context_len"]}
    return settings


def hyperparameters(method: str, task: str) -> dict[str, Any]:
    """The constructor arguments of ``method`` on ``task`` (for the record and for :func:`build`)."""
    if method == "TransformerPPO":
        return transformer_hyperparameters(TransformerPPO, task)
    if method == "TransformerA2C":
        return transformer_hyperparameters(TransformerA2C, task)
    if method == "RecurrentPPO":
        return zoo_recurrent_ppo_hyperparameters()
    if method in ("PPO 4-frame stack", "PPO MLP"):
        return ppo_hyperparameters()
    raise ValueError(f"unknown method {method!r}")


def build(method: str, task: str, seed: int) -> tuple[BaseAlgorithm, VecEnv]:
    """The model on 8 training envs and its evaluation env (5 envs)."""
    maker = partial(make_one_hot_task if method == "PPO 4-frame stack" else make_task, task)
    env = make_vec_env(maker, n_envs=N_ENVS, seed=seed)
    eval_env = make_vec_env(maker, n_envs=N_EVAL_ENVS, seed=10_000 + seed)
    settings = hyperparameters(method, task)
    if method == "TransformerPPO":
        return TransformerPPO("MlpPolicy", env, seed=seed, **settings), eval_env
    if method == "TransformerA2C":
        return TransformerA2C("MlpPolicy", env, seed=seed, **settings), eval_env
    # rl-zoo3's `normalize: True`: observations (when Box) and rewards, with the algorithm's gamma; the evaluation env
    # reads the training statistics (the same object) and reports raw returns (Monitor sits below VecNormalize)
    norm_obs = isinstance(make_task(task).observation_space, spaces.Box)
    env = VecNormalize(env, norm_obs=norm_obs, norm_reward=True, gamma=settings["gamma"])
    eval_env = VecNormalize(eval_env, norm_obs=norm_obs, norm_reward=False, training=False)
    if norm_obs:
        eval_env.obs_rms = env.obs_rms
    if method == "RecurrentPPO":
        return RecurrentPPO("MlpLstmPolicy", env, seed=seed, **settings), eval_env
    if method == "PPO 4-frame stack":
        return PPO("MlpPolicy", VecFrameStack(env, 4), seed=seed, **settings), VecFrameStack(eval_env, 4)
    return PPO("MlpPolicy", env, seed=seed, **settings), eval_env


def run_one(job: tuple[str, str, int, dict[str, Any]]) -> tuple[LearningCurve, dict[str, Any]]:
    """
    One training run in its own process (one torch thread, so parallel runs give the curves of serial ones).

    :param job: method, task, seed and the settings (budget, eval_freq, eval_episodes)
    :return: the learning curve, labelled with the method, and the run's CPU time: ``cpu_share`` is the CPU time of
        the process over its wall time, so ``train_seconds * cpu_share`` is the training time on a core of its own
        (the wall-clock speed of a run depends on what else the machine runs)
    """
    from sb3_dqfd.common.experiment import train_with_curve

    th.set_num_threads(1)
    method, task, seed, settings = job
    model, eval_env = build(method, task, seed)
    cpu_start = time.process_time()
    curve = train_with_curve(
        model, method, seed, settings["budget"], eval_env, settings["eval_freq"], settings["eval_episodes"]
    )
    cpu_share = min(1.0, (time.process_time() - cpu_start) / (curve.train_seconds + curve.eval_seconds))
    extra = {"task": task, "method": method, "seed": seed, "cpu_share": cpu_share}
    extra["steps_per_cpu_second"] = curve.timesteps[-1] / (curve.train_seconds * cpu_share)
    print(
        f"{task} {method} seed {seed}: {np.round(curve.mean_returns, 3).tolist()} "
        f"({curve.timesteps[-1] / curve.train_seconds:.0f} env steps/s, {extra['steps_per_cpu_second']:.0f} per CPU "
        f"second)",
        flush=True,
    )
    return curve, extra


def summarize_task(results: list[tuple[LearningCurve, dict[str, Any]]], threshold: float | None) -> list[dict[str, Any]]:
    """
    One row per method: medians over seeds of the final and best evaluations, steps to threshold, and training
    env steps per second of wall time and per CPU second (see :func:`run_one`).
    """
    rows = []
    for label in dict.fromkeys(curve.label for curve, _ in results):
        runs = [curve for curve, _ in results if curve.label == label]
        extras = [extra for curve, extra in results if curve.label == label]
        steps = [run.steps_to_threshold(threshold) for run in runs] if threshold is not None else []
        reached = [step for step in steps if step is not None]
        # A run that never reached the threshold counts as infinitely slow: None when fewer than half reached it
        median_steps = float(np.median([np.inf if step is None else step for step in steps])) if steps else None
        rows.append(
            {
                "method": label,
                "seeds": len(runs),
                "final_median": float(np.median([run.mean_returns[-1] for run in runs])),
                "final_per_seed": [run.mean_returns[-1] for run in runs],
                "best_median": float(np.median([max(run.mean_returns) for run in runs])),
                "reached": f"{len(reached)}/{len(runs)}" if threshold is not None else None,
                "steps_to_threshold_median": median_steps if median_steps is not None and np.isfinite(median_steps) else None,
                "steps_to_threshold_per_seed": steps,
                "steps_per_second_median": float(np.median([run.timesteps[-1] / run.train_seconds for run in runs])),
                "steps_per_cpu_second_median": float(np.median([extra["steps_per_cpu_second"] for extra in extras])),
                "cpu_share_median": float(np.median([extra["cpu_share"] for extra in extras])),
                "env_steps": int(np.median([run.timesteps[-1] for run in runs])),
            }
        )
    return rows


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goals on one task: TransformerPPO's median final above RecurrentPPO's, at >= 4x its throughput."""
    by_method = {row["method"]: row for row in rows}
    ours, theirs = by_method.get("TransformerPPO"), by_method.get("RecurrentPPO")
    if ours is None or theirs is None:
        return {"evaluated": False, "reason": "needs both TransformerPPO and RecurrentPPO"}
    ratio = ours["steps_per_second_median"] / theirs["steps_per_second_median"]
    cpu_ratio = ours["steps_per_cpu_second_median"] / theirs["steps_per_cpu_second_median"]
    return {
        "evaluated": True,
        "transformer_ppo_final_median": ours["final_median"],
        "recurrent_ppo_final_median": theirs["final_median"],
        "final_above_recurrent_ppo": ours["final_median"] > theirs["final_median"],
        "throughput_ratio": ratio,
        "throughput_at_least_4x": ratio >= 4,
        # The same ratio per CPU second: what it would be with a core per run (a busy machine skews the wall clock)
        "throughput_ratio_per_cpu_second": cpu_ratio,
    }


def task_table(task: str, rows: list[dict[str, Any]], threshold: float | None) -> str:
    """A Markdown table of one task (medians over seeds)."""

    def fmt(value: Any, pattern: str) -> str:
        return "-" if value is None else pattern.format(value)

    reference = next((row for row in rows if row["method"] == "RecurrentPPO"), None)
    header = ["method", "seeds", "final return", "best return"]
    if threshold is not None:
        header += [f"reached {threshold:g}", f"steps to {threshold:g}"]
    header += ["env steps/s", "x RecurrentPPO", "env steps per CPU s", "x RecurrentPPO (CPU)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["method"], str(row["seeds"]), f"{row['final_median']:.3g}", f"{row['best_median']:.3g}"]
        if threshold is not None:
            cells += [str(row["reached"]), fmt(row["steps_to_threshold_median"], "{:,.0f}")]
        for key in ("steps_per_second_median", "steps_per_cpu_second_median"):
            ratio = row[key] / reference[key] if reference else None
            cells += [f"{row[key]:,.0f}", fmt(ratio, "{:.1f}x")]
        lines.append("| " + " | ".join(cells) + " |")
    for model, value in POPGYM_PAPER_REFERENCE.get(task, {}).items():
        if value is not None:
            lines.append(
                f"| POPGym paper {model} (best, far longer training) | - | - | {value:.3g} |" + " - |" * (len(header) - 4)
            )
    return "\n".join(lines)


def goals_table(report: dict[str, Any]) -> str:
    """A Markdown table of the goals, one row per task, and the overall verdict."""
    lines = [
        "| task | TransformerPPO final | RecurrentPPO final | final above RecurrentPPO | throughput ratio | >= 4x "
        "| ratio per CPU second |",
        "|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for task, entry in report.items():
        goal = entry["goals"]
        if not goal["evaluated"]:
            lines.append(f"| {task} | - | - | not evaluated | - | - | - |")
            continue
        verdicts += [goal["final_above_recurrent_ppo"], goal["throughput_at_least_4x"]]
        lines.append(
            f"| {task} | {goal['transformer_ppo_final_median']:.3g} | {goal['recurrent_ppo_final_median']:.3g} | "
            f"{'yes' if goal['final_above_recurrent_ppo'] else 'NO'} | {goal['throughput_ratio']:.1f}x | "
            f"{'yes' if goal['throughput_at_least_4x'] else 'NO'} | {goal['throughput_ratio_per_cpu_second']:.1f}x |"
        )
    overall = "not evaluated" if not verdicts else ("all goals met" if all(verdicts) else "goals NOT all met")
    return "\n".join(lines) + f"\n\nOverall: {overall}."


def estimate_seconds(tasks: list[str], methods: list[str], seeds: int, budgets: dict[str, int], jobs: int) -> float:
    """
    Wall time of the runs on free cores from :data:`STEPS_PER_SECOND`, plus 15% for the evaluations, over ``jobs``
    processes.
    """
    total = sum(budgets[task] / STEPS_PER_SECOND[method] for task in tasks for method in methods) * seeds * 1.15
    return total / min(jobs, max(1, len(tasks) * len(methods) * seeds))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS), help="tasks to run")
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS, help="methods to compare")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per task and method (0, 1, ...)")
    parser.add_argument("--budget", type=int, default=None, help="env steps per run on every task (default: per task)")
    parser.add_argument("--eval-freq", type=int, default=None, help="evaluate every this many env steps (default: budget/20)")
    parser.add_argument("--eval-episodes", type=int, default=10, help="deterministic episodes per evaluation")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel processes")
    parser.add_argument("--small", action="store_true", help="a couple of minutes: 1 seed, 2,048 steps, 5 eval episodes")
    parser.add_argument("--output", type=Path, default=None, help="the results JSON (default: results/bench_memory.json)")
    args = parser.parse_args(argv)
    if args.small:
        args.seeds, args.budget, args.eval_episodes = 1, 2_048 if args.budget is None else args.budget, 5
        args.eval_freq = args.budget // 2 if args.eval_freq is None else args.eval_freq
    for name in ("seeds", "budget", "eval_freq", "eval_episodes", "jobs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.eval_episodes < N_EVAL_ENVS:
        parser.error(f"--eval-episodes must be at least {N_EVAL_ENVS} (the evaluation runs on {N_EVAL_ENVS} envs)")
    args.tasks, args.methods = list(dict.fromkeys(args.tasks)), list(dict.fromkeys(args.methods))
    if args.output is None:
        args.output = RESULTS / ("bench_memory_small.json" if args.small else "bench_memory.json")
    args.skipped = []
    if not popgym_available():
        args.skipped = [task for task in args.tasks if TASKS[task]["popgym"] is not None]
        args.tasks = [task for task in args.tasks if task not in args.skipped]
        if args.skipped:
            print(
                f"skipping {', '.join(args.skipped)}: the POPGym tasks need the optional popgym package "
                '(pip install "sb3-dqfd[popgym]" or pip install popgym)',
                file=sys.stderr,
            )
        if not args.tasks:
            parser.error("no task left to run: install popgym for the POPGym tasks, or run --tasks CartPoleNoVel")
    return args


def plot_path(output: Path, task: str, n_tasks: int) -> Path:
    return output.with_suffix(".png") if n_tasks == 1 else output.with_name(f"{output.stem}_{task.lower()}.png")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    budgets = {task: args.budget or TASKS[task]["budget"] for task in args.tasks}
    eval_freqs = {task: args.eval_freq or max(1, budgets[task] // 20) for task in args.tasks}
    jobs = [
        (method, task, seed, dict(budget=budgets[task], eval_freq=eval_freqs[task], eval_episodes=args.eval_episodes))
        for task in args.tasks
        for seed in range(args.seeds)
        for method in args.methods
    ]
    estimate = estimate_seconds(args.tasks, args.methods, args.seeds, budgets, args.jobs)
    print(
        f"{len(jobs)} runs ({', '.join(f'{task} {budgets[task]:,} steps' for task in args.tasks)}; {args.seeds} seeds), "
        f"{args.jobs} at a time: about {estimate / 60:.0f} minutes on free cores (from STEPS_PER_SECOND)",
        flush=True,
    )
    metadata: dict[str, Any] = {
        "command": " ".join(["python", *(sys.argv if argv is None else ["benchmarks/bench_memory.py", *argv])]),
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "budgets": budgets,
        "eval_freqs": eval_freqs,
        "n_envs": N_ENVS,
        "machine": {"python": platform.python_version(), "torch": th.__version__, "cpus": os.cpu_count()},
        "hyperparameters": {
            task: {
                method: {key: repr(value) for key, value in hyperparameters(method, task).items()} for method in args.methods
            }
            for task in args.tasks
        },
        "estimated_seconds": estimate,
    }
    partial_path = args.output.with_name(args.output.stem + "_partial.json")
    start = time.perf_counter()
    results = run_in_processes(
        run_one,
        jobs,
        args.jobs,
        on_result=lambda done: save_results(
            partial_path, [curve for curve, _ in done], metadata | {"complete": False, "runs": [extra for _, extra in done]}
        ),
    )
    curves = [curve for curve, _ in results]
    report: dict[str, Any] = {}
    sections = [f"Command: `OMP_NUM_THREADS=1 {metadata['command']}`\n"]
    for task in args.tasks:
        task_results = [result for result, job in zip(results, jobs, strict=True) if job[1] == task]
        task_curves = [curve for curve, _ in task_results]
        rows = summarize_task(task_results, TASKS[task]["threshold"])
        report[task] = {"threshold": TASKS[task]["threshold"], "rows": rows, "goals": goals(rows)}
        report[task]["popgym_paper_reference"] = POPGYM_PAPER_REFERENCE.get(task)
        table = task_table(task, rows, TASKS[task]["threshold"])
        title = f"{task}, {budgets[task]:,} env steps, 8 envs, {args.seeds} seed(s)"
        sections.append(f"### {title}\n\n{table}\n")
        plot_curves(task_curves, plot_path(args.output, task, len(args.tasks)), title, TASKS[task]["threshold"])
        print(f"\n{title} (medians over seeds)\n{table}", flush=True)
    goal_table = goals_table(report)
    sections.append(f"### Goals (TransformerPPO vs RecurrentPPO, medians)\n\n{goal_table}\n")
    if args.skipped:
        sections.append(f"Skipped (popgym not installed): {', '.join(args.skipped)}.\n")
    print(f"\n{goal_table}")
    wall = time.perf_counter() - start
    metadata |= {"complete": True, "wall_seconds": wall, "report": report, "runs": [extra for _, extra in results]}
    save_results(args.output, curves, metadata)
    args.output.with_suffix(".md").write_text("\n".join(sections))
    partial_path.unlink(missing_ok=True)
    print(f"results: {args.output} (+ .md, .png); {wall / 60:.1f} minutes", flush=True)
    return metadata


if __name__ == "__main__":
    exit_on_ctrl_c(main, "the finished runs in <output>_partial.json")
