"""
DQfD (the shipped sb3_dqfd/hyperparams/dqfd.yml) against SB3 DQN (rl-zoo3 tuned) side by side: what one gradient step
costs, part by part, and how long a user waits for a policy at the task's threshold.

Every mode first times one gradient step of each, broken into its parts (sampling, target forwards, online forward
and losses, backward, optimizer, priority update, statistics and logging) at ``[64, 64]`` and ``[256, 256]``, batch
64, 100k-transition buffers; the target is that the parts that are not the network cost DQfD at most 1 ms per step.

Per task and seed: record expert demonstrations, pre-train DQfD and evaluate it (10 deterministic episodes, 20 on
MountainCar) right after pre-training and every 2,500 environment steps; train DQN with rl-zoo3's hyperparameters
on the same budget and evaluation schedule. Medians over seeds; JSON and PNG in ``benchmarks/results/`` (or
``--output-dir``). Each task also reports DQfD's retention of its pre-trained policy: the lowest evaluation after
pre-training over the pre-trained one, both measured from the task's return floor (-200 on MountainCar, 0 elsewhere);
the goal is at least 0.9 in the median seed (``criteria``: ``retention_per_seed``, ``median_retention``,
``retention_at_least_0_9``).

Small default budget (a few minutes on 2 cores)::

    OMP_NUM_THREADS=1 python benchmarks/bench_dqfd.py

The full run behind the README numbers (hours on 2 shared cores)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_dqfd.py --full

Only the gradient-step breakdown (under a minute; ``--cost-net-arch 64 64`` for one network size)::

    OMP_NUM_THREADS=1 python benchmarks/bench_dqfd.py --breakdown-only

Wall seconds from ``learn()`` to the first evaluation at the threshold (evaluation time excluded, DQfD's pre-training
included, recording the demonstrations not: the user has them), DQfD with its shipped budget against DQN with
rl-zoo3's (CartPole 50k, MountainCar 120k, LunarLander 100k steps), median of 3 seeds. Each run stops at its first
evaluation at the threshold: the curve up to there is the one of a full run (schedules still stretch over the whole
budget), so the time is the same, and a DQN run that never gets there runs its whole budget. About an hour on 2
shared cores::

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_dqfd.py --time-to-threshold --seeds 3 --jobs 2
"""

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import yaml
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from torch.nn import functional as F

from sb3_dqfd.common.demonstrations import Demonstrations, record_demonstrations
from sb3_dqfd.common.experiment import (
    RETURN_FLOORS,
    ZOO_DQN_HYPERPARAMS,
    LearningCurve,
    exit_on_ctrl_c,
    format_table,
    plot_curves,
    run_in_processes,
    save_results,
    summarize,
    train_with_curve,
)
from sb3_dqfd.common.experts import get_expert
from sb3_dqfd.common.hyperparams import HYPERPARAMS_DIR, load_hyperparameters, parse_hyperparameter, shipped_hyperparameters
from sb3_dqfd.common.utils import flush_denormal
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
DQN_LABEL = "DQN (rl-zoo3)"
#: The retention goal (:meth:`LearningCurve.retention`, from the task's return floor) of DQfD's median seed: no
#: evaluation after pre-training below 90% of the pre-trained policy's return
RETENTION_GOAL = 0.9
# rl-zoo3's budgets for its tuned DQN (n_timesteps in rl_zoo3/hyperparams/dqn.yml, next to ZOO_DQN_HYPERPARAMS)
ZOO_DQN_BUDGETS = {"CartPole-v1": 50_000, "MountainCar-v0": 120_000, "LunarLander-v3": 100_000}


def env_shortname(env_id: str) -> str:
    """``"MountainCar-v0"`` -> ``"mountaincar"``, for result file names."""
    return env_id.split("-")[0].lower()


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


def run_dqfd(
    env_id: str, seed: int, budget: int, hyperparameters: dict[str, Any], stop_at: float | None = None
) -> tuple[LearningCurve, dict[str, Any]]:
    """
    Pre-train and train DQfD with the given hyperparameters on one seed (recording the demonstrations is not timed,
    pre-training is); ``stop_at``: stop at the first evaluation at this return.
    """
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
        stop_at_threshold=stop_at,
    )
    if env_id == "LunarLander-v3" and stop_at is None:
        extra[f"dqfd_final100_seed{seed}"] = final_score(model, env_id, 100, seed)
        extra[f"teacher_final100_seed{seed}"] = teacher_score(env_id, 100, seed)
    return curve, extra


def run_dqn(env_id: str, seed: int, budget: int, stop_at: float | None = None) -> tuple[LearningCurve, dict[str, Any]]:
    """
    Train SB3 DQN with rl-zoo3's hyperparameters on one seed, same evaluation schedule as DQfD; ``stop_at``: stop at
    the first evaluation at this return.
    """
    eval_env = make_vec_env(env_id, n_envs=1, seed=1_000 + seed)
    dqn = DQN("MlpPolicy", env_id, seed=seed, **ZOO_DQN_HYPERPARAMS[env_id])
    n_eval_episodes = TASKS[env_id]["n_eval_episodes"]
    return train_with_curve(dqn, DQN_LABEL, seed, budget, eval_env, EVAL_FREQ, n_eval_episodes, stop_at_threshold=stop_at), {}


def run_one(job: tuple[str, str, int, int, dict[str, Any], float | None]) -> tuple[LearningCurve, dict[str, Any]]:
    """
    One training run in its own process: one torch thread, so parallel runs give the same curves as serial ones.

    :param job: method ("DQfD" or "DQN"), env id, seed, budget, DQfD's hyperparameters, the return to stop at (or None)
    :return: the curve, and the run's extra results, with under ``"run"`` its env id and the share of a core it had
    """
    th.set_num_threads(1)
    method, env_id, seed, budget, hyperparameters, stop_at = job
    wall, cpu = time.perf_counter(), time.process_time()
    if method == "DQfD":
        curve, extra = run_dqfd(env_id, seed, budget, hyperparameters, stop_at)
    else:
        curve, extra = run_dqn(env_id, seed, budget, stop_at)
    timing = f", {curve.train_seconds:.0f} s training" if stop_at is not None else ""
    print(f"{env_id} {curve.label} seed {seed}{timing}: {np.round(curve.mean_returns, 1).tolist()}", flush=True)
    # How much of a core the run had (1.0: one to itself): on a shared machine, wall times are only comparable with it
    run = {"env_id": env_id, "cpu_share": (time.process_time() - cpu) / (time.perf_counter() - wall)}
    return curve, extra | {"run": run | {"load_average_at_end": os.getloadavg()[0]}}


def run_task(
    env_id: str, seeds: list[int], budget: int, run_dqn: bool, jobs: int, hyperparameters: dict[str, Any], partial: Path
) -> tuple[list[LearningCurve], dict[str, Any]]:
    """
    All runs of one task, ``jobs`` processes at a time (DQfD with ``hyperparameters`` and DQN side by side).

    Each finished run is saved to ``partial`` at once, so that stopping a run of hours keeps the runs that ended.
    """
    methods = ["DQfD", "DQN"] if run_dqn else ["DQfD"]
    runs = [(method, env_id, seed, budget, hyperparameters, None) for seed in seeds for method in methods]

    def save_partial(finished: list[tuple[LearningCurve, dict[str, Any]]]) -> None:
        save_results(partial, [curve for curve, _ in finished], {"command": " ".join(sys.argv), "complete": False})

    results = run_in_processes(run_one, runs, jobs, on_result=save_partial)
    curves = [curve for curve, _ in results]
    extra = {key: value for _, run_extra in results for key, value in run_extra.items() if key != "run"}
    return curves, extra


def criteria(env_id: str, curves: list[LearningCurve], extra: dict[str, Any]) -> dict[str, Any]:
    """
    The task's success criteria for DQfD, evaluated on the curves (all evaluations after pre-training), and on every
    task the retention of the pre-trained policy (:meth:`LearningCurve.retention` from the task's return floor
    :data:`RETURN_FLOORS`): per seed, the median over seeds and whether it reaches :data:`RETENTION_GOAL`.
    """
    threshold = TASKS[env_id]["threshold"]
    runs = [curve for curve in curves if curve.label == "DQfD"]
    shares = [run.share_at_or_above(threshold) for run in runs]
    retention = [run.retention(RETURN_FLOORS.get(env_id, 0.0)) for run in runs]
    measured = [value for value in retention if value is not None]
    # None when a run has no retention (not pre-trained, no evaluation after it, or pre-trained at the floor)
    median_retention = float(np.median(measured)) if measured and len(measured) == len(retention) else None
    result: dict[str, Any] = {
        "share_of_evals_at_threshold_per_seed": shares,
        "return_floor": RETURN_FLOORS.get(env_id, 0.0),
        "retention_per_seed": retention,
        "median_retention": median_retention,
        "retention_at_least_0_9": median_retention is not None and median_retention >= RETENTION_GOAL,
    }
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


# The parts of one gradient step, in the order they run. "train() call" is what DQfD.train / DQN.train do once per
# call around their loop (training mode, learning rate, PER beta; then the logger): with the shipped train_freq=1,
# gradient_steps=1, DQfD pays it on every update. DQN has no priority update (uniform replay).
STEP_PARTS = (
    "train() call: mode, lr, beta",
    "sample",
    "target forwards (no grad)",
    "online forward + losses",
    "backward + L2 grad + clip + optimizer step",
    "priority update",
    "step stats (is_demo, priorities; losses stay tensors)",
    "train() call: record logs",
)
NETWORK_PARTS = STEP_PARTS[2:5]
NOT_NETWORK_PARTS = tuple(part for part in STEP_PARTS if part not in NETWORK_PARTS)
NOT_NETWORK_TARGET_MS = 1.0
# Target of the time a user waits: DQfD's seconds to the threshold at most this share of DQN's
TIME_TARGET_RATIO = 0.5


def breakdown_models(net_arch: tuple[int, ...], batch_size: int, buffer_size: int) -> tuple[DQfD, DQN]:
    """
    DQfD (shipped CartPole settings: dueling, n = 10, PER) and SB3 DQN (rl-zoo3's CartPole settings) with the given
    hidden layers, batch and buffer size, each buffer full: DQfD's holds 5 expert episodes and the agent ring the
    rest; both rings get the same random CartPole-shaped rows (episodes of ~100 steps, a fifth of them truncated).
    DQfD's priorities are set from random TD errors, so that demonstrations carry their bonus as during training.
    """
    demos = expert_demonstrations("CartPole-v1", 5, 0)
    sizes = dict(batch_size=batch_size, buffer_size=buffer_size, learning_starts=0, seed=0)
    dqfd_settings = shipped_hyperparameters(DQfD, "CartPole-v1") | sizes | {"pretrain_steps": 0}
    dqfd_settings["policy_kwargs"] = dict(dqfd_settings.get("policy_kwargs") or {}, net_arch=list(net_arch))
    dqfd = DQfD("MlpPolicy", "CartPole-v1", demonstrations=demos, **dqfd_settings)
    dqn_settings = ZOO_DQN_HYPERPARAMS["CartPole-v1"] | sizes
    dqn_settings["policy_kwargs"] = dict(dqn_settings["policy_kwargs"], net_arch=list(net_arch))
    dqn = DQN("MlpPolicy", "CartPole-v1", **dqn_settings)
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(buffer_size + 1, 1, 4)).astype(np.float32)
    actions = rng.integers(0, 2, size=(buffer_size, 1, 1))
    dones = rng.random(buffer_size) < 0.01
    truncated = dones & (rng.random(buffer_size) < 0.2)
    reward = np.ones(1, dtype=np.float32)
    for row in range(buffer_size):
        infos = [{"TimeLimit.truncated": bool(truncated[row])}]
        for model in (dqfd, dqn):
            model.replay_buffer.add(  # type: ignore[union-attr]
                observations[row], observations[row + 1], actions[row], reward, dones[row : row + 1], infos
            )
    size = dqfd.replay_buffer.size()
    dqfd.replay_buffer.update_priorities(np.arange(size), np.abs(rng.normal(size=size)))
    for model in (dqfd, dqn):
        model.set_logger(Logger(folder=None, output_formats=[]))
        model.train(gradient_steps=20, batch_size=batch_size)  # warm-up
    return dqfd, dqn


def dqfd_step_parts(model: DQfD, batch_size: int) -> np.ndarray:
    """
    One DQfD update as the shipped settings run it (``train(gradient_steps=1)``): the phases ``DQfD.train`` and
    ``DQfD._gradient_step`` call, one by one, with a clock between the parts of :data:`STEP_PARTS`.

    :return: seconds per part
    """
    clock = [time.perf_counter()]
    model._ensure_logger()
    model.policy.set_training_mode(True)
    model._update_learning_rate(model.policy.optimizer)
    model._update_beta()
    clock.append(time.perf_counter())
    data = model.replay_buffer.sample(batch_size, env=model._vec_normalize_env, demo_only=False)
    clock.append(time.perf_counter())
    td_target, n_step_target = model._targets(data)
    clock.append(time.perf_counter())
    losses = model._losses(data, td_target, n_step_target)
    clock.append(time.perf_counter())
    model._optimize(losses["loss"])
    clock.append(time.perf_counter())
    model.replay_buffer._set_priorities(data.indices, losses["td_errors"].cpu().numpy())
    clock.append(time.perf_counter())
    stats = model._step_statistics(data, losses)
    clock.append(time.perf_counter())
    model._n_updates += 1
    model._record([stats])
    clock.append(time.perf_counter())
    return np.diff(clock)


def dqn_step_parts(model: DQN, batch_size: int) -> np.ndarray:
    """
    One SB3 DQN update (``train(gradient_steps=1)``): the statements of ``DQN.train``, timed in the parts of
    :data:`STEP_PARTS` (no priority update: 0).

    :return: seconds per part
    """
    clock = [time.perf_counter()]
    model.policy.set_training_mode(True)
    model._update_learning_rate(model.policy.optimizer)
    clock.append(time.perf_counter())
    replay_data = model.replay_buffer.sample(batch_size, env=model._vec_normalize_env)  # type: ignore[union-attr]
    discounts = replay_data.discounts if replay_data.discounts is not None else model.gamma
    clock.append(time.perf_counter())
    with th.no_grad():
        next_q_values, _ = model.q_net_target(replay_data.next_observations).max(dim=1)
        target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values.reshape(-1, 1)
    clock.append(time.perf_counter())
    current_q_values = th.gather(model.q_net(replay_data.observations), dim=1, index=replay_data.actions.long())
    loss = F.smooth_l1_loss(current_q_values, target_q_values)
    clock.append(time.perf_counter())
    model.policy.optimizer.zero_grad()
    loss.backward()
    th.nn.utils.clip_grad_norm_(model.policy.parameters(), model.max_grad_norm)
    model.policy.optimizer.step()
    clock.append(time.perf_counter())
    clock.append(time.perf_counter())  # no priorities
    losses = [loss.item()]
    clock.append(time.perf_counter())
    model._n_updates += 1
    model.logger.record("train/n_updates", model._n_updates, exclude="tensorboard")
    model.logger.record("train/loss", np.mean(losses))
    clock.append(time.perf_counter())
    return np.diff(clock)


def gradient_step_breakdown(
    net_arch: tuple[int, ...], batch_size: int = 64, buffer_size: int = 100_000, rounds: int = 9, steps: int = 60
) -> dict[str, Any]:
    """
    Milliseconds per part of one gradient step (:data:`STEP_PARTS`), DQfD as shipped and SB3 DQN, on CartPole-shaped
    data with full buffers of ``buffer_size`` transitions.

    Each part is the code of ``DQfD.train`` / ``DQN.train`` at ``gradient_steps=1`` with a clock around it
    (:func:`dqfd_step_parts`, :func:`dqn_step_parts`); the real ``train(gradient_steps=1)`` is timed beside it, to
    show that the copy costs what the code costs. Both models run in interleaved rounds of ``steps`` updates inside
    this process (one torch thread, denormals flushed as in ``DQfD.learn``); each figure is the median over rounds of
    the round's mean, so other processes on a shared machine hit both alike.

    :return: per model the ms of each part, their total and the real ``train(1)``, the sum of the parts that are not
        the network (sampling, priority update, statistics, logging) against :data:`NOT_NETWORK_TARGET_MS`, and the
        share of a core the process had (below ~0.9 the machine was loaded: the absolute figures are inflated)
    """
    dqfd, dqn = breakdown_models(net_arch, batch_size, buffer_size)
    step_parts = {"DQfD": partial(dqfd_step_parts, dqfd, batch_size), "DQN": partial(dqn_step_parts, dqn, batch_size)}
    trainers = {"DQfD": dqfd, "DQN": dqn}
    part_rounds: dict[str, list[np.ndarray]] = {label: [] for label in trainers}
    train_rounds: dict[str, list[float]] = {label: [] for label in trainers}
    wall, cpu = time.perf_counter(), time.process_time()
    with flush_denormal():
        for _ in range(rounds):
            for label, model in trainers.items():
                part_rounds[label].append(np.mean([step_parts[label]() for _ in range(steps)], axis=0))
                start = time.perf_counter()
                for _ in range(steps):
                    model.train(gradient_steps=1, batch_size=batch_size)
                train_rounds[label].append((time.perf_counter() - start) / steps)
    result: dict[str, Any] = {
        "net_arch": list(net_arch),
        "batch_size": batch_size,
        "buffer_size": buffer_size,
        "n_demonstrations": dqfd.replay_buffer.n_demonstrations,
        "rounds": rounds,
        "steps_per_round": steps,
        "forward_rows": {"DQfD": 5 * batch_size, "DQN": 2 * batch_size},
        # The share of a core this process had while timing (1.0: one to itself; lower: the machine was loaded)
        "cpu_share": (time.process_time() - cpu) / (time.perf_counter() - wall),
    }
    for label in trainers:
        parts = dict(zip(STEP_PARTS, 1e3 * np.median(part_rounds[label], axis=0), strict=True))
        result[label] = {
            "parts_ms": {part: float(value) for part, value in parts.items()},
            "network_ms": float(sum(parts[part] for part in NETWORK_PARTS)),
            "not_network_ms": float(sum(parts[part] for part in NOT_NETWORK_PARTS)),
            "parts_total_ms": float(sum(parts.values())),
            "train_call_ms": float(1e3 * np.median(train_rounds[label])),
        }
    result["ratio_train_call"] = result["DQfD"]["train_call_ms"] / result["DQN"]["train_call_ms"]
    result["ratio_network"] = result["DQfD"]["network_ms"] / result["DQN"]["network_ms"]
    result["not_network_target_ms"] = NOT_NETWORK_TARGET_MS
    result["not_network_met"] = result["DQfD"]["not_network_ms"] <= NOT_NETWORK_TARGET_MS
    return result


def format_breakdown(result: dict[str, Any]) -> str:
    """A Markdown table of :func:`gradient_step_breakdown`: ms per part, DQfD and DQN side by side."""
    dqfd, dqn = result["DQfD"], result["DQN"]
    lines = [
        f"gradient step, CartPole-shaped data, net {result['net_arch']}, batch {result['batch_size']}, "
        f"{result['buffer_size']:,}-transition buffers ({result['n_demonstrations']:,} demonstrations), median of "
        f"{result['rounds']} interleaved rounds of {result['steps_per_round']} updates; forward rows per step: "
        f"DQfD {result['forward_rows']['DQfD']}, DQN {result['forward_rows']['DQN']}; this process had "
        f"{result['cpu_share']:.2f} of a core (1.0: an idle machine)",
        "",
        "| part | DQfD ms | DQN ms |",
        "|---|---|---|",
    ]
    for part in STEP_PARTS:
        tag = "" if part in NETWORK_PARTS else " *"
        lines.append(f"| {part}{tag} | {dqfd['parts_ms'][part]:.3f} | {dqn['parts_ms'][part]:.3f} |")
    verdict = "met" if result["not_network_met"] else "NOT met"
    lines += [
        f"| network (forwards, backward, optimizer) | {dqfd['network_ms']:.3f} | {dqn['network_ms']:.3f} |",
        f"| * not the network (target <= {result['not_network_target_ms']} ms for DQfD: {verdict}) | "
        f"**{dqfd['not_network_ms']:.3f}** | {dqn['not_network_ms']:.3f} |",
        f"| sum of the parts | {dqfd['parts_total_ms']:.3f} | {dqn['parts_total_ms']:.3f} |",
        f"| real train(gradient_steps=1), per step | {dqfd['train_call_ms']:.3f} | {dqn['train_call_ms']:.3f} |",
        "",
        f"DQfD / DQN: {result['ratio_train_call']:.2f}x per real step, {result['ratio_network']:.2f}x for the network parts",
    ]
    return "\n".join(lines)


def run_breakdowns(net_archs: list[tuple[int, ...]]) -> list[dict[str, Any]]:
    """:func:`gradient_step_breakdown` at each network size, printed as it ends."""
    results = []
    for net_arch in net_archs:
        results.append(gradient_step_breakdown(net_arch))
        print("\n" + format_breakdown(results[-1]) + "\n", flush=True)
    return results


def dqfd_budget(env_id: str) -> int:
    """The shipped DQfD budget of ``env_id`` (``n_timesteps`` in dqfd.yml: its schedules stretch over it)."""
    return int(load_hyperparameters(HYPERPARAMS_DIR / "dqfd.yml", env_id, DQfD)["n_timesteps"])


def time_to_threshold_summary(
    env_id: str, curves: list[LearningCurve], cpu_shares: dict[tuple[str, int], float] | None = None
) -> dict[str, Any]:
    """
    Per method, the training wall seconds (evaluation excluded, DQfD's pre-training included) to the first evaluation
    at the task's threshold, per seed and median (a seed that never reached it counts as slowest), and DQfD / DQN.

    Where DQN's median seed never reached the threshold, its time is at least its whole training time: the ratio is
    then an upper bound, ``ratio_at_most``. ``cpu_shares``: the share of a core each (label, seed) run had.
    """
    threshold = TASKS[env_id]["threshold"]
    summary: dict[str, Any] = {"threshold": threshold, "rows": summarize(curves, threshold, RETURN_FLOORS.get(env_id, 0.0))}
    medians: dict[str, float | None] = {}
    for label in ("DQfD", DQN_LABEL):
        runs = sorted((curve for curve in curves if curve.label == label), key=lambda curve: curve.seed)
        seconds = [run.seconds_to_threshold(threshold) for run in runs]
        summary[label] = {
            "seeds": [run.seed for run in runs],
            "seconds_to_threshold": seconds,
            "steps_to_threshold": [run.steps_to_threshold(threshold) for run in runs],
            "train_seconds": [run.train_seconds for run in runs],
            "cpu_share": [(cpu_shares or {}).get((label, run.seed)) for run in runs],
            "reached": sum(value is not None for value in seconds),
            "median_seconds_to_threshold": next(
                (row["median_seconds_to_threshold"] for row in summary["rows"] if row["method"] == label), None
            ),
            # A run that never reached the threshold took at least its whole training time
            "median_seconds_at_least": float(
                np.median([run.train_seconds if value is None else value for run, value in zip(runs, seconds, strict=True)])
            )
            if runs
            else None,
        }
        medians[label] = summary[label]["median_seconds_to_threshold"]
    dqfd_median, dqn_median = medians["DQfD"], medians[DQN_LABEL]
    summary["ratio"] = dqfd_median / dqn_median if dqfd_median is not None and dqn_median is not None else None
    lower = summary[DQN_LABEL]["median_seconds_at_least"]
    summary["ratio_at_most"] = dqfd_median / lower if dqfd_median is not None and dqn_median is None and lower else None
    summary["target_ratio"] = TIME_TARGET_RATIO
    ratio = summary["ratio"] if summary["ratio"] is not None else summary["ratio_at_most"]
    summary["met"] = ratio is not None and ratio <= TIME_TARGET_RATIO
    return summary


def format_time_to_threshold(summaries: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of :func:`time_to_threshold_summary` for each task."""

    def cell(entry: dict[str, Any], n_seeds: int) -> str:
        median = entry["median_seconds_to_threshold"]
        per_seed = ", ".join("never" if value is None else f"{value:.0f}" for value in entry["seconds_to_threshold"])
        text = f"{median:.0f}" if median is not None else f"not reached (> {entry['median_seconds_at_least']:.0f})"
        shares = [share for share in entry["cpu_share"] if share is not None]
        cpu = f", CPU share {min(shares):.2f}-{max(shares):.2f}" if shares else ""
        return f"{text} [{per_seed}], reached {entry['reached']}/{n_seeds}{cpu}"

    lines = [
        "| task (threshold) | DQfD s to threshold: median [per seed] | DQN (rl-zoo3) s: median [per seed] | DQfD / DQN | "
        f"target <= {TIME_TARGET_RATIO} |",
        "|---|---|---|---|---|",
    ]
    for env_id, summary in summaries.items():
        dqfd, dqn = summary["DQfD"], summary[DQN_LABEL]
        if summary["ratio"] is not None:
            ratio = f"{summary['ratio']:.2f}"
        elif summary["ratio_at_most"] is not None:
            ratio = f"<= {summary['ratio_at_most']:.2f}"
        else:
            ratio = "-"
        never = len(dqn["seeds"]) - dqn["reached"]
        note = f" (DQN never reached it in {never} of {len(dqn['seeds'])} seeds)" if never else ""
        lines.append(
            f"| {env_id} ({summary['threshold']}) | {cell(dqfd, len(dqfd['seeds']))} | {cell(dqn, len(dqn['seeds']))} | "
            f"{ratio} | {'met' if summary['met'] else 'not met'}{note} |"
        )
    return "\n".join(lines)


def plot_time_to_threshold(runs: list[tuple[str, LearningCurve]], path: Path) -> None:
    """Evaluation return against training wall seconds, one panel per task, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env_ids = list(dict.fromkeys(env_id for env_id, _ in runs))
    figure, axes = plt.subplots(1, len(env_ids), figsize=(5.5 * len(env_ids), 4.5), squeeze=False)
    colors = {"DQfD": "C0", DQN_LABEL: "C1"}
    for axis, env_id in zip(axes[0], env_ids, strict=True):
        threshold = TASKS[env_id]["threshold"]
        for label, color in colors.items():
            curves = [curve for run_env, curve in runs if run_env == env_id and curve.label == label]
            for index, curve in enumerate(sorted(curves, key=lambda curve: curve.seed)):
                axis.plot(
                    curve.train_seconds_at,
                    curve.mean_returns,
                    color=color,
                    alpha=0.8,
                    marker=".",
                    linewidth=1,
                    label=f"{label} ({len(curves)} seeds)" if index == 0 else None,
                )
                seconds = curve.seconds_to_threshold(threshold)
                if seconds is not None:
                    axis.plot([seconds], [curve.mean_returns[curve.train_seconds_at.index(seconds)]], "o", color=color)
        axis.axhline(threshold, color="gray", linestyle="--", linewidth=1, label=f"threshold {threshold}")
        axis.set_title(env_id)
        axis.set_xlabel("training wall seconds (evaluation excluded, pre-training included)")
        axis.set_ylabel("deterministic evaluation return")
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize="small")
    figure.suptitle("Time to threshold: DQfD (dqfd.yml) vs DQN (rl-zoo3); runs stop at their first evaluation at it")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_time_to_threshold(
    env_ids: list[str],
    seeds: list[int],
    jobs: int,
    report: dict[str, Any],
    name: str = "dqfd_time_to_threshold",
    results: Path = RESULTS,
) -> dict[str, dict[str, Any]]:
    """
    DQfD (shipped settings and budget) and DQN (rl-zoo3's settings and budget) on each task and seed, each run stopping
    at its first evaluation at the task's threshold; all runs share one pool of ``jobs`` processes, DQN and DQfD of
    each seed next to each other, so that both meet the same load. Every finished run is saved to
    ``<name>.partial.json`` at once, with the share of a core it had; the end writes ``<name>.json`` and ``<name>.png``
    and removes the partial file.
    """
    runs = [
        run
        for env_id in env_ids
        for seed in seeds
        for run in (
            ("DQN", env_id, seed, ZOO_DQN_BUDGETS[env_id], {}, TASKS[env_id]["threshold"]),
            ("DQfD", env_id, seed, dqfd_budget(env_id), shipped_hyperparameters(DQfD, env_id), TASKS[env_id]["threshold"]),
        )
    ]
    report["settings"] = {
        env_id: {
            "threshold": TASKS[env_id]["threshold"],
            "eval_every": EVAL_FREQ,
            "n_eval_episodes": TASKS[env_id]["n_eval_episodes"],
            "dqfd_demo_episodes": TASKS[env_id]["n_demo_episodes"],
            "dqfd_budget": dqfd_budget(env_id),
            "dqn_budget": ZOO_DQN_BUDGETS[env_id],
            "dqfd_hyperparameters": {key: str(value) for key, value in shipped_hyperparameters(DQfD, env_id).items()},
            "dqn_hyperparameters": {key: str(value) for key, value in ZOO_DQN_HYPERPARAMS[env_id].items()},
        }
        for env_id in env_ids
    }

    def write(finished: list[tuple[LearningCurve, dict[str, Any]]], path: Path, complete: bool) -> dict[str, dict[str, Any]]:
        tagged = [(extra["run"]["env_id"], curve) for curve, extra in finished]
        shares = {(curve.label, curve.seed, extra["run"]["env_id"]): extra["run"]["cpu_share"] for curve, extra in finished}
        summaries = {}
        for env_id in dict.fromkeys(run_env for run_env, _ in tagged):
            curves = [curve for run_env, curve in tagged if run_env == env_id]
            env_shares = {(label, seed): share for (label, seed, run_env), share in shares.items() if run_env == env_id}
            summaries[env_id] = time_to_threshold_summary(env_id, curves, env_shares)
        content = report | {
            "complete": complete,
            "summary": summaries,
            "curves": [asdict(curve) | extra["run"] for curve, extra in finished],
        }
        path.write_text(json.dumps(content, indent=2))
        if complete:
            plot_time_to_threshold(tagged, path.with_suffix(".png"))
        return summaries

    results.mkdir(parents=True, exist_ok=True)
    partial_path = results / f"{name}.partial.json"

    def save_partial(finished: list[tuple[LearningCurve, dict[str, Any]]]) -> None:
        write(finished, partial_path, complete=False)

    finished = run_in_processes(run_one, runs, jobs, on_result=save_partial)
    summaries = write(finished, results / f"{name}.json", True)
    partial_path.unlink(missing_ok=True)
    return summaries


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
        "--output-dir",
        type=Path,
        default=RESULTS,
        help="where the JSON and PNG go (default: benchmarks/results, whose files are the README's numbers: "
        "give another folder for experiments)",
    )
    parser.add_argument(
        "--no-breakdown",
        action="store_true",
        help="skip the gradient-step breakdown that every mode starts with (its JSON entry is then empty)",
    )
    parser.add_argument(
        "--cost-net-arch",
        type=int,
        nargs="+",
        default=None,
        help="hidden layers of the one network the gradient-step breakdown times (default: [64, 64] and [256, 256])",
    )
    parser.add_argument(
        "--breakdown-only",
        "--cost-only",
        action="store_true",
        help="only the gradient-step breakdown, train nothing (benchmarks/results/dqfd_step_breakdown.json)",
    )
    parser.add_argument(
        "--time-to-threshold",
        action="store_true",
        help="wall seconds to the first evaluation at the threshold, DQfD (shipped budget) vs DQN (rl-zoo3's budget), "
        "each run stopping there (benchmarks/results/dqfd_time_to_threshold.{json,png})",
    )
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.breakdown_only and args.no_breakdown:
        parser.error("--breakdown-only and --no-breakdown exclude each other")
    if args.time_to_threshold and (args.set or args.no_dqn or args.timesteps or args.full):
        parser.error("--time-to-threshold: shipped settings on rl-zoo3's budgets, not with --set/--no-dqn/--timesteps/--full")
    overrides = parse_overrides(parser, args.set)
    th.set_num_threads(1)
    print("reproduce: OMP_NUM_THREADS=1 python " + " ".join(sys.argv), flush=True)

    report: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, torch threads 1, shared 2-core machine",
    }
    net_archs: list[tuple[int, ...]] = [tuple(args.cost_net_arch)] if args.cost_net_arch else [(64, 64), (256, 256)]
    results: Path = args.output_dir
    breakdowns = [] if args.no_breakdown else run_breakdowns(net_archs)
    report["gradient_step_breakdown"] = breakdowns
    if args.breakdown_only:
        results.mkdir(parents=True, exist_ok=True)
        (results / "dqfd_step_breakdown.json").write_text(json.dumps(report, indent=2))
        return
    if args.time_to_threshold:
        # A run on some of the tasks never overwrites the results of all three
        envs = [env_id for env_id in TASKS if env_id in args.envs]
        name = "dqfd_time_to_threshold"
        if envs != list(TASKS):
            name += "".join(f"_{env_shortname(env_id)}" for env_id in envs)
        summaries = run_time_to_threshold(envs, list(range(args.seeds)), args.jobs, report, name, results)
        print("\n" + format_time_to_threshold(summaries), flush=True)
        return
    results.mkdir(parents=True, exist_ok=True)
    suffix = "full" if args.full else "small"
    for env_id in args.envs:
        task = TASKS[env_id]
        budget = args.timesteps or (task["full"] if args.full else task["small"])
        seeds = list(range(args.seeds))
        # Read once here: the runs get the values, so editing dqfd.yml during a run cannot change it
        hyperparameters = shipped_hyperparameters(DQfD, env_id) | overrides
        # Runs with --set never overwrite the results of the shipped settings
        name = f"dqfd_{env_shortname(env_id)}_{suffix}" + ("_custom" if overrides else "")
        partial = results / f"{name}.partial.json"
        curves, extra = run_task(env_id, seeds, budget, not args.no_dqn, args.jobs, hyperparameters, partial)
        rows = summarize(curves, task["threshold"], RETURN_FLOORS.get(env_id, 0.0))
        print(f"\n{env_id}, {budget:,} steps, {args.seeds} seeds\n{format_table(rows, task['threshold'])}", flush=True)
        checks = criteria(env_id, curves, extra)
        print(json.dumps(checks), flush=True)
        plot_curves(
            curves,
            results / f"{name}.png",
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
        (results / f"{name}.json").write_text(json.dumps(report[env_id] | {"gradient_step_breakdown": breakdowns}, indent=2))
        partial.unlink(missing_ok=True)


if __name__ == "__main__":
    exit_on_ctrl_c(main, "the finished runs in <name>.partial.json of the task in progress, and the tasks that finished")
