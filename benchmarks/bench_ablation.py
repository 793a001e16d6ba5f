"""
Ablation of DQfD's two Rainbow options: DQfD as shipped, + noisy nets (``policy_kwargs=dict(noisy=True)``), + a
distributional head (``policy_kwargs=dict(n_quantiles=N)``) and both, side by side on the same seeds, demonstrations
and evaluation schedule as ``benchmarks/bench_dqfd.py`` and ``benchmarks/bench_minatar.py`` (whose task settings,
demonstrations and evaluation schedules it imports):

* MountainCar-v0: 10 imperfect demonstrations (the scripted teacher scores about -120), 30k steps, evaluated every
  2,500 steps on 20 episodes, threshold -110; settings of ``sb3_dqfd/hyperparams/dqfd.yml``;
* LunarLander-v3: 20 demonstrations, 50k steps, evaluated every 2,500 steps on 10 episodes, threshold 200; settings of
  ``sb3_dqfd/hyperparams/dqfd.yml``;
* MinAtar/Breakout-v1 (not in the default ``--envs``): as ``bench_minatar.py`` runs DQfD, 20 demonstrations of the
  scripted teacher (``MinAtarImage`` uint8 frames), DQfD's defaults with ``CnnPolicy`` (``MinAtarCNN``), 100k steps,
  evaluated every 10k steps on 10 episodes; threshold 9.9, the teacher's mean return ``bench_minatar.py`` measured
  (``MINATAR_TEACHER_SCORES``; a MinAtar game without a measured teacher has no threshold, no hold share).

Variant settings: the task's DQfD settings, plus

* noisy: NoisyNet heads with the paper's ``sigma_0 = 0.5``; the entry's epsilon schedule
  (``exploration_initial_eps``, ``exploration_final_eps``, ``exploration_fraction``) is dropped, so that the noise
  alone explores (DQfD's default epsilon with a noisy network is 0); ``--noisy-keeps-epsilon`` keeps it (then both
  explore; use another ``--output-dir``, the results have the same variant names);
* distributional: ``n_quantiles`` from rl-zoo3's tuned QR-DQN entry of the task (MountainCar 25, LunarLander 170);
  rl-zoo3 has no QR-DQN entry for MinAtar: there it is 50 (``MINATAR_N_QUANTILES``, a choice, not tuned; QR-DQN's
  Atari setting is 200). ``--n-quantiles`` overrides every task's.

Reported per task (medians over seeds): the table of :func:`sb3_dqfd.common.experiment.summarize` (steps and seconds
to the threshold, share of evaluations at it, final return, retention of the pre-trained policy from the task's
return floor, training time), and per variant the share of the evaluations after a run first reaches the threshold
that stay at or above it (``hold share``; a run that never reaches it, or reaches it at its last evaluation, has
none). Goal: on MountainCar, DQfD + noisy holds -110 at >= 50% of the evaluations after it first reaches it, in the
median seed (a seed without a hold share counts as 0). Every mode starts with the cost of each part: milliseconds per
gradient step (``train(gradient_steps=1)``, the task's batch and network, a buffer of demonstrations and agent data)
and per acting step (``predict``) of every variant, timed in interleaved rounds inside one process.

Rough cost per task of the full ablation (4 variants x 3 seeds = 12 runs; CPU time per run from earlier results:
``cpu_share`` x the curve's times): MountainCar about 0.5 CPU-hour (2-3 minutes a run), LunarLander about 2
CPU-hours (3-10 minutes a run; at the default 170 quantiles a gradient step costs ~3.4x the shipped one with the
compiled quantile loss, ~24x and an hour a run without it), MinAtar Breakout 3-4 CPU-hours (DQfD about 15 minutes a
run; 13-30 wall minutes in ``bench_minatar.py``'s run on a loaded machine). The three tasks, 6-7 CPU-hours, need
more than one session: every finished run is saved at once to ``<name>.partial.json``, and each run
in progress to its checkpoint folder at each evaluation (``<name>.checkpoints/``: model, replay buffer, curve), so
Ctrl-C or the end of a session loses at most the steps since a run's last evaluation. ``--resume`` continues from
there: it keeps the finished runs, continues the runs in progress from their checkpoints (their curves list the step
in ``resumed_at``: the episode in progress, one transition and the random generators' states are not restored), runs
the rest and writes the results of all. Run the same command in every session (the first one starts afresh: there is
nothing to resume yet)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_ablation.py \\
        --envs MountainCar-v0 LunarLander-v3 MinAtar/Breakout-v1 --seeds 3 --jobs 2 --resume

``--resume`` refuses a partial file written by other options (tasks, budgets, evaluation schedules, seeds, variants,
quantiles, the variants' settings) and, when there is no partial file, a finished ``<name>.json`` (nothing to
continue; run without ``--resume`` to redo it). Without ``--resume`` a partial file is overwritten as runs finish.

The two small tasks only (the default ``--envs``; hours on 2 shared cores)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_ablation.py --seeds 3 --jobs 2

A quick check (1 seed, 2,000 steps per task, 500 pre-training updates, a few minutes)::

    OMP_NUM_THREADS=1 python benchmarks/bench_ablation.py --small --output-dir /tmp/ablation

Results: ``dqfd_ablation_{small,full}.json`` (curves, runs, tables, goal, step costs, the sessions that ran it;
``.partial.json`` while it runs) and one PNG per task, in ``benchmarks/results`` or ``--output-dir``.
"""

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecEnv

from sb3_dqfd.common.demonstrations import Demonstrations, record_demonstrations
from sb3_dqfd.common.experiment import (
    EXIT_CTRL_C,
    RETURN_FLOORS,
    LearningCurve,
    format_table,
    load_checkpoint,
    plot_curves,
    run_in_processes,
    save_results,
    summarize,
    train_with_curve,
)
from sb3_dqfd.common.experts import get_expert
from sb3_dqfd.common.hyperparams import shipped_hyperparameters
from sb3_dqfd.common.utils import flush_denormal
from sb3_dqfd.dqfd import DQfD

sys.path.insert(0, str(Path(__file__).parent))
from bench_dqfd import EVAL_FREQ, RESULTS, TASKS, env_shortname, expert_demonstrations
from bench_minatar import GAMES, make_game

#: The default tasks (``--envs``)
ENVS = ["MountainCar-v0", "LunarLander-v3"]
#: The MinAtar games ``--envs`` accepts (settings of ``bench_minatar.py``, whose ``GAMES`` has more)
MINATAR_GAMES = ["MinAtar/Breakout-v1"]
ENV_CHOICES = ENVS + MINATAR_GAMES
#: bench_minatar.py's defaults (``--budget``, ``--eval-freq``, ``--eval-episodes``), those of its measured run
MINATAR_BUDGET, MINATAR_EVAL_FREQ, MINATAR_EVAL_EPISODES = 100_000, 10_000, 10
#: The teachers' mean returns bench_minatar.py measured (``benchmarks/results/bench_minatar.json``,
#: ``goals[game]["teacher_mean_return"]``, 30 episodes): a MinAtar game's threshold (none for a game not listed)
MINATAR_TEACHER_SCORES: dict[str, float] = {"MinAtar/Breakout-v1": 9.9}
#: The variants and what each adds to the task's settings' ``policy_kwargs``
VARIANTS: dict[str, dict[str, bool]] = {
    "DQfD": dict(noisy=False, distributional=False),
    "DQfD + noisy": dict(noisy=True, distributional=False),
    "DQfD + distributional": dict(noisy=False, distributional=True),
    "DQfD + noisy + distributional": dict(noisy=True, distributional=True),
}
#: rl-zoo3's tuned QR-DQN ``n_quantiles`` (rl_zoo3/hyperparams/qrdqn.yml)
ZOO_QRDQN_N_QUANTILES = {"MountainCar-v0": 25, "LunarLander-v3": 170}
#: ``n_quantiles`` of a distributional variant on MinAtar, which has no rl-zoo3 QR-DQN entry: a choice, not tuned
MINATAR_N_QUANTILES = 50
#: The epsilon schedule a noisy variant drops from the shipped entry: the noise explores
EPSILON_KEYS = ("exploration_initial_eps", "exploration_final_eps", "exploration_fraction")
#: The goal: on MountainCar, DQfD + noisy holds the threshold at this share of the evaluations after it first reaches it
HOLD_GOAL = 0.5
GOAL_VARIANT, GOAL_ENV = "DQfD + noisy", "MountainCar-v0"
SMALL = dict(seeds=1, budget=2_000, eval_freq=1_000, n_eval_episodes=5, pretrain_steps=500)

#: One training run: variant, env id, seed, budget, DQfD's keyword arguments, evaluation frequency and episodes, and
#: its checkpoint folder (None: no checkpoints)
Job = tuple[str, str, int, int, dict[str, Any], int, int, str | None]
#: What identifies a run across sessions: variant, env id, seed
JobKey = tuple[str, str, int]
#: A finished run: its curve and its record (variant, env id, seed, share of a core)
Result = tuple[LearningCurve, dict[str, Any]]


def task_settings(env_id: str) -> dict[str, Any]:
    """
    :param env_id: a task of :data:`ENV_CHOICES`
    :return: its demonstration episodes (``n_demo_episodes``), full budget (``full``), evaluation frequency and
        episodes (``eval_freq``, ``n_eval_episodes``) and threshold (``threshold``; None: not measured)
    """
    if env_id in MINATAR_GAMES:
        return dict(
            n_demo_episodes=GAMES[env_id]["n_demo_episodes"],
            full=MINATAR_BUDGET,
            eval_freq=MINATAR_EVAL_FREQ,
            n_eval_episodes=MINATAR_EVAL_EPISODES,
            threshold=MINATAR_TEACHER_SCORES.get(env_id),
        )
    if env_id in ENVS:
        return TASKS[env_id] | dict(eval_freq=EVAL_FREQ)
    raise ValueError(f"No ablation settings for {env_id!r}: use one of {ENV_CHOICES}")


def is_minatar(env_id: str) -> bool:
    return env_id in MINATAR_GAMES


def shortname(env_id: str) -> str:
    """``"MountainCar-v0"`` -> ``"mountaincar"``, ``"MinAtar/Breakout-v1"`` -> ``"breakout"``: for file names."""
    return env_shortname(env_id.split("/")[-1])


def variant_hyperparameters(
    variant: str, env_id: str, n_quantiles: int | None = None, noisy_keeps_epsilon: bool = False
) -> dict[str, Any]:
    """
    The task's DQfD settings with the variant's options: the shipped entry (``sb3_dqfd/hyperparams/dqfd.yml``), or
    for a MinAtar game DQfD's defaults, as ``bench_minatar.py`` runs it.

    :param variant: a key of :data:`VARIANTS`
    :param env_id: the task
    :param n_quantiles: quantiles of a distributional variant (None: :data:`ZOO_QRDQN_N_QUANTILES`, or
        :data:`MINATAR_N_QUANTILES` on MinAtar)
    :param noisy_keeps_epsilon: a noisy variant keeps the entry's epsilon schedule (the noise and epsilon explore)
    :return: DQfD's keyword arguments
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}: use one of {list(VARIANTS)}")
    options = VARIANTS[variant]
    hyperparameters = {} if is_minatar(env_id) else shipped_hyperparameters(DQfD, env_id)
    policy_kwargs = dict(hyperparameters.get("policy_kwargs") or {})
    if options["noisy"]:
        policy_kwargs["noisy"] = True
        if not noisy_keeps_epsilon:
            hyperparameters = {key: value for key, value in hyperparameters.items() if key not in EPSILON_KEYS}
    if options["distributional"]:
        default = MINATAR_N_QUANTILES if is_minatar(env_id) else ZOO_QRDQN_N_QUANTILES[env_id]
        policy_kwargs["n_quantiles"] = n_quantiles or default
    return hyperparameters | {"policy_kwargs": policy_kwargs}


def task_demonstrations(env_id: str, seed: int) -> Demonstrations:
    """
    The scripted teacher's demonstrations of the task (``task_settings(env_id)["n_demo_episodes"]`` episodes) for a
    run of ``seed``: recorded as ``bench_dqfd.py`` records them, or on MinAtar as ``bench_minatar.py`` does
    (``MinAtarImage`` frames), from the same seeds (``10_000 * (seed + 1)``).
    """
    n_episodes = task_settings(env_id)["n_demo_episodes"]
    if is_minatar(env_id):
        return record_demonstrations(get_expert(env_id), make_game(env_id), n_episodes, seed=10_000 * (seed + 1))
    return expert_demonstrations(env_id, n_episodes, seed)


def make_dqfd(env_id: str, demonstrations: Demonstrations, **kwargs: Any) -> DQfD:
    """
    DQfD on the task: ``MlpPolicy`` on the env id, or on MinAtar ``CnnPolicy`` (``MinAtarCNN``) on
    ``bench_minatar.py``'s ``MinAtarImage`` env.

    :param kwargs: DQfD's other keyword arguments
    """
    if is_minatar(env_id):
        return DQfD("CnnPolicy", make_game(env_id), demonstrations=demonstrations, **kwargs)
    return DQfD("MlpPolicy", env_id, demonstrations=demonstrations, **kwargs)


def make_eval_env(env_id: str, seed: int) -> VecEnv:
    """The evaluation env of a run of ``seed`` (seeded ``1_000 + seed``, as in ``bench_dqfd.py`` and ``bench_minatar.py``)."""
    if is_minatar(env_id):
        return make_vec_env(partial(make_game, env_id), n_envs=1, seed=1_000 + seed)
    return make_vec_env(env_id, n_envs=1, seed=1_000 + seed)


def job_key(job: Job) -> JobKey:
    return job[0], job[1], job[2]


def checkpoint_root(output: Path, small: bool) -> Path:
    """The folder of the runs' checkpoints, one sub-folder per run in progress (:func:`checkpoint_folder`)."""
    return output / f"{result_name(small)}.checkpoints"


def checkpoint_folder(root: Path, key: JobKey) -> Path:
    """``DQfD + noisy`` on ``MinAtar/Breakout-v1`` seed 2 -> ``<root>/breakout_dqfd_noisy_seed2``."""
    variant, env_id, seed = key
    return root / f"{shortname(env_id)}_{'_'.join(variant.lower().replace('+', ' ').split())}_seed{seed}"


def run_one(job: Job) -> Result:
    """
    One training run in its own process (one torch thread): record the demonstrations (not timed), pre-train and
    train the variant, evaluating after pre-training and every ``eval_freq`` steps. With a checkpoint folder the run
    is saved at each evaluation and continues from there if a stopped session left it one (``load_checkpoint``; the
    curve's ``resumed_at`` lists where).

    :param job: variant, env id, seed, budget, DQfD's keyword arguments, evaluation frequency, evaluation episodes,
        checkpoint folder
    :return: the curve and the run's record: variant, env id, seed and share of a core
    """
    th.set_num_threads(1)
    variant, env_id, seed, budget, hyperparameters, eval_freq, n_eval_episodes, checkpoint_dir = job
    wall, cpu = time.perf_counter(), time.process_time()
    model = make_dqfd(env_id, task_demonstrations(env_id, seed), seed=seed, **hyperparameters)
    resumed = load_checkpoint(checkpoint_dir, model) if checkpoint_dir is not None else None
    model, curve_so_far = resumed if resumed is not None else (model, None)
    curve = train_with_curve(
        model,
        variant,
        seed,
        budget,
        make_eval_env(env_id, seed),
        eval_freq,
        n_eval_episodes,
        before_learning=partial(model.pretrain, model.pretrain_steps),
        checkpoint_dir=checkpoint_dir,
        curve=curve_so_far,
    )
    print(f"{env_id} {variant} seed {seed}: {np.round(curve.mean_returns, 1).tolist()}", flush=True)
    cpu_share = (time.process_time() - cpu) / (time.perf_counter() - wall)
    return curve, {"variant": variant, "env_id": env_id, "seed": seed, "cpu_share": cpu_share}


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
    Milliseconds per gradient step and per acting step of every variant, with the task's settings.

    Each model gets the task's demonstrations and ``warmup_steps`` steps of its own interaction (which also warm it
    up); then, in interleaved rounds of ``steps`` calls, ``train(gradient_steps=1)`` and ``predict`` of one observation
    (the acting of ``learn()``, ``deterministic=False``) are timed, denormals flushed as in ``learn()``. Each figure is
    the median over rounds of the round's mean, so other processes on a shared machine hit every variant alike.

    :return: per variant the ms of a gradient step and of an acting step and their ratio to DQfD's; the share of a
        core the process had (below ~0.9 the machine was loaded: absolute figures are inflated, ratios hold better)
    """
    th.set_num_threads(1)
    demos = task_demonstrations(env_id, 0)
    models = {}
    for variant in VARIANTS:
        settings = variant_hyperparameters(variant, env_id, n_quantiles) | dict(pretrain_steps=0, seed=0)
        model = make_dqfd(env_id, demos, **settings)
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


def result_name(small: bool) -> str:
    """The stem of the result files: ``dqfd_ablation_small`` or ``dqfd_ablation_full``."""
    return f"dqfd_ablation_{'small' if small else 'full'}"


def plan(args: argparse.Namespace) -> tuple[list[Job], dict[str, Any]]:
    """
    :param args: the parsed options
    :return: the runs, and the configuration they were made with (JSON types: what a partial results file stores, and
        what ``--resume`` compares)
    """
    jobs: list[Job] = []
    tasks: dict[str, dict[str, Any]] = {}
    checkpoints = checkpoint_root(args.output_dir, args.small)
    for env_id in args.envs:
        settings = task_settings(env_id)
        budget = args.timesteps or (SMALL["budget"] if args.small else settings["full"])
        evaluation = SMALL if args.small else settings
        eval_freq, n_eval_episodes = evaluation["eval_freq"], evaluation["n_eval_episodes"]
        tasks[env_id] = dict(
            budget=budget, eval_freq=eval_freq, n_eval_episodes=n_eval_episodes, n_demo_episodes=settings["n_demo_episodes"]
        )
        for variant in args.variants:
            hyperparameters = variant_hyperparameters(variant, env_id, args.n_quantiles, args.noisy_keeps_epsilon)
            if args.small:
                hyperparameters["pretrain_steps"] = SMALL["pretrain_steps"]
            for seed in range(args.seeds):
                folder = str(checkpoint_folder(checkpoints, (variant, env_id, seed)))
                jobs.append((variant, env_id, seed, budget, hyperparameters, eval_freq, n_eval_episodes, folder))
    configuration = {
        "small": args.small,
        "seeds": args.seeds,
        "variants": args.variants,
        "n_quantiles": args.n_quantiles,
        "tasks": tasks,
        "hyperparameters": {f"{job[1]} {job[0]}": {key: str(value) for key, value in job[4].items()} for job in jobs},
    }
    return jobs, json.loads(json.dumps(configuration))


def prepare_checkpoints(root: Path, configuration: dict[str, Any], resume: bool, remaining: list[Job]) -> list[str]:
    """
    Keep the checkpoints of the runs a stopped session left in progress if they can continue (``--resume`` with the
    configuration they were made with, runs still to do), remove the others; then record the configuration in ``root``.

    :param root: the checkpoint folder (:func:`checkpoint_root`)
    :param configuration: the configuration of this command (:func:`plan`)
    :param resume: ``--resume`` was given
    :param remaining: the runs still to do
    :return: the names of the runs' checkpoint folders kept
    """
    stored = root / "configuration.json"
    if not (resume and stored.is_file() and json.loads(stored.read_text()) == configuration):
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps(configuration))
    to_do = {checkpoint_folder(root, job_key(job)) for job in remaining}
    for folder in (path for path in root.iterdir() if path.is_dir() and path not in to_do):
        shutil.rmtree(folder)  # a run saved as finished just before a stop
    return sorted(folder.name for folder in to_do if folder.is_dir())


def load_partial(path: Path) -> dict[str, Any]:
    """
    Read a partial results file of this benchmark (written while it runs).

    :param path: the ``.partial.json`` file
    :return: its metadata (``configuration``, ``step_costs``, ``sessions``, ...) and ``finished``: the finished runs by
        :func:`job_key`, each its curve and its record
    :raises ValueError: the file is not one this version of the benchmark wrote (not JSON, no configuration or run
        records, curves that do not match the records)
    """
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    metadata = content.get("metadata") if isinstance(content, dict) else None
    if not isinstance(metadata, dict) or not {"configuration", "runs"} <= set(metadata):
        raise ValueError(
            f"{path} has no configuration or run records: an older bench_ablation.py wrote it, so it cannot be checked "
            "against these options; delete it, or run without --resume (which overwrites it as runs finish)"
        )
    curves, runs = content.get("curves"), metadata["runs"]
    if not isinstance(curves, list) or not isinstance(runs, list) or len(curves) != len(runs):
        raise ValueError(f"{path}: the curves and the run records do not match one to one")
    finished: dict[JobKey, Result] = {}
    for curve_fields, run in zip(curves, runs, strict=True):
        try:
            curve = LearningCurve(**curve_fields)
            key = (run["variant"], run["env_id"], run["seed"])
        except (TypeError, KeyError) as error:
            raise ValueError(f"{path}: a curve or run record it does not hold ({error!r})") from None
        if (curve.label, curve.seed) != (key[0], key[2]):
            raise ValueError(f"{path}: the curve of {curve.label!r} seed {curve.seed} is recorded as the run {run}")
        finished[key] = (curve, run)
    return metadata | {"finished": finished}


#: A setting one configuration has and the other does not
_ABSENT = object()


def configuration_differences(stored: dict[str, Any], current: dict[str, Any], limit: int = 8) -> list[str]:
    """
    :param stored: the configuration of a partial results file
    :param current: the one of these options (:func:`plan`)
    :param limit: at most this many lines, then a count of the others
    :return: one line per setting that differs, nested ones named by their path (``tasks MountainCar-v0 budget``);
        empty: the same
    """

    def differences(old: Any, new: Any, where: str) -> list[str]:
        if old == new:
            return []
        if isinstance(old, dict) and isinstance(new, dict):
            lines = []
            for key in dict.fromkeys([*new, *old]):
                lines += differences(old.get(key, _ABSENT), new.get(key, _ABSENT), f"{where} {key}".strip())
            return lines
        shown = ["none" if value is _ABSENT else json.dumps(value) for value in (old, new)]
        return [f"{where}: {shown[0]} in the file, {shown[1]} now"]

    lines = differences(stored, current, "")
    return lines[:limit] + ([f"and {len(lines) - limit} more"] if len(lines) > limit else [])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """
    The options; with ``--resume``, also the partial results file to continue (``args.previous``: see
    :func:`load_partial`; None when there is none), refused when it does not match the options.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--small", action="store_true", help="a quick check: " + ", ".join(f"{k}={v}" for k, v in SMALL.items())
    )
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3, 1 with --small)")
    parser.add_argument("--envs", nargs="+", default=ENVS, choices=ENV_CHOICES, help=f"tasks (default: {' '.join(ENVS)})")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), help="variants to run")
    parser.add_argument("--timesteps", type=int, default=None, help="override the budget of every task")
    parser.add_argument(
        "--n-quantiles",
        type=int,
        default=None,
        help=f"quantiles of the distributional variants (default: rl-zoo3's QR-DQN {ZOO_QRDQN_N_QUANTILES}, "
        f"{MINATAR_N_QUANTILES} on MinAtar)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="training runs in parallel, one process and torch thread each")
    parser.add_argument("--output-dir", type=Path, default=RESULTS, help="where the JSON and PNGs go")
    parser.add_argument("--no-step-costs", action="store_true", help="skip the timing of a step per variant")
    parser.add_argument(
        "--remeasure-step-costs",
        action="store_true",
        help="with --resume: time the steps again with the code as it is now (the partial file's timings are kept in "
        "the results as replaced_step_costs)",
    )
    parser.add_argument(
        "--noisy-keeps-epsilon",
        action="store_true",
        help="the noisy variants keep the entry's epsilon schedule instead of exploring with the noise alone",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue <output-dir>/<name>.partial.json: keep its finished runs (and step costs), run the rest; refused "
        "if other options wrote it",
    )
    args = parser.parse_args(argv)
    args.seeds = args.seeds if args.seeds is not None else (SMALL["seeds"] if args.small else 3)
    for name in ("seeds", "jobs", "timesteps", "n_quantiles"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    args.envs = list(dict.fromkeys(args.envs))
    args.variants = [variant for variant in VARIANTS if variant in args.variants]
    args.previous = None
    if args.resume:
        partial_path = args.output_dir / f"{result_name(args.small)}.partial.json"
        final_path = args.output_dir / f"{result_name(args.small)}.json"
        if partial_path.exists():
            try:
                args.previous = load_partial(partial_path)
            except ValueError as error:
                parser.error(f"--resume: {error}")
            differences = configuration_differences(args.previous["configuration"], plan(args)[1])
            if differences:
                parser.error(
                    f"--resume: {partial_path} was written by other options ({'; '.join(differences)}). Its command: "
                    f"{args.previous.get('command')}. Resume with those options, or run without --resume (which "
                    "overwrites it as runs finish)"
                )
        elif final_path.exists():
            parser.error(
                f"--resume: nothing to continue: no {partial_path.name}, and {final_path} holds a finished ablation; "
                "run without --resume to redo it (the results are overwritten at the end)"
            )
    return args


def report_task(env_id: str, curves: list[LearningCurve], budget: int, seeds: int, plot_path: Path) -> dict[str, Any]:
    """
    Print and plot one task's results.

    :param env_id: the task
    :param curves: its runs
    :param budget: its steps per run
    :param seeds: seeds per variant
    :param plot_path: where its PNG goes
    :return: its threshold (None: the table has no threshold columns and no hold share is reported), the rows of
        :func:`summarize` and the hold shares (:func:`hold_summary`)
    """
    threshold = task_settings(env_id)["threshold"]
    rows = summarize(curves, threshold, RETURN_FLOORS.get(env_id, 0.0))
    print(f"\n{env_id}, {budget:,} steps, {seeds} seed(s)\n{format_table(rows, threshold)}", flush=True)
    if threshold is None:
        holds = None
        print(f"hold share: not reported ({env_id} has no threshold)", flush=True)
    else:
        holds = hold_summary(curves, threshold)
        print("hold share (evaluations >= threshold after the first one there): " + json.dumps(holds), flush=True)
    plot_curves(curves, plot_path, f"{env_id}: DQfD ablation", threshold)
    return {"threshold": threshold, "summary": rows, "hold": holds}


def measure_step_costs(args: argparse.Namespace, stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    The step costs of every task: those a resumed partial file holds (``stored``; none with
    ``--remeasure-step-costs``), the others measured now (none with ``--no-step-costs``).
    """
    costs = [cost for cost in stored if cost["env_id"] in args.envs and not args.remeasure_step_costs]
    for cost in costs:
        print(f"\nstep costs from the partial file:\n{format_step_costs(cost)}\n", flush=True)
    if args.no_step_costs:
        return costs
    measured = {cost["env_id"] for cost in costs}
    for env_id in args.envs:
        if env_id not in measured:
            costs.append(step_costs(env_id, args.n_quantiles))
            print("\n" + format_step_costs(costs[-1]) + "\n", flush=True)
    return costs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    th.set_num_threads(1)
    command = "OMP_NUM_THREADS=1 python benchmarks/bench_ablation.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    print("reproduce: " + command, flush=True)
    output: Path = args.output_dir
    name = result_name(args.small)
    partial_path = output / f"{name}.partial.json"
    jobs, configuration = plan(args)
    previous: dict[str, Any] = args.previous or {}
    finished: dict[JobKey, Result] = previous.get("finished", {})
    if args.previous is not None:
        print(f"--resume: {len(finished)} of {len(jobs)} runs finished already ({partial_path})", flush=True)
    elif args.resume:
        print(f"--resume: no {partial_path}, starting afresh", flush=True)
    elif partial_path.exists():
        print(f"{partial_path} exists: it is overwritten as runs finish (--resume would continue it)", flush=True)
    machine = f"{platform.processor() or platform.machine()}, torch threads 1, load {os.getloadavg()[0]:.1f} at start"
    report: dict[str, Any] = {
        "command": command,
        "machine": machine,
        "sessions": [*previous.get("sessions", []), {"command": command, "machine": machine}],
        "configuration": configuration,
        "step_costs": measure_step_costs(args, previous.get("step_costs", [])),
    }
    if args.remeasure_step_costs and previous.get("step_costs"):
        report["replaced_step_costs"] = [*previous.get("replaced_step_costs", []), *previous["step_costs"]]
    report["budgets"] = {env_id: task["budget"] for env_id, task in configuration["tasks"].items()}
    report["hyperparameters"] = configuration["hyperparameters"]
    remaining = [job for job in jobs if job_key(job) not in finished]
    checkpoints = checkpoint_root(output, args.small)
    in_progress = prepare_checkpoints(checkpoints, configuration, args.resume, remaining)
    if in_progress:
        print(f"--resume: {len(in_progress)} run(s) continue from their checkpoints: {', '.join(in_progress)}", flush=True)

    def save_partial(new: list[Result]) -> None:
        done = [*finished.values(), *new]
        runs = [run for _, run in done]
        temporary = partial_path.with_name(partial_path.name + ".tmp")  # a run stopped while writing keeps the old file
        save_results(temporary, [curve for curve, _ in done], report | {"runs": runs, "complete": False})
        os.replace(temporary, partial_path)
        for run in runs:  # saved: a finished run's checkpoint is no longer needed
            shutil.rmtree(checkpoint_folder(checkpoints, (run["variant"], run["env_id"], run["seed"])), ignore_errors=True)

    try:
        new_results = run_in_processes(run_one, remaining, args.jobs, on_result=save_partial)
    except KeyboardInterrupt:
        saved = f"--resume continues from {partial_path}" if partial_path.exists() else "no run had finished"
        saved += f" and the runs in progress from their last evaluation ({checkpoints})"
        print(f"\nstopped: {saved}", flush=True)
        raise SystemExit(EXIT_CTRL_C) from None  # the shell's status of a Ctrl-C, without a traceback after the message
    by_key = finished | {job_key(job): result for job, result in zip(remaining, new_results, strict=True)}
    results = [by_key[job_key(job)] for job in jobs]
    report["runs"] = [run for _, run in results]
    all_curves: list[LearningCurve] = []
    for env_id in args.envs:
        curves = [curve for (curve, _), job in zip(results, jobs, strict=True) if job[1] == env_id]
        all_curves += curves
        plot_path = output / f"{name}_{shortname(env_id)}.png"
        report[env_id] = report_task(env_id, curves, report["budgets"][env_id], args.seeds, plot_path)
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
    shutil.rmtree(checkpoints, ignore_errors=True)
    return report


if __name__ == "__main__":
    main()
