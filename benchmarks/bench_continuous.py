"""
Continuous actions from demonstrations: SACfD, TD3fD and the RLPD preset against rl-zoo3's tuned SAC and TD3, side by
side on the same seeds, demonstrations, budget and evaluation schedule.

Methods (``--algos``):

* ``sacfd``, ``td3fd``: SACfD / TD3fD with the shipped entry of the task (``sb3_dqfd/hyperparams/sacfd.yml``,
  ``td3fd.yml``; an env without an entry borrows the one of ``--fd-entry``, default ``LunarLanderContinuous-v3``),
  pre-trained with the entry's ``pretrain_steps`` (``--pretrain-steps``) and evaluated right after pre-training;
* ``rlpd``: ``SACfD(..., **RLPD_HYPERPARAMS)`` (Ball et al. 2023): UTD 20 with 10 critics is ~60x SAC's compute per
  environment step on a CPU (measured: see below), so ``--rlpd-gradient-steps`` (default RLPD's 20) and
  ``--rlpd-budget`` (default: the budget) say what was run; both are in the results, and in the label when they differ
  from RLPD's;
* ``sac``, ``td3``: SB3's SAC / TD3 with rl-zoo3's entry of the task, read from the installed rl-zoo3
  (:func:`sb3_dqfd.common.hyperparams.zoo_hyperparameters`, ``--zoo-entry`` to read another id's entry).
  Their ``lin_`` learning-rate schedules decay over this benchmark's budget (as rl-zoo3's ``-n``).

Tasks:

* ``LunarLanderContinuous-v3`` (default): 20 episodes of the built-in expert (gymnasium's heuristic lander in its
  continuous mode) per seed, the same for every method. Goals (medians over seeds): every evaluation from the one right
  after pre-training to the end of the budget at >= 200 (the lowest such evaluation per seed); final mean return
  above the teacher's, measured on the same evaluation env; for contrast, the steps SAC needs for its first evaluation
  >= 200; retention (lowest evaluation after pre-training / the pre-trained one, from the return floor of
  :data:`~sb3_dqfd.common.experiment.RETURN_FLOORS`, 0 for the lander); environment steps per second of each method
  (training time, evaluation excluded, pre-training included).
* A MuJoCo task (``--env Hopper-v5`` etc., needs ``pip install "gymnasium[mujoco]"``): demonstrations recorded with
  ``sb3_dqfd.record_demonstrations(model, env_id, n_episodes)`` from ``--expert-model PATH`` (any SB3 zip, with
  ``--expert-algo`` when the zip does not tell its algorithm, e.g. ``ppo``; ``VecNormalize`` statistics saved with it,
  as rl-zoo3 saves them, scale what it sees; at most 10 episodes: ``--demo-episodes``, default 10). rl-zoo3's MuJoCo
  entries are for the ``-v4`` ids: pass ``--zoo-entry Hopper-v4``. Goal: 90% of the expert's return (measured on the
  evaluation env) within 1/5 of the steps SAC needs to reach it; when SAC never reaches it within its budget, within
  1/5 of that budget (the least SAC would need). The HalfCheetah-v5 expert of the README: rl-zoo3's tuned PPO (its
  HalfCheetah-v4 entry under the v5 id, ``benchmarks/experts/ppo_halfcheetah.yml``; 1M steps, ~17 minutes on a CPU
  core; not part of this benchmark). Its Hopper-v4 entry (``benchmarks/experts/ppo_hopper.yml``) with seed 0 learns
  to stand still (a return of ~1,000 from the survival bonus alone), not an expert to learn hopping from::

      OMP_NUM_THREADS=1 python -m rl_zoo3.train --algo ppo --env HalfCheetah-v5 \\
          -conf benchmarks/experts/ppo_halfcheetah.yml --seed 0 -f experts --eval-freq 50000 --eval-episodes 10
      OMP_NUM_THREADS=1 python benchmarks/bench_continuous.py --env HalfCheetah-v5 --zoo-entry HalfCheetah-v4 \\
          --expert-model experts/ppo/HalfCheetah-v5_1/HalfCheetah-v5.zip --expert-algo ppo --budget 50000 \\
          --eval-freq 5000 --algos sacfd td3fd rlpd sac --rlpd-gradient-steps 2 --rlpd-budget 10000 --jobs 2

  SACfD and TD3fD run their shipped HalfCheetah-v5 entries: the lander's with 10,000 pre-training updates (its 1,000
  are too few on 10 HalfCheetah episodes: SACfD's cloned actor scores 246 / 881 / 1,610 / 3,357 / 3,885 after 1k /
  2.5k / 5k / 10k / 20k updates, TD3fD's 414 / 588 / 1,200 / 3,060 up to 10k; 5 episodes each, seed 0) and
  ``normalized_rl_coef`` 2.5 (without it the pre-trained actors collapse at the hand-off: see the entries' headers).

Every run evaluates the deterministic policy on ``--eval-episodes`` (>= 10 by default) episodes right after
pre-training (or at step 0) and every ``--eval-freq`` environment steps, prints a progress line per evaluation, and
is saved as soon as it ends (``<name>.partial.json``, so Ctrl-C keeps every finished run).

Cost (CPU seconds per 1,000 environment steps once learning starts, one process and torch thread, measured on a
2-core machine loaded by other runs, likely somewhat above the cost on free cores): SAC 22, TD3 14, SACfD 22, TD3fD 19
(+ 17 s per 1,000 pre-training updates), RLPD 70-76 per gradient step per environment step (10 LayerNorm critics):
152 at UTD 2, 1,400 at its UTD of 20. Random steps before ``learning_starts`` cost about 0.3 s per 1,000, an
evaluation about 0.65 ms per step (up to 6.5 s for 10 episodes of 1,000 steps). A run that fits about 85 minutes on 2
cores by these numbers (3 seeds x 5 methods; RLPD at UTD 2 for 12,500 steps, which its label says)::

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_continuous.py --budget 30000 --eval-freq 2500 \\
        --rlpd-gradient-steps 2 --rlpd-budget 12500 --jobs 2

RLPD as published (UTD 20) on the same 30,000 steps (25,000 of them learning) would take about 10 CPU hours per seed
here.

A few minutes, to see it work: ``python benchmarks/bench_continuous.py --small --output-dir /tmp/continuous``.
Results: ``bench_continuous_{small,full}_<env>.json`` (curves, table, goals, settings, machine), ``.md`` (table and
goals) and ``.png`` in ``benchmarks/results`` or ``--output-dir``.
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
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

from sb3_dqfd.common.demonstrations import Demonstrations, record_demonstrations
from sb3_dqfd.common.experiment import (
    RETURN_FLOORS,
    CurveCallback,
    LearningCurve,
    exit_on_ctrl_c,
    format_table,
    plot_curves,
    run_in_processes,
    save_results,
    summarize,
    train_with_curve,
)
from sb3_dqfd.common.experts import (
    EXPERTS,
    NormalizedExpert,
    find_vecnormalize_statistics,
    get_expert,
    load_vecnormalize_statistics,
)
from sb3_dqfd.common.hyperparams import HYPERPARAMS_DIR, shipped_hyperparameters, zoo_hyperparameters
from sb3_dqfd.sacfd import RLPD_HYPERPARAMS, SACfD
from sb3_dqfd.td3fd import TD3fD

RESULTS = Path(__file__).parent / "results"
LANDER = "LunarLanderContinuous-v3"
#: The methods of ``--algos`` and their labels in tables and plots (RLPD's label says what was cut, see ``rlpd_label``)
METHODS = {"sacfd": "SACfD", "td3fd": "TD3fD", "rlpd": "RLPD", "sac": "SAC (rl-zoo3)", "td3": "TD3 (rl-zoo3)"}
#: The methods that learn from the demonstrations, and the baselines
DEMONSTRATION_METHODS = ("sacfd", "td3fd", "rlpd")
#: The lander's goal: every evaluation from the one right after pre-training on at or above this
LANDER_THRESHOLD = 200.0
#: The MuJoCo goal: this share of the expert's return ...
MUJOCO_SHARE = 0.9
#: ... within this fraction of the steps SAC needs for it
MUJOCO_STEP_FRACTION = 1 / 5
#: At most this many demonstration episodes on a MuJoCo task (the goal is stated for them)
MUJOCO_MAX_EPISODES = 10
#: Seeds of the evaluation envs (``EVAL_SEED + seed``; the teacher is measured on ``EVAL_SEED``'s) and demonstrations
EVAL_SEED = 10_000
DEMO_SEED = 77_000
#: ``--small``: a few minutes on one core
SMALL = dict(seeds=1, budget=4_000, rlpd_budget=2_500, eval_freq=1_000, eval_episodes=3, teacher_episodes=5)
SMALL_PRETRAIN_STEPS = 200
SMALL_RLPD_GRADIENT_STEPS = 1
SMALL_LEARNING_STARTS = 1_000


def env_shortname(env_id: str) -> str:
    """:return: ``env_id`` for file names: ``LunarLanderContinuous-v3`` -> ``lunarlandercontinuous``"""
    return env_id.split("/")[-1].split("-")[0].lower()


def rlpd_label(gradient_steps: int, budget: int, full_budget: int) -> str:
    """:return: RLPD's label, naming what differs from RLPD's settings (UTD) and from the others' budget"""
    changes = [f"UTD {gradient_steps}"] if gradient_steps != RLPD_HYPERPARAMS["gradient_steps"] else []
    changes += [f"{budget:,} steps"] if budget != full_budget else []
    return f"RLPD ({', '.join(changes)})" if changes else "RLPD"


def fd_entry(env_id: str, entry: str | None) -> str:
    """
    :param env_id: the task
    :param entry: ``--fd-entry`` (None: the task's own entry if shipped, else the lander's)
    :return: the id whose shipped SACfD/TD3fD entry the run uses
    """
    if entry is not None:
        return entry
    shipped = (HYPERPARAMS_DIR / "sacfd.yml").read_text()
    return env_id if f"\n{env_id}:" in shipped else LANDER


def method_hyperparameters(method: str, settings: dict[str, Any]) -> dict[str, Any]:
    """
    :param method: a key of :data:`METHODS`
    :param settings: the run's settings (see :func:`build_settings`)
    :return: the constructor arguments of the method (the demonstrations and the seed left out)
    """
    if method in ("sacfd", "td3fd"):
        algorithm = SACfD if method == "sacfd" else TD3fD
        hyperparameters = shipped_hyperparameters(algorithm, settings["fd_entry"])
        if settings["pretrain_steps"] is not None:
            hyperparameters["pretrain_steps"] = settings["pretrain_steps"]
    elif method == "rlpd":
        hyperparameters = {**RLPD_HYPERPARAMS, "gradient_steps": settings["rlpd_gradient_steps"]}
    elif method in ("sac", "td3"):
        with gym.make(settings["env_id"]) as env:
            action_space = env.action_space
        hyperparameters = zoo_hyperparameters(method, settings["zoo_entry"], action_space)
    else:
        raise ValueError(f"Unknown method {method!r}: use one of {list(METHODS)}")
    if settings["learning_starts"] is not None:
        hyperparameters["learning_starts"] = settings["learning_starts"]
    return hyperparameters


def load_expert(path: str, algo: str | None) -> BaseAlgorithm | NormalizedExpert:
    """
    :param path: the expert's zip
    :param algo: the algorithm that saved it (None: read from the zip, where only one algorithm fits)
    :return: the SB3 model saved at ``path``; when ``VecNormalize`` statistics were saved with it (rl-zoo3's
        ``normalize``), the model playing raw observations scaled with them
    """
    from sb3_dqfd.cli import UsageError, load_model

    try:
        model = load_model(path, algo)[0]
    except UsageError as error:
        raise ValueError(f"--expert-model: {str(error).replace('--algo', '--expert-algo')}") from None
    statistics = find_vecnormalize_statistics(path)
    return model if statistics is None else NormalizedExpert(model, load_vecnormalize_statistics(statistics))


def demonstrations(settings: dict[str, Any], seed: int) -> Demonstrations:
    """
    :param settings: the run's settings
    :param seed: the run's seed
    :return: the demonstrations of every method's run of this seed (episodes seeded ``DEMO_SEED * (seed + 1) + i``)
    """
    expert: Any = (
        get_expert(settings["env_id"])
        if settings["expert_model"] is None
        else load_expert(settings["expert_model"], settings["expert_algo"])
    )
    return record_demonstrations(expert, settings["env_id"], settings["demo_episodes"], seed=DEMO_SEED * (seed + 1))


class ExpertPolicy:
    """
    A built-in expert (``observation -> action``) with SB3's ``predict``, for ``evaluate_policy``.

    :param expert: the expert
    """

    def __init__(self, expert: Any) -> None:
        self.expert = expert

    def predict(
        self, observation: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        return np.stack([np.asarray(self.expert(obs)) for obs in observation]), None


def measure_teacher(settings: dict[str, Any], n_episodes: int) -> dict[str, float]:
    """
    :param settings: the run's settings
    :param n_episodes: episodes to evaluate on
    :return: the teacher's mean and standard deviation of the return on the evaluation env of seed 0 (built as the
        runs build theirs; the first episodes are those of that run's evaluations), deterministic as the agents
    """
    env_id = settings["env_id"]
    expert = (
        ExpertPolicy(get_expert(env_id))
        if settings["expert_model"] is None
        else load_expert(settings["expert_model"], settings["expert_algo"])
    )
    eval_env = make_vec_env(env_id, n_envs=1, seed=EVAL_SEED)
    returns, _ = evaluate_policy(expert, eval_env, n_eval_episodes=n_episodes, deterministic=True, return_episode_rewards=True)
    return {"mean": float(np.mean(returns)), "std": float(np.std(returns)), "episodes": n_episodes}


class EvaluationPrinter(BaseCallback):
    """
    Print a progress line after each evaluation of :func:`~sb3_dqfd.common.experiment.train_with_curve` (it runs after
    the curve's callback, whose curve it finds in the callback list SB3 passes in ``locals``).

    :param prefix: what the line starts with (task, method, seed)
    :param budget: the run's budget, for the line
    """

    def __init__(self, prefix: str, budget: int) -> None:
        super().__init__()
        self.prefix = prefix
        self.budget = budget
        self.start = time.perf_counter()
        self.printed = 0

    def _curve(self) -> LearningCurve | None:
        callback = self.locals.get("callback")
        children = callback.callbacks if isinstance(callback, CallbackList) else []
        return next((child.curve for child in children if isinstance(child, CurveCallback)), None)

    def _print_new(self) -> None:
        curve = self._curve()
        if curve is None:
            return
        for index in range(self.printed, len(curve.timesteps)):
            print(
                f"{self.prefix}: step {curve.timesteps[index]:,}/{self.budget:,} return {curve.mean_returns[index]:.1f} "
                f"({time.perf_counter() - self.start:.0f} s)",
                flush=True,
            )
        self.printed = len(curve.timesteps)

    def _on_training_start(self) -> None:
        self._print_new()

    def _on_step(self) -> bool:
        self._print_new()
        return True


def run_one(job: tuple[str, int, dict[str, Any]]) -> tuple[LearningCurve, dict[str, Any]]:
    """
    One training run in its own process (one torch thread, so parallel runs give the curves of serial ones).

    :param job: method (a key of :data:`METHODS`), seed, settings
    :return: the curve and what was run (label, budget, hyperparameters as text, share of a core)
    """
    th.set_num_threads(1)
    method, seed, settings = job
    wall, cpu = time.perf_counter(), time.process_time()
    env_id = settings["env_id"]
    hyperparameters = method_hyperparameters(method, settings)
    budget = settings["rlpd_budget"] if method == "rlpd" else settings["budget"]
    label = rlpd_label(settings["rlpd_gradient_steps"], budget, settings["budget"]) if method == "rlpd" else METHODS[method]
    env = make_vec_env(env_id, n_envs=1, seed=seed)
    model: BaseAlgorithm
    before_learning = None
    if method in DEMONSTRATION_METHODS:
        algorithm = TD3fD if method == "td3fd" else SACfD
        demos = demonstrations(settings, seed)
        fd_model = algorithm("MlpPolicy", env, seed=seed, **(hyperparameters | {"demonstrations": demos}))
        if fd_model.pretrain_steps > 0:  # evaluated right after pre-training; without it, at step 0
            before_learning = partial(fd_model.pretrain, fd_model.pretrain_steps)
        model = fd_model
    else:
        model = (SAC if method == "sac" else TD3)("MlpPolicy", env, seed=seed, **hyperparameters)
    eval_env: VecEnv = make_vec_env(env_id, n_envs=1, seed=EVAL_SEED + seed)
    printer = EvaluationPrinter(f"{env_shortname(env_id)} {label} seed {seed}", budget)
    curve = train_with_curve(
        model,
        label,
        seed,
        budget,
        eval_env,
        settings["eval_freq"],
        settings["eval_episodes"],
        before_learning=before_learning,
        extra_callback=printer,
    )
    print(f"{env_id} {label} seed {seed}: {np.round(curve.mean_returns, 1).tolist()}", flush=True)
    run = {
        "method": method,
        "label": label,
        "seed": seed,
        "budget": budget,
        "hyperparameters": {key: repr(value) for key, value in hyperparameters.items()},
        "cpu_share": (time.process_time() - cpu) / (time.perf_counter() - wall),
    }
    return curve, run


def _median_steps(steps: list[int | None]) -> float:
    """:return: the median of the steps, a run that never got there counting as infinitely many (inf)"""
    return float(np.median([np.inf if step is None else step for step in steps]))


def _finite(value: float) -> float | None:
    """:return: ``value``, None for inf (JSON has no infinity)"""
    return value if np.isfinite(value) else None


def lowest_after_pretraining(curve: LearningCurve) -> float:
    """:return: the lowest evaluation of the run, from the first (right after pre-training, or at step 0) to the end"""
    return float(min(curve.mean_returns))


def goals(
    curves: list[LearningCurve], runs: list[dict[str, Any]], teacher: float, env_id: str, return_floor: float
) -> dict[str, Any]:
    """
    The goals of the module docstring, from the curves (medians over seeds).

    :param curves: every method's curves on the task
    :param runs: what each run was (same order as ``curves``)
    :param teacher: the teacher's mean return on the evaluation env
    :param env_id: the task
    :param return_floor: the return floor of the retention
    :return: per method (its label) the measures, and the goal verdicts
    """
    labels = {run["label"]: run["method"] for run in runs}
    threshold = LANDER_THRESHOLD if env_id == LANDER else MUJOCO_SHARE * teacher
    per_method: dict[str, dict[str, Any]] = {}
    for label, method in labels.items():
        runs_of = [curve for curve in curves if curve.label == label]
        lowest = [lowest_after_pretraining(curve) for curve in runs_of]
        retention = [curve.retention(return_floor) for curve in runs_of]
        steps = [curve.steps_to_threshold(threshold) for curve in runs_of]
        per_method[label] = {
            "method": method,
            "lowest_eval_per_seed": lowest,
            "median_lowest_eval": float(np.median(lowest)),
            "median_first_eval": float(np.median([curve.mean_returns[0] for curve in runs_of])),
            "median_final": float(np.median([curve.mean_returns[-1] for curve in runs_of])),
            "retention_per_seed": retention,
            "median_retention": (
                None if any(value is None for value in retention) else float(np.median(np.asarray(retention, dtype=float)))
            ),
            "steps_to_threshold_per_seed": steps,
            "median_steps_to_threshold": _finite(_median_steps(steps)),
            "median_env_steps_per_second": float(
                np.median([curve.timesteps[-1] / curve.train_seconds for curve in runs_of if curve.train_seconds > 0])
            ),
        }
    result: dict[str, Any] = {"teacher_mean_return": teacher, "threshold": threshold, "methods": per_method}
    sac = next((label for label, method in labels.items() if method == "sac"), None)
    for label, measures in per_method.items():
        if measures["method"] not in DEMONSTRATION_METHODS:
            continue
        verdicts: dict[str, Any] = {"final_above_teacher": measures["median_final"] > teacher}
        if env_id == LANDER:
            verdicts["every_eval_at_200"] = measures["median_lowest_eval"] >= LANDER_THRESHOLD
        else:
            verdicts["within_a_fifth_of_sacs_steps"] = _within_fraction(label, sac, per_method, runs)
        measures["goals"] = verdicts
    if sac is not None:
        result["sac_first_eval_at_threshold"] = per_method[sac]["median_steps_to_threshold"]
    return result


def _within_fraction(
    label: str, sac: str | None, per_method: dict[str, dict[str, Any]], runs: list[dict[str, Any]]
) -> bool | None:
    """
    Whether the method's median steps to the threshold are at most :data:`MUJOCO_STEP_FRACTION` of SAC's (a SAC
    run that never got there counts as needing its budget: the least it would need). None without SAC runs.
    """
    if sac is None:
        return None
    steps = per_method[label]["median_steps_to_threshold"]
    if steps is None:
        return False
    sac_budget = max(run["budget"] for run in runs if run["label"] == sac)
    sac_steps = [sac_budget if step is None else step for step in per_method[sac]["steps_to_threshold_per_seed"]]
    return steps <= MUJOCO_STEP_FRACTION * float(np.median(sac_steps))


def format_goals(report: dict[str, Any]) -> str:
    """:return: the goals as lines of text, one per method"""
    lines = [f"teacher {report['teacher_mean_return']:.1f}; threshold {report['threshold']:.1f}"]
    for label, measures in report["methods"].items():
        retention = measures["median_retention"]
        steps = measures["median_steps_to_threshold"]
        lines.append(
            f"{label}: first eval {measures['median_first_eval']:.1f}, lowest eval {measures['median_lowest_eval']:.1f}, "
            f"final {measures['median_final']:.1f}, retention {'-' if retention is None else f'{retention:.2f}'}, "
            f"steps to threshold {'never' if steps is None else f'{steps:,.0f}'}, "
            f"{measures['median_env_steps_per_second']:.0f} env steps/s"
            + (f"; goals {json.dumps(measures['goals'])}" if "goals" in measures else "")
        )
    return "\n".join(lines)


def build_settings(args: argparse.Namespace) -> dict[str, Any]:
    """:return: what every run of the benchmark shares (picklable: sent to the worker processes)"""
    return dict(
        env_id=args.env,
        budget=args.budget,
        rlpd_budget=args.rlpd_budget if args.rlpd_budget is not None else args.budget,
        rlpd_gradient_steps=args.rlpd_gradient_steps,
        eval_freq=args.eval_freq,
        eval_episodes=args.eval_episodes,
        demo_episodes=args.demo_episodes,
        expert_model=args.expert_model,
        expert_algo=args.expert_algo,
        pretrain_steps=args.pretrain_steps,
        learning_starts=args.learning_starts,
        fd_entry=fd_entry(args.env, args.fd_entry),
        zoo_entry=args.zoo_entry or args.env,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default=LANDER, help="the task (default: %(default)s; MuJoCo ids need --expert-model)")
    parser.add_argument("--algos", nargs="+", default=list(METHODS), choices=list(METHODS), help="methods to run")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per method (default 3, 1 with --small)")
    parser.add_argument("--budget", type=int, default=None, help="environment steps per run (default 100,000)")
    parser.add_argument("--rlpd-budget", type=int, default=None, help="environment steps of RLPD (default: --budget)")
    parser.add_argument(
        "--rlpd-gradient-steps",
        type=int,
        default=None,
        help=f"RLPD's gradient steps per environment step (default RLPD's {RLPD_HYPERPARAMS['gradient_steps']})",
    )
    parser.add_argument("--eval-freq", type=int, default=None, help="evaluate every this many steps (default 5,000)")
    parser.add_argument("--eval-episodes", type=int, default=None, help="episodes per evaluation (default 10)")
    parser.add_argument("--teacher-episodes", type=int, default=None, help="episodes to measure the teacher (default 30)")
    parser.add_argument(
        "--demo-episodes",
        type=int,
        default=None,
        help=f"demonstration episodes per seed (default 20 on {LANDER}, {MUJOCO_MAX_EPISODES} with --expert-model)",
    )
    parser.add_argument("--expert-model", help="an SB3 zip that records the demonstrations (required but on the lander)")
    parser.add_argument(
        "--expert-algo", help="the algorithm that saved --expert-model, e.g. ppo (default: read from the zip where it can be)"
    )
    parser.add_argument("--pretrain-steps", type=int, default=None, help="SACfD/TD3fD pre-training (default: the entry's)")
    parser.add_argument(
        "--learning-starts", type=int, default=None, help="random steps before learning, for every method (default: each's)"
    )
    parser.add_argument("--fd-entry", help="the shipped SACfD/TD3fD entry to use (default: the env's, else the lander's)")
    parser.add_argument("--zoo-entry", help="the rl-zoo3 entry of SAC/TD3 (default: the env's; Hopper-v5: Hopper-v4)")
    parser.add_argument("--jobs", type=int, default=1, help="training runs in parallel, one process and torch thread each")
    parser.add_argument("--output-dir", type=Path, default=RESULTS, help="where the results go (default: %(default)s)")
    parser.add_argument(
        "--small",
        action="store_true",
        help="a few minutes: 1 seed, 4,000 steps (RLPD 2,500 at UTD 1), learning after 1,000 random steps, 200 "
        "pre-training updates, 3 episodes per evaluation",
    )
    args = parser.parse_args(argv)
    defaults = dict(seeds=3, budget=100_000, eval_freq=5_000, eval_episodes=10, teacher_episodes=30)
    small = dict(SMALL, pretrain_steps=SMALL_PRETRAIN_STEPS, rlpd_gradient_steps=SMALL_RLPD_GRADIENT_STEPS,
                 learning_starts=SMALL_LEARNING_STARTS)  # fmt: skip
    for name, value in (small if args.small else defaults).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.rlpd_gradient_steps is None:
        args.rlpd_gradient_steps = RLPD_HYPERPARAMS["gradient_steps"]
    if args.demo_episodes is None:
        args.demo_episodes = 20 if args.expert_model is None else MUJOCO_MAX_EPISODES
    for name in ("seeds", "budget", "rlpd_budget", "rlpd_gradient_steps", "eval_freq", "eval_episodes", "teacher_episodes",
                 "demo_episodes", "jobs"):  # fmt: skip
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    for name in ("pretrain_steps", "learning_starts"):
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')} must be at least 0, got {value}")
    if args.expert_model is None and args.env not in EXPERTS:
        parser.error(f"--env {args.env} has no built-in expert: give --expert-model (an SB3 zip of an expert)")
    if args.expert_model is not None:
        if not Path(args.expert_model).is_file():
            parser.error(f"--expert-model {args.expert_model}: no such file")
        if args.demo_episodes > MUJOCO_MAX_EPISODES:
            parser.error(
                f"--demo-episodes {args.demo_episodes}: the goal with --expert-model is stated for at most "
                f"{MUJOCO_MAX_EPISODES} episodes"
            )
    return args


def check_task(settings: dict[str, Any], algos: list[str]) -> None:
    """
    Refuse, before any run, a task whose actions are not a Box or whose entries are missing (the errors list the
    entries that exist), and an expert model that does not load.

    :param settings: the run's settings
    :param algos: the methods to run
    """
    with gym.make(settings["env_id"]) as env:
        action_space = env.action_space
    if not isinstance(action_space, gym.spaces.Box):
        raise ValueError(f"{settings['env_id']} has {action_space} actions: this benchmark needs a Box (use bench_dqfd.py)")
    for method in algos:
        method_hyperparameters(method, settings)
    if settings["expert_model"] is not None:
        load_expert(settings["expert_model"], settings["expert_algo"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    th.set_num_threads(1)
    command = "OMP_NUM_THREADS=1 python benchmarks/bench_continuous.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print("reproduce: " + command, flush=True)
    settings = build_settings(args)
    try:
        check_task(settings, args.algos)
    except (ValueError, TypeError, ImportError, gym.error.Error) as error:
        sys.exit(f"bench_continuous.py: error: {' '.join(str(error).split())}")
    output: Path = args.output_dir
    name = f"bench_continuous_{'small' if args.small else 'full'}_{env_shortname(args.env)}"
    start = time.perf_counter()
    teacher = measure_teacher(settings, args.teacher_episodes)
    print(f"teacher on the evaluation env: {teacher['mean']:.1f} +- {teacher['std']:.1f} ({args.teacher_episodes} episodes)")
    report: dict[str, Any] = {
        "command": command,
        "settings": {key: value for key, value in settings.items()} | {"seeds": args.seeds, "algos": args.algos},
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": th.__version__,
            "torch_threads": 1,
            "jobs": args.jobs,
            "load_at_start": os.getloadavg()[0],
        },
        "teacher": teacher,
    }
    jobs = [(method, seed, settings) for seed in range(args.seeds) for method in args.algos]
    partial_path = output / f"{name}.partial.json"

    def save_partial(finished: list[tuple[LearningCurve, dict[str, Any]]]) -> None:
        save_results(partial_path, [curve for curve, _ in finished], report | {"runs": [run for _, run in finished]})

    results = run_in_processes(run_one, jobs, args.jobs, on_result=save_partial)
    curves = [curve for curve, _ in results]
    runs = [run for _, run in results]
    teacher_curve = LearningCurve(
        f"teacher ({args.teacher_episodes} episodes)", 0, [0, args.budget], [teacher["mean"]] * 2, [teacher["std"]] * 2
    )
    return_floor = RETURN_FLOORS.get(args.env, 0.0)
    threshold = LANDER_THRESHOLD if args.env == LANDER else MUJOCO_SHARE * teacher["mean"]
    rows = summarize([teacher_curve, *curves], threshold, return_floor)
    table = format_table(rows, threshold)
    report["goals"] = goals(curves, runs, teacher["mean"], args.env, return_floor)
    report |= {"summary": rows, "table": table, "runs": runs, "wall_seconds": time.perf_counter() - start}
    text = f"{args.env}, {args.budget:,} steps, {args.seeds} seed(s)\n\n{table}\n\n{format_goals(report['goals'])}"
    print("\n" + text, flush=True)
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{name}.md").write_text(text + "\n")
    plot_curves([teacher_curve, *curves], output / f"{name}.png", f"{args.env}: from demonstrations vs rl-zoo3", threshold)
    save_results(output / f"{name}.json", [teacher_curve, *curves], report | {"complete": True})
    partial_path.unlink(missing_ok=True)
    print(f"results: {output / name}.json", flush=True)
    return report


if __name__ == "__main__":
    exit_on_ctrl_c(main, "the finished runs in <name>.partial.json")
