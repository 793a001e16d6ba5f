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

Variants (``--set KEY=VALUE``, repeatable): a constructor argument of the transformer methods, or a policy keyword as
``policy_kwargs.<name>``, read as YAML (``64``, ``7e-4``, ``false``, ``null``, ``[64, 64]``) or, for ``lin_<x>``, as
rl-zoo3's linear schedule from x to 0. RecurrentPPO, the reference, always runs as the test has it. A run with
overrides is labelled with them (``TransformerPPO (test settings) [policy_kwargs.d_model=64]``) in the JSON, the
table, the plot and its log directory, and the JSON's metadata lists them (``--output-dir`` other than the default
``benchmarks/results`` is required, so that the committed results stay those of the runs without overrides)::

    python benchmarks/bench_stability.py --methods "TransformerPPO (test settings)" --set policy_kwargs.d_model=64 \\
        --set learning_rate=lin_7e-4 --output-dir /tmp/stability_d64
"""

import argparse
import contextlib
import difflib
import inspect
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
import yaml
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

from sb3_dqfd.common.experiment import LearningCurve, exit_on_ctrl_c, plot_curves, run_in_processes, save_results
from sb3_dqfd.common.hyperparams import constructor_keys, parse_hyperparameter, shipped_hyperparameters
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
#: The methods ``--set`` changes, and their algorithms (RecurrentPPO, the reference, runs as the test has it)
TRANSFORMER_METHODS: dict[str, type[BaseAlgorithm]] = {
    "TransformerPPO": TransformerPPO,
    "TransformerPPO (test settings)": TransformerPPO,
    "TransformerA2C": TransformerA2C,
}
#: Constructor arguments the benchmark sets itself, not ``--set``
RUN_ARGUMENTS = {"policy": "the benchmark's 'MlpPolicy'", "seed": "use --seeds"}


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


def parse_value(key: str, text: str) -> Any:
    """
    A ``--set`` value, read as the shipped hyperparameter files are: YAML (``64``, ``0.01``, ``false``, ``null``,
    ``[64, 64]``; ``7e-4`` too, which YAML 1.1 alone reads as a string), ``lin_<x>`` as SB3's
    ``LinearSchedule(x, 0.0, 1.0)`` (rl-zoo3's reading, :func:`sb3_dqfd.common.hyperparams.parse_hyperparameter`).

    :param key: the constructor argument, or ``policy_kwargs.<name>``
    :param text: the value as given
    :return: the value to pass
    :raises ValueError: ``text`` is not YAML, or not a number after ``lin_``
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        problem = str(error).splitlines()[0]
        raise ValueError(f"--set {key}={text}: the value is not valid YAML ({problem})") from None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)  # YAML 1.1 reads "7e-4" as a string
    return parse_hyperparameter(key.rpartition(".")[2], value, "--set")


def override_label(method: str, overrides: dict[str, str]) -> str:
    """
    :param method: one of :data:`METHODS`
    :param overrides: ``--set``'s keys and value texts
    :return: the name of ``method``'s runs: ``method`` followed by the overrides that change it, e.g.
        ``"TransformerPPO (test settings) [policy_kwargs.d_model=64]"`` (``method`` itself without any, and for
        RecurrentPPO, which ``--set`` leaves as it is)
    """
    if not overrides or method not in TRANSFORMER_METHODS:
        return method
    return f"{method} [{', '.join(f'{key}={text}' for key, text in overrides.items())}]"


def run_directory_name(label: str, seed: int) -> str:
    """
    :param label: a method's label (:func:`override_label`)
    :param seed: the run's seed
    :return: the name of the run's log directory, e.g. ``TransformerPPO_test_settings_seed1``
    """
    name = re.sub(r"[()\[\]]", "", label.replace(" ", "_"))
    name = re.sub(r"[^\w.=+-]", "_", name)
    return f"{name}_seed{seed}"


def policy_keywords(algorithm: type[BaseAlgorithm]) -> set[str] | None:
    """
    :param algorithm: a transformer algorithm
    :return: the keywords its ``MlpPolicy`` takes in ``policy_kwargs``, None if it takes any (``**kwargs``)
    """
    parameters = inspect.signature(algorithm.policy_aliases["MlpPolicy"].__init__).parameters
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
        return None
    return set(parameters) - {"self", "observation_space", "action_space", "lr_schedule"}


def check_override_key(key: str, method: str) -> None:
    """
    :param key: a ``--set`` key
    :param method: one of :data:`TRANSFORMER_METHODS`
    :raises ValueError: ``method``'s algorithm (or its policy, for ``policy_kwargs.<name>``) does not take ``key``
    """
    algorithm = TRANSFORMER_METHODS[method]
    name = method if method == algorithm.__name__ else f"{method} ({algorithm.__name__})"
    if key in RUN_ARGUMENTS:
        raise ValueError(f"--set {key}: the benchmark sets {key} itself ({RUN_ARGUMENTS[key]})")
    if key == "policy_kwargs":
        raise ValueError("--set policy_kwargs: set one policy keyword at a time, as policy_kwargs.<name>=VALUE")
    if key.startswith("policy_kwargs."):
        argument, known = key.removeprefix("policy_kwargs."), policy_keywords(algorithm)
        what = f"the policy of {name} ({algorithm.policy_aliases['MlpPolicy'].__name__}) takes no keyword {argument!r}"
    else:
        argument, known = key, constructor_keys(algorithm) - set(RUN_ARGUMENTS)
        what = f"{name} takes no argument {argument!r}"
    if known is None or argument in known:
        return
    takers = [other for other, cls in TRANSFORMER_METHODS.items() if argument in constructor_keys(cls) - set(RUN_ARGUMENTS)]
    guess = difflib.get_close_matches(argument, sorted(known), n=1)
    if takers:
        hint = f" ({', '.join(takers)} do: leave {name} out of --methods)"
    else:
        hint = f" (did you mean {guess[0]}?)" if guess else ""
    raise ValueError(f"--set {key}: {what}{hint}; it takes {', '.join(sorted(known))}")


def parse_overrides(texts: list[str], methods: list[str]) -> dict[str, str]:
    """
    Check ``--set``'s ``KEY=VALUE`` texts against the selected methods.

    :param texts: the ``--set`` texts, in the order given
    :param methods: the selected methods
    :return: the value text of each key (stripped), in the order given
    :raises ValueError: a text without ``=``, an empty key or value, a key given twice, a value that does not parse,
        a key that a selected transformer method does not take, or no transformer method selected
    """
    overrides: dict[str, str] = {}
    for text in texts:
        key, separator, value = (part.strip() for part in text.partition("="))
        if not separator:
            raise ValueError(f"--set {text!r}: expected KEY=VALUE (e.g. n_epochs=4 or policy_kwargs.d_model=64)")
        if not key:
            raise ValueError(f"--set {text!r}: empty KEY (expected KEY=VALUE, e.g. n_epochs=4)")
        if not value:
            raise ValueError(f"--set {text!r}: empty VALUE (write null for None)")
        if key in overrides:
            raise ValueError(f"--set {key}: given twice ({key}={overrides[key]} and {key}={value})")
        parse_value(key, value)
        overrides[key] = value
    selected = [method for method in methods if method in TRANSFORMER_METHODS]
    if overrides and not selected:
        raise ValueError(
            f"--set changes the transformer methods only ({', '.join(TRANSFORMER_METHODS)}), not RecurrentPPO, the "
            "reference: select one with --methods"
        )
    for key in overrides:
        for method in selected:
            check_override_key(key, method)
    return overrides


def hyperparameters(method: str, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """
    :param method: one of :data:`METHODS`
    :param overrides: ``--set``'s keys and value texts (:func:`parse_overrides`), applied to the transformer methods;
        RecurrentPPO, the reference, ignores them
    :return: the constructor arguments of ``method`` (policy, env and seed left out)
    """
    if method == "RecurrentPPO":
        return {**TEST_RECURRENT_PPO, "policy_kwargs": dict(TEST_RECURRENT_PPO["policy_kwargs"])}
    if method == "TransformerPPO":
        settings = shipped_hyperparameters(TransformerPPO, ENV_ID)
    elif method == "TransformerPPO (test settings)":
        encoder = shipped_hyperparameters(TransformerPPO, ENV_ID)["policy_kwargs"]
        settings = {key: value for key, value in TEST_RECURRENT_PPO.items() if key != "policy_kwargs"}
        settings = {**settings, "policy_kwargs": {**encoder, "share_encoder": False}}
    elif method == "TransformerA2C":
        settings = shipped_hyperparameters(TransformerA2C, ENV_ID)
    else:
        raise ValueError(f"unknown method {method!r}, expected one of {METHODS}")
    if not overrides:
        return settings
    settings = dict(settings)
    for key, text in overrides.items():
        value = parse_value(key, text)
        if key.startswith("policy_kwargs."):
            settings["policy_kwargs"] = {**(settings.get("policy_kwargs") or {}), key.removeprefix("policy_kwargs."): value}
        else:
            settings[key] = value
    return settings


def build(method: str, env: VecEnv, seed: int, overrides: dict[str, str] | None = None) -> BaseAlgorithm:
    """The model of ``method`` on ``env``, with ``--set``'s ``overrides`` if it is a transformer method."""
    settings = hyperparameters(method, overrides)
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

    :param job: method, seed and settings (budget, eval_freq, eval_episodes, final_episodes, log_dir, and
        ``--set``'s overrides, if any)
    :return: the eval curve and the run's record (pass, final mean, steps/s, cpu share, log path), under the method's
        label (:func:`override_label`)
    """
    th.set_num_threads(1)
    method, seed, settings = job
    overrides = settings.get("overrides") or {}
    label = override_label(method, overrides)
    env, eval_env = make_envs(seed)
    model = build(method, env, seed, overrides)
    run_dir = Path(settings["log_dir"]) / run_directory_name(label, seed)
    model.set_logger(configure(str(run_dir), ["csv"]))
    curve = LearningCurve(label=label, seed=seed)
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
        "method": label,
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
        f"{label} seed {seed}: {'PASS' if record['passed'] else 'FAIL'} final {final_mean:.1f}, evals "
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
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="repeatable: override a constructor argument of the transformer methods (KEY: an argument every selected "
        "one takes, or policy_kwargs.<name> for a policy keyword); VALUE is YAML (64, 7e-4, false, null, [64, 64]) or "
        "lin_<x>, a linear schedule from x to 0 as in rl-zoo3. RecurrentPPO, the reference, is run unchanged "
        "(--set with RecurrentPPO alone is an error). The runs are labelled '<method> [KEY=VALUE, ...]' and the "
        "JSON's metadata lists the overrides; needs another --output-dir than the default",
    )
    args = parser.parse_args(argv)
    for name in ("seeds", "budget", "eval_freq", "eval_episodes", "final_episodes", "jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.eval_freq < N_ENVS:
        parser.error(f"--eval-freq must be at least {N_ENVS} (one step of the {N_ENVS} envs)")
    args.methods = list(dict.fromkeys(args.methods))
    try:
        args.overrides = parse_overrides(args.overrides or [], args.methods)
    except ValueError as error:
        parser.error(str(error))
    if args.overrides and args.output_dir.resolve() == RESULTS.resolve():
        parser.error(f"--set needs another --output-dir: {RESULTS} holds the results of the runs without overrides")
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
    if args.overrides:
        settings["overrides"] = args.overrides
    # Seed by seed, so that a stopped run still compares the methods on the same seeds
    jobs = [(method, seed, settings) for seed in range(1, args.seeds + 1) for method in args.methods]
    json_path, png_path = args.output_dir / "bench_stability.json", args.output_dir / "bench_stability.png"
    metadata: dict[str, Any] = {
        "command": " ".join(["python", *(sys.argv if argv is None else ["benchmarks/bench_stability.py", *argv])]),
        "test": "sb3-contrib 2.9.2 tests/test_lstm.py::test_ppo_lstm_performance",
        "settings": {
            key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items() if key != "overrides"
        },
        "protocol": dict(
            n_envs=N_ENVS,
            n_eval_envs=N_EVAL_ENVS,
            max_episode_steps=MAX_EPISODE_STEPS,
            reward_threshold=REWARD_THRESHOLD,
        ),
        "machine": {"python": platform.python_version(), "torch": th.__version__, "cpus": os.cpu_count()},
        "hyperparameters": {
            override_label(method, args.overrides): {k: repr(v) for k, v in hyperparameters(method, args.overrides).items()}
            for method in args.methods
        },
    }
    if args.overrides:
        metadata["overrides"] = {
            "values": args.overrides,
            "methods": [method for method in args.methods if method in TRANSFORMER_METHODS],
            "unchanged": [method for method in args.methods if method not in TRANSFORMER_METHODS],
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
    exit_on_ctrl_c(main)
