"""
Stability: sb3-contrib's own CartPoleNoVel performance test for RecurrentPPO (``tests/test_lstm.py``,
``test_ppo_lstm_performance``, sb3-contrib 2.9.2) with TransformerPPO and TransformerA2C in place of RecurrentPPO, at
its budget and threshold, over several seeds (issue #17, item 4a).

The test's protocol, kept as it is for every method:

* env: the test's ``CartPoleNoVelEnv`` (cart position and pole angle) in ``TimeLimit(max_episode_steps=500)``, 8 envs
  (``make_vec_env``, so Monitor records the raw returns) in ``VecNormalize()`` (observations and rewards, gamma 0.99);
* ``EvalCallback`` on ``VecNormalize(make_vec_env(make_env, n_envs=4), training=False, norm_reward=False)``, 20
  deterministic episodes every ``5000 // 8`` calls (every 5,000 env steps), the training statistics synced in by the
  callback;
* budget ``learn(total_timesteps=50_000)``;
* pass: ``evaluate_policy(model, env, reward_threshold=450)`` on the *training* env (10 deterministic episodes, mean
  strictly above 450, the test's ``assert``).

Methods (``--methods``):

* ``RecurrentPPO``: the test itself (its ``MlpLstmPolicy`` settings), the reference;
* ``TransformerPPO``: the shipped ``sb3_dqfd/hyperparams/transformer_ppo.yml`` ``CartPoleNoVel-v1`` entry -- the fair
  reading of "in place of RecurrentPPO at its budget and threshold": the test fixes the task, the budget and the
  threshold, and each algorithm brings the settings it ships for that task (as the test brings RecurrentPPO's);
* ``TransformerPPO (test settings)``: the test's PPO arguments translated (``n_steps=128``, ``learning_rate=7e-4``,
  ``batch_size=256``, ``n_epochs=10``, ``max_grad_norm=1``, ``gae_lambda=0.98``; the rest TransformerPPO's defaults,
  which are SB3's PPO's) with the shipped entry's encoder, the critic on its own encoder (``share_encoder=False``, as
  the test's ``enable_critic_lstm=True`` gives the critic its own LSTM; ``net_arch``/``ortho_init`` have no
  counterpart in the transformer policy);
* ``TransformerA2C``: the shipped ``transformer_a2c.yml`` ``CartPoleNoVel-v1`` entry.

Seeds are ``1 .. --seeds`` (seed 1 is the test's own). The model seed seeds the training envs (SB3 does); the
evaluation env is seeded with ``10_000 + seed`` (the test leaves it unseeded) so that a run can be repeated.

Recorded per run: pass/fail, the final ``evaluate_policy`` mean, the eval curve, training env steps/s (evaluation
excluded) and the share of a core the process got, and the logger's ``train/`` keys (``train/value_mean``,
``train/value_std``, ``train/entropy_loss``, ``train/grad_norm``, ``train/learning_rate``, ...) about every 1,024 env
steps in ``<output-dir>/logs/<method>_seed<seed>/progress.csv``. Every finished run is saved at once
(``bench_stability.json`` with ``"complete": false``) and the curves plotted (``bench_stability.png``).

Five seeds of every method, one process at a time (runs are single-threaded)::

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_stability.py --seeds 5

A tiny run, to see it work: ``python benchmarks/bench_stability.py --seeds 1 --budget 2048 --eval-freq 1024
--eval-episodes 4 --final-episodes 2 --output-dir /tmp/stability``.
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from gymnasium.envs.classic_control import CartPoleEnv
from gymnasium.wrappers import TimeLimit
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_dqfd.common.experiment import LearningCurve, plot_curves, run_in_processes, save_results
from sb3_dqfd.common.hyperparams import shipped_hyperparameters
from sb3_dqfd.transformer_a2c import TransformerA2C
from sb3_dqfd.transformer_ppo import TransformerPPO

RESULTS = Path(__file__).parent / "results"
ENV_ID = "CartPoleNoVel-v1"

#: The test's protocol (sb3-contrib 2.9.2, tests/test_lstm.py::test_ppo_lstm_performance)
N_ENVS = 8
N_EVAL_ENVS = 4
MAX_EPISODE_STEPS = 500
BUDGET = 50_000
EVAL_FREQ = 5_000  # env steps: the test's eval_freq=5000 // env.num_envs callback calls
EVAL_EPISODES = 20
FINAL_EPISODES = 10  # evaluate_policy's default
REWARD_THRESHOLD = 450.0

#: The test's RecurrentPPO arguments (policy "MlpLstmPolicy"; seed=1 and verbose=1 are the run's)
TEST_RECURRENT_PPO: dict[str, Any] = dict(
    n_steps=128,
    learning_rate=0.0007,
    batch_size=256,
    n_epochs=10,
    max_grad_norm=1,
    gae_lambda=0.98,
    policy_kwargs=dict(net_arch=dict(vf=[64], pi=[]), lstm_hidden_size=64, ortho_init=False, enable_critic_lstm=True),
)

METHODS = ["TransformerPPO", "TransformerPPO (test settings)", "TransformerA2C", "RecurrentPPO"]


class CartPoleNoVelEnv(CartPoleEnv):
    """
    Variant of CartPoleEnv with velocity information removed. This task requires memory to solve.

    sb3-contrib's test defines it in the test file (``tests/test_lstm.py``); copied here unchanged but for the
    annotations: the cart position and the pole angle only (rl-zoo3's CartPoleNoVel-v1 zeroes the velocities instead).
    """

    def __init__(self) -> None:
        super().__init__()
        high = np.array([self.x_threshold * 2, self.theta_threshold_radians * 2]).astype(np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)

    @staticmethod
    def _pos_obs(full_obs: np.ndarray) -> np.ndarray:
        xpos, _xvel, thetapos, _thetavel = full_obs
        return np.array([xpos, thetapos])

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        full_obs, info = super().reset(seed=seed, options=options)
        return CartPoleNoVelEnv._pos_obs(full_obs), info

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        full_obs, rew, terminated, truncated, info = super().step(action)
        return CartPoleNoVelEnv._pos_obs(full_obs), float(rew), terminated, truncated, info


def make_env() -> TimeLimit:
    """The test's env: CartPoleNoVelEnv limited to 500 steps."""
    return TimeLimit(CartPoleNoVelEnv(), max_episode_steps=MAX_EPISODE_STEPS)


def make_envs(seed: int) -> tuple[VecNormalize, VecNormalize]:
    """
    The test's training env (8 envs, ``VecNormalize()``) and evaluation env (4 envs, frozen statistics, raw rewards).

    :param seed: the evaluation env's seed is ``10_000 + seed`` (the training envs are seeded by the model)
    :return: the training and evaluation envs
    """
    env = VecNormalize(make_vec_env(make_env, n_envs=N_ENVS))
    eval_env = VecNormalize(make_vec_env(make_env, n_envs=N_EVAL_ENVS, seed=10_000 + seed), training=False, norm_reward=False)
    return env, eval_env


def hyperparameters(method: str) -> dict[str, Any]:
    """
    :param method: one of :data:`METHODS`
    :return: the constructor arguments of ``method`` (policy, env and seed left out)
    """
    if method == "RecurrentPPO":
        return {**TEST_RECURRENT_PPO, "policy_kwargs": dict(TEST_RECURRENT_PPO["policy_kwargs"])}
    if method == "TransformerPPO":
        return shipped_hyperparameters(TransformerPPO, ENV_ID)
    if method == "TransformerPPO (test settings)":
        encoder = shipped_hyperparameters(TransformerPPO, ENV_ID)["policy_kwargs"]
        settings = {key: value for key, value in TEST_RECURRENT_PPO.items() if key != "policy_kwargs"}
        return {**settings, "policy_kwargs": {**encoder, "share_encoder": False}}
    if method == "TransformerA2C":
        return shipped_hyperparameters(TransformerA2C, ENV_ID)
    raise ValueError(f"unknown method {method!r}, expected one of {METHODS}")


def build(method: str, env: VecEnv, seed: int) -> BaseAlgorithm:
    """The model of ``method`` on ``env``."""
    settings = hyperparameters(method)
    if method == "RecurrentPPO":
        return RecurrentPPO("MlpLstmPolicy", env, seed=seed, **settings)
    if method == "TransformerA2C":
        return TransformerA2C("MlpPolicy", env, seed=seed, **settings)
    return TransformerPPO("MlpPolicy", env, seed=seed, **settings)


def log_interval(model: BaseAlgorithm, every: int = 1_024) -> int:
    """Rollouts between two logger dumps, so that the ``train/`` keys are written about every ``every`` env steps."""
    return max(1, every // (model.n_steps * model.n_envs))  # type: ignore[attr-defined]


class TimedEvalCallback(EvalCallback):
    """SB3's ``EvalCallback`` (as the test uses it) that also fills a :class:`LearningCurve` and times itself."""

    def __init__(self, curve: LearningCurve, eval_env: VecEnv, **kwargs: Any) -> None:
        super().__init__(eval_env, **kwargs)
        self.curve = curve

    def _on_step(self) -> bool:
        evaluates = self.eval_freq > 0 and self.n_calls % self.eval_freq == 0
        start = time.perf_counter()
        continue_training = super()._on_step()
        if evaluates:
            self.curve.eval_seconds += time.perf_counter() - start
            returns = self.evaluations_results[-1]
            self.curve.timesteps.append(int(self.num_timesteps))
            self.curve.mean_returns.append(float(np.mean(returns)))
            self.curve.std_returns.append(float(np.std(returns)))
        return continue_training


def run_one(job: tuple[str, int, dict[str, Any]]) -> tuple[LearningCurve, dict[str, Any]]:
    """
    One run of the test with ``method`` (in its own process, one torch thread).

    :param job: method, seed and settings (budget, eval_freq, eval_episodes, final_episodes, log_dir)
    :return: the eval curve and the run's record (pass, final mean, steps/s, cpu share, log path)
    """
    th.set_num_threads(1)
    method, seed, settings = job
    env, eval_env = make_envs(seed)
    model = build(method, env, seed)
    run_dir = Path(settings["log_dir"]) / f"{method.replace(' ', '_').replace('(', '').replace(')', '')}_seed{seed}"
    model.set_logger(configure(str(run_dir), ["csv"]))
    curve = LearningCurve(label=method, seed=seed)
    callback = TimedEvalCallback(
        curve,
        eval_env,
        n_eval_episodes=settings["eval_episodes"],
        eval_freq=max(1, settings["eval_freq"] // env.num_envs),
        log_path=str(run_dir),
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=settings["budget"], callback=callback, log_interval=log_interval(model))
    wall = time.perf_counter() - start
    curve.train_seconds = wall - curve.eval_seconds
    cpu_share = min(1.0, (time.process_time() - cpu_start) / wall)
    # The test's final check: evaluate_policy(model, env, reward_threshold=450) on the training env
    returns, _ = evaluate_policy(model, env, n_eval_episodes=settings["final_episodes"], return_episode_rewards=True)
    final_mean = float(np.mean(returns))
    record = {
        "method": method,
        "seed": seed,
        "passed": final_mean > REWARD_THRESHOLD,
        "final_mean": final_mean,
        "final_returns": [float(value) for value in returns],
        "env_steps": int(model.num_timesteps),
        "steps_per_second": model.num_timesteps / curve.train_seconds,
        "cpu_share": cpu_share,
        "steps_per_cpu_second": model.num_timesteps / (curve.train_seconds * cpu_share),
        "log": str(run_dir / "progress.csv"),
    }
    print(
        f"{method} seed {seed}: {'PASS' if record['passed'] else 'FAIL'} final {final_mean:.1f}, evals "
        f"{np.round(curve.mean_returns, 1).tolist()} ({record['steps_per_second']:.0f} env steps/s, "
        f"cpu share {cpu_share:.2f})",
        flush=True,
    )
    return curve, record


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per method: passes, final means per seed and their median, median env steps/s."""
    rows = []
    for method in dict.fromkeys(record["method"] for record in records):
        runs = [record for record in records if record["method"] == method]
        rows.append(
            {
                "method": method,
                "passed": sum(record["passed"] for record in runs),
                "seeds": len(runs),
                "final_per_seed": {record["seed"]: round(record["final_mean"], 1) for record in runs},
                "final_median": float(np.median([record["final_mean"] for record in runs])),
                "steps_per_second_median": float(np.median([record["steps_per_second"] for record in runs])),
                "steps_per_cpu_second_median": float(np.median([record["steps_per_cpu_second"] for record in runs])),
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`summarize`'s rows."""
    lines = [
        f"| method | passed (final > {REWARD_THRESHOLD:g}) | final per seed | median final | env steps/s | per CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        finals = ", ".join(f"{seed}: {value:g}" for seed, value in row["final_per_seed"].items())
        lines.append(
            f"| {row['method']} | {row['passed']}/{row['seeds']} | {finals} | {row['final_median']:.1f} | "
            f"{row['steps_per_second_median']:,.0f} | {row['steps_per_cpu_second_median']:,.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS, help="methods to run")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1 .. SEEDS per method (1 is the test's)")
    parser.add_argument("--budget", type=int, default=BUDGET, help="env steps per run (the test's: 50,000)")
    parser.add_argument("--eval-freq", type=int, default=EVAL_FREQ, help="env steps between evaluations (5,000)")
    parser.add_argument("--eval-episodes", type=int, default=EVAL_EPISODES, help="episodes per evaluation (20)")
    parser.add_argument("--final-episodes", type=int, default=FINAL_EPISODES, help="episodes of the final check (10)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument("--output-dir", type=Path, default=RESULTS, help="where the JSON, PNG and logs go")
    args = parser.parse_args(argv)
    for name in ("seeds", "budget", "eval_freq", "eval_episodes", "final_episodes", "jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.eval_freq < N_ENVS:
        parser.error(f"--eval-freq must be at least {N_ENVS} (one step of the {N_ENVS} envs)")
    args.methods = list(dict.fromkeys(args.methods))
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    settings = dict(
        budget=args.budget,
        eval_freq=args.eval_freq,
        eval_episodes=args.eval_episodes,
        final_episodes=args.final_episodes,
        log_dir=str(args.output_dir / "logs"),
    )
    # Seed by seed, so that a stopped run still compares the methods on the same seeds
    jobs = [(method, seed, settings) for seed in range(1, args.seeds + 1) for method in args.methods]
    json_path, png_path = args.output_dir / "bench_stability.json", args.output_dir / "bench_stability.png"
    metadata: dict[str, Any] = {
        "command": " ".join(["python", *(sys.argv if argv is None else ["benchmarks/bench_stability.py", *argv])]),
        "test": "sb3-contrib 2.9.2 tests/test_lstm.py::test_ppo_lstm_performance",
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "protocol": dict(
            n_envs=N_ENVS,
            n_eval_envs=N_EVAL_ENVS,
            max_episode_steps=MAX_EPISODE_STEPS,
            reward_threshold=REWARD_THRESHOLD,
        ),
        "machine": {"python": platform.python_version(), "torch": th.__version__, "cpus": os.cpu_count()},
        "hyperparameters": {method: {k: repr(v) for k, v in hyperparameters(method).items()} for method in args.methods},
    }

    def save(done: list[tuple[LearningCurve, dict[str, Any]]], complete: bool) -> None:
        records = [record for _, record in done]
        rows = summarize(records)
        save_results(
            json_path, [curve for curve, _ in done], metadata | {"complete": complete, "runs": records, "summary": rows}
        )
        title = f"CartPoleNoVel, sb3-contrib's RecurrentPPO test ({args.budget:,} steps), {len(done)} run(s)"
        plot_curves([curve for curve, _ in done], png_path, title, REWARD_THRESHOLD)

    start = time.perf_counter()
    results = run_in_processes(run_one, jobs, args.jobs, on_result=lambda done: save(done, complete=False))
    metadata["wall_seconds"] = time.perf_counter() - start
    save(results, complete=True)
    table = format_table(summarize([record for _, record in results]))
    print(f"\n{table}\n\nresults: {json_path}, {png_path}", flush=True)
    return metadata


if __name__ == "__main__":
    main()
