"""Training runs with periodic evaluation, their learning curves, result tables and plots (CLI, examples, benchmarks)."""

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

JobT = TypeVar("JobT")
ResultT = TypeVar("ResultT")

#: The return that counts as "nothing kept" when measuring the retention of a pre-trained policy
#: (:meth:`LearningCurve.retention`): the return of an episode that fails from the start. 0 for tasks not listed.
RETURN_FLOORS: dict[str, float] = {"MountainCar-v0": -200.0, "Acrobot-v1": -500.0}

# rl-zoo3's tuned DQN hyperparameters (hyperparams/dqn.yml): the baseline DQfD is compared with. Written out so that
# the baseline does not need rl-zoo3 installed; tests/test_experiment.py checks them against the installed rl-zoo3
ZOO_DQN_HYPERPARAMS: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(
        learning_rate=2.3e-3,
        batch_size=64,
        buffer_size=100_000,
        learning_starts=1_000,
        gamma=0.99,
        target_update_interval=10,
        train_freq=256,
        gradient_steps=128,
        exploration_fraction=0.16,
        exploration_final_eps=0.04,
        policy_kwargs=dict(net_arch=[256, 256]),
    ),
    "MountainCar-v0": dict(
        learning_rate=4e-3,
        batch_size=128,
        buffer_size=10_000,
        learning_starts=1_000,
        gamma=0.98,
        target_update_interval=600,
        train_freq=16,
        gradient_steps=8,
        exploration_fraction=0.2,
        exploration_final_eps=0.07,
        policy_kwargs=dict(net_arch=[256, 256]),
    ),
    "LunarLander-v3": dict(
        learning_rate=6.3e-4,
        batch_size=128,
        buffer_size=50_000,
        learning_starts=0,
        gamma=0.99,
        target_update_interval=250,
        train_freq=4,
        gradient_steps=-1,
        exploration_fraction=0.12,
        exploration_final_eps=0.1,
        policy_kwargs=dict(net_arch=[256, 256]),
    ),
}


@dataclass
class LearningCurve:
    """
    Deterministic evaluations of one training run.

    :param label: name of the method (e.g. "DQfD")
    :param seed: the run's seed
    :param timesteps: environment steps at each evaluation
    :param mean_returns: mean return over the evaluation episodes at each evaluation
    :param std_returns: standard deviation of those returns
    :param train_seconds: wall time spent training, evaluation excluded
    :param eval_seconds: wall time spent evaluating
    :param train_seconds_at: at each evaluation, the wall time spent training since the run started, evaluation
        excluded (with :func:`train_with_curve`: from before ``before_learning``, so DQfD's pre-training counts).
        Empty for curves that were not timed (e.g. built by hand, or saved before this field existed)
    :param pretrained: the first evaluation is of a pre-trained policy (DQfD after pre-training), so
        :meth:`retention` measures how much of it interaction kept
    :param resumed_at: the steps at which the run continued from a checkpoint (:func:`load_checkpoint`, then
        :func:`train_with_curve` with its ``curve``): the episode in progress then and the random generators' states were
        not restored
    """

    label: str
    seed: int
    timesteps: list[int] = field(default_factory=list)
    mean_returns: list[float] = field(default_factory=list)
    std_returns: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    train_seconds_at: list[float] = field(default_factory=list)
    pretrained: bool = False
    resumed_at: list[int] = field(default_factory=list)

    @property
    def timed(self) -> bool:
        """Whether every evaluation has its cumulative training time (:attr:`train_seconds_at`)."""
        return len(self.train_seconds_at) == len(self.timesteps) > 0

    def steps_to_threshold(self, threshold: float) -> int | None:
        """
        :param threshold: the return to reach
        :return: the first evaluated step whose mean return reaches ``threshold``, None if none does
        """
        reached = [step for step, value in zip(self.timesteps, self.mean_returns, strict=True) if value >= threshold]
        return reached[0] if reached else None

    def seconds_to_threshold(self, threshold: float) -> float | None:
        """
        :param threshold: the return to reach
        :return: the training wall time (evaluation excluded) until the first evaluation whose mean return reaches
            ``threshold``, None if none does
        :raises ValueError: if the curve has no per-evaluation times (:attr:`timed` is False)
        """
        if not self.timed:
            raise ValueError(
                f"LearningCurve {self.label!r} seed {self.seed}: no training time per evaluation (train_seconds_at has "
                f"{len(self.train_seconds_at)} values for {len(self.timesteps)} evaluations)"
            )
        reached = [
            seconds for seconds, value in zip(self.train_seconds_at, self.mean_returns, strict=True) if value >= threshold
        ]
        return reached[0] if reached else None

    def retention(self, floor: float = 0.0) -> float | None:
        """
        How much of the pre-trained policy's return the run kept: the lowest evaluation after the first one, over the
        first (the pre-trained policy), both measured from ``floor``. 1.0: never below the pre-trained policy;
        0.5: once halfway down to the floor. The "pre-training is forgotten once RL starts" measure.

        :param floor: the return that counts as nothing kept, e.g. 0 where returns start at 0, -200 on MountainCar
            (the time limit reached)
        :return: the ratio, None for a curve that was not pre-trained, has no evaluation after the first, or whose
            pre-trained return is not above ``floor``
        """
        if not self.pretrained or len(self.mean_returns) < 2 or not self.mean_returns[0] > floor:
            return None
        return (min(self.mean_returns[1:]) - floor) / (self.mean_returns[0] - floor)

    def share_at_or_above(self, threshold: float) -> float:
        """
        :param threshold: the return to hold
        :return: the share of evaluations whose mean return is at least ``threshold``
        """
        return float(np.mean(np.asarray(self.mean_returns) >= threshold)) if self.mean_returns else 0.0


class CurveCallback(BaseCallback):
    """
    Evaluate the model every ``eval_freq`` environment steps (over all envs) and record a :class:`LearningCurve`.

    SB3's ``EvalCallback`` counts calls, not environment steps, and keeps no timing: this one records both so that
    training speed can be reported with evaluation excluded.

    :param curve: the curve to fill
    :param eval_env: the environment to evaluate on
    :param eval_freq: evaluate every this many environment steps
    :param n_eval_episodes: episodes per evaluation
    :param deterministic: evaluate the greedy policy
    :param clock_start: ``time.perf_counter()`` when the run started: each evaluation then records the training time
        since, evaluation excluded, in ``curve.train_seconds_at`` (None: not recorded)
    :param stop_at_threshold: stop learning at the first evaluation whose mean return reaches this (None: never)
    :param checkpoint_dir: save a checkpoint of the run there after each evaluation (:func:`save_checkpoint`; None: none)
    """

    def __init__(
        self,
        curve: LearningCurve,
        eval_env: VecEnv,
        eval_freq: int,
        n_eval_episodes: int,
        deterministic: bool = True,
        clock_start: float | None = None,
        stop_at_threshold: float | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.curve = curve
        self.eval_env = eval_env
        self.eval_freq = eval_freq
        self.n_eval_episodes = n_eval_episodes
        self.deterministic = deterministic
        self.clock_start = clock_start
        self.stop_at_threshold = stop_at_threshold
        self.checkpoint_dir = checkpoint_dir
        self._next_eval = 0

    def _on_training_start(self) -> None:
        # On the grid of the curve's first evaluation, so that a run continued from a checkpoint keeps its schedule
        origin = self.curve.timesteps[0] if self.curve.timesteps else self.num_timesteps
        self._next_eval = origin + ((self.num_timesteps - origin) // self.eval_freq + 1) * self.eval_freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next_eval:
            self._next_eval += self.eval_freq
            _evaluate_and_save(
                self.model, self.curve, self.eval_env, self.n_eval_episodes, self.clock_start, self.checkpoint_dir,
                self.deterministic,
            )  # fmt: skip
            if self.stop_at_threshold is not None and self.curve.mean_returns[-1] >= self.stop_at_threshold:
                return False
        return True


def record_evaluation(
    model: BaseAlgorithm,
    curve: LearningCurve,
    eval_env: VecEnv,
    n_eval_episodes: int,
    deterministic: bool = True,
    clock_start: float | None = None,
) -> None:
    """
    Evaluate ``model`` now and append the result to ``curve``.

    :param model: the model to evaluate
    :param curve: the curve to extend
    :param eval_env: the environment to evaluate on
    :param n_eval_episodes: number of episodes
    :param deterministic: evaluate the greedy policy
    :param clock_start: ``time.perf_counter()`` when the run started: append the training time since then, minus the
        evaluation time recorded in ``curve.eval_seconds``, to ``curve.train_seconds_at`` (None: not recorded)
    """
    start = time.perf_counter()
    if clock_start is not None:
        curve.train_seconds_at.append(start - clock_start - curve.eval_seconds)
    episode_returns, _ = evaluate_policy(
        model, eval_env, n_eval_episodes=n_eval_episodes, deterministic=deterministic, return_episode_rewards=True
    )
    curve.eval_seconds += time.perf_counter() - start
    curve.timesteps.append(int(model.num_timesteps))
    curve.mean_returns.append(float(np.mean(episode_returns)))
    curve.std_returns.append(float(np.std(episode_returns)))


#: The file of a checkpoint folder that names its newest complete checkpoint (:func:`save_checkpoint`)
LATEST_CHECKPOINT = "latest"


def save_checkpoint(directory: str | Path, model: BaseAlgorithm, curve: LearningCurve) -> None:
    """
    Save a training run as it is now: the model (``model.zip``), its replay buffer (``replay_buffer.pkl``, off-policy
    algorithms), its ``VecNormalize`` statistics (``vecnormalize.pkl``, if any) and its curve (``curve.json``), so that
    :func:`load_checkpoint` can continue it after a stop.

    Each checkpoint is written to a new folder ``step_<n>`` and then named in the file ``latest``, replaced in one step
    (``os.replace``): a run stopped while saving keeps its previous checkpoint whole, never a model from one step with a
    buffer from another. The previous checkpoint's folder is removed after.

    :param directory: the run's checkpoint folder
    :param model: the model being trained
    :param curve: its curve so far
    """
    directory = Path(directory)
    previous = _latest_checkpoint(directory)
    target = directory / f"step_{model.num_timesteps}"
    if target == previous:
        return  # already saved at this step (learning ended on an evaluation)
    shutil.rmtree(target, ignore_errors=True)  # an unfinished save of an earlier, stopped attempt
    target.mkdir(parents=True)
    model.save(target / "model.zip")
    if isinstance(model, OffPolicyAlgorithm):
        model.save_replay_buffer(target / "replay_buffer.pkl")
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is not None:
        vec_normalize.save(str(target / "vecnormalize.pkl"))
    (target / "curve.json").write_text(json.dumps(asdict(curve)))
    pointer = directory / (LATEST_CHECKPOINT + ".tmp")
    pointer.write_text(target.name)
    os.replace(pointer, directory / LATEST_CHECKPOINT)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def _latest_checkpoint(directory: Path) -> Path | None:
    pointer = directory / LATEST_CHECKPOINT
    return directory / pointer.read_text().strip() if pointer.is_file() else None


def load_checkpoint(directory: str | Path, model: BaseAlgorithm) -> tuple[BaseAlgorithm, LearningCurve] | None:
    """
    The run :func:`save_checkpoint` saved last in ``directory``, loaded to continue it with :func:`train_with_curve`
    (its ``curve``).

    The model is loaded as ``type(model)`` on ``model``'s environment and device, with ``model``'s logger if it was
    set with ``set_logger``, its replay buffer restored, and its ``VecNormalize`` statistics copied into the
    environment's (in place: an evaluation environment that shares them keeps doing so). Not restored: the episode in
    progress when it was saved (learning starts a new one), the transition of the step it was saved at (SB3 runs
    callbacks before it stores a step's transition, as with its ``CheckpointCallback``), an on-policy algorithm's
    rollout in progress (its steps count, unused) and the random generators' states.

    :param directory: the run's checkpoint folder (our own files: the buffer and statistics are pickles)
    :param model: a model built as the run's was (its class, environment, device and logger are used; it is not changed)
    :return: the loaded model and its curve, None if ``directory`` holds no checkpoint
    :raises ValueError: if the checkpoint ``latest`` names is not there whole
    """
    checkpoint = _latest_checkpoint(Path(directory))
    if checkpoint is None:
        return None
    vec_normalize = model.get_vec_normalize_env()
    files = [
        "model.zip",
        "curve.json",
        *(["replay_buffer.pkl"] if isinstance(model, OffPolicyAlgorithm) else []),
        *(["vecnormalize.pkl"] if vec_normalize is not None else []),
    ]
    missing = [name for name in files if not (checkpoint / name).is_file()]
    if missing:
        raise ValueError(f"Checkpoint {checkpoint} is incomplete (no {', '.join(missing)}): delete {directory} to start over")
    loaded = type(model).load(checkpoint / "model.zip", env=model.get_env(), device=model.device)
    if isinstance(loaded, OffPolicyAlgorithm):
        loaded.load_replay_buffer(checkpoint / "replay_buffer.pkl")
    if vec_normalize is not None:
        saved = VecNormalize.load(str(checkpoint / "vecnormalize.pkl"), vec_normalize.venv)
        _copy_statistics(saved.obs_rms, vec_normalize.obs_rms)
        _copy_statistics(saved.ret_rms, vec_normalize.ret_rms)
    if model._custom_logger:
        loaded.set_logger(model.logger)
    return loaded, LearningCurve(**json.loads((checkpoint / "curve.json").read_text()))


def _copy_statistics(source: Any, target: Any) -> None:
    """
    Copy running means and variances into ``target``'s objects, kept as they are (shared with an evaluation env).

    :param source: a ``RunningMeanStd``, or a dict of them (Dict observations)
    :param target: the same structure
    """
    if isinstance(target, dict):
        for key, running in target.items():
            _copy_statistics(source[key], running)
    else:
        target.mean, target.var, target.count = source.mean, source.var, source.count


def train_with_curve(
    model: BaseAlgorithm,
    label: str,
    seed: int,
    total_timesteps: int,
    eval_env: VecEnv,
    eval_freq: int,
    n_eval_episodes: int,
    progress_bar: bool = False,
    before_learning: Callable[[], None] | None = None,
    extra_callback: BaseCallback | None = None,
    stop_at_threshold: float | None = None,
    checkpoint_dir: str | Path | None = None,
    curve: LearningCurve | None = None,
) -> LearningCurve:
    """
    Train ``model`` for ``total_timesteps`` environment steps and evaluate it before learning and every ``eval_freq``.

    Each evaluation also records the training wall time so far (``curve.train_seconds_at``), counted from before
    ``before_learning`` and with evaluation time excluded: :meth:`LearningCurve.seconds_to_threshold` is the time a
    user waits for a policy that reaches a return, pre-training included.

    :param model: the model to train
    :param label: name of the method in tables and plots
    :param seed: the run's seed (recorded only: seed the model and envs when creating them)
    :param total_timesteps: environment steps to train for
    :param eval_env: the environment to evaluate on
    :param eval_freq: evaluate every this many environment steps
    :param n_eval_episodes: episodes per evaluation
    :param progress_bar: show a progress bar while learning
    :param before_learning: run before the first evaluation (e.g. DQfD pre-training); its time counts as training time,
        and the curve is marked ``pretrained`` (see :meth:`LearningCurve.retention`)
    :param extra_callback: another callback to run during learning (e.g. a checkpoint)
    :param stop_at_threshold: stop at the first evaluation whose mean return reaches this (None: train the whole
        budget). Schedules still stretch over ``total_timesteps``, so the curve up to that evaluation is the one of
        a full run: enough for the steps and seconds to the threshold, at a fraction of the cost
    :param checkpoint_dir: save the run there at every evaluation (:func:`save_checkpoint`): a run stopped by Ctrl-C or
        a killed machine then loses only the steps since its last evaluation. None: no checkpoints
    :param curve: continue this run, loaded with its model by :func:`load_checkpoint`: ``total_timesteps`` counts from
        its first evaluation, ``before_learning`` does not run again, the clock goes on from its last evaluation and
        ``curve.resumed_at`` gets the step. None: a new run
    :return: the learning curve
    """
    if eval_freq < 1 or n_eval_episodes < 1:
        raise ValueError(f"eval_freq and n_eval_episodes must be at least 1, got {eval_freq} and {n_eval_episodes}")
    start = time.perf_counter()
    if curve is None:
        curve = LearningCurve(label=label, seed=seed, pretrained=before_learning is not None)
        if before_learning is not None:
            before_learning()
        _evaluate_and_save(model, curve, eval_env, n_eval_episodes, start, checkpoint_dir)
    else:
        curve.resumed_at.append(int(model.num_timesteps))
        start -= (curve.train_seconds_at[-1] if curve.timed else 0.0) + curve.eval_seconds
    curve_callback = CurveCallback(
        curve,
        eval_env,
        eval_freq,
        n_eval_episodes,
        clock_start=start,
        stop_at_threshold=stop_at_threshold,
        checkpoint_dir=checkpoint_dir,
    )
    callbacks: list[BaseCallback] = [curve_callback, *([extra_callback] if extra_callback is not None else [])]
    reached = stop_at_threshold is not None and curve.mean_returns[-1] >= stop_at_threshold
    remaining = total_timesteps - (model.num_timesteps - curve.timesteps[0])  # the budget counts from the first evaluation
    if remaining > 0 and not reached:
        # A fresh model starts a new logger run (tb_log_name_1, _2, ...); a trained or resumed one continues its own
        model.learn(remaining, callback=callbacks, progress_bar=progress_bar, reset_num_timesteps=model.num_timesteps == 0)
    if curve.timesteps[-1] != model.num_timesteps:
        # Saved too: a run stopped early (Ctrl-C, a threshold) can be continued, a finished one trained longer
        _evaluate_and_save(model, curve, eval_env, n_eval_episodes, start, checkpoint_dir)
    curve.train_seconds = time.perf_counter() - start - curve.eval_seconds
    return curve


def _evaluate_and_save(
    model: BaseAlgorithm,
    curve: LearningCurve,
    eval_env: VecEnv,
    n_eval_episodes: int,
    clock_start: float | None,
    checkpoint_dir: str | Path | None,
    deterministic: bool = True,
) -> None:
    """:func:`record_evaluation`, then :func:`save_checkpoint` if there is a ``checkpoint_dir``."""
    record_evaluation(model, curve, eval_env, n_eval_episodes, deterministic, clock_start)
    if checkpoint_dir is not None:
        save_checkpoint(checkpoint_dir, model, curve)


def summarize(curves: Sequence[LearningCurve], threshold: float | None, return_floor: float = 0.0) -> list[dict[str, Any]]:
    """
    One row per method: medians over seeds of steps and seconds to threshold, final return, retention of the
    pre-trained policy (:meth:`LearningCurve.retention`) and training time.

    The median seconds to threshold counts a seed that never reached it as infinitely slow (so it is None when fewer
    than half of the seeds reached it), and needs every run to be timed per evaluation (None otherwise).

    :param curves: the curves of all methods and seeds
    :param threshold: the return that counts as solved (None: not reported)
    :param return_floor: the return that counts as nothing kept, for the retention (see :data:`RETURN_FLOORS`)
    :return: the rows, in the order the methods first appear
    """
    rows = []
    for label in dict.fromkeys(curve.label for curve in curves):
        runs = [curve for curve in curves if curve.label == label]
        trained = all(run.train_seconds > 0 for run in runs)
        steps = [run.steps_to_threshold(threshold) for run in runs] if threshold is not None else []
        reached = [step for step in steps if step is not None]
        timed = threshold is not None and all(run.timed for run in runs)
        seconds = [run.seconds_to_threshold(threshold) for run in runs] if timed and threshold is not None else []
        median_seconds = float(np.median([np.inf if value is None else value for value in seconds])) if seconds else None
        rows.append(
            {
                "method": label,
                "seeds": len(runs),
                "reached": f"{len(reached)}/{len(runs)}" if threshold is not None else "-",
                "median_steps_to_threshold": float(np.median(reached)) if len(reached) * 2 > len(runs) else None,
                "median_seconds_to_threshold": (
                    median_seconds if median_seconds is not None and np.isfinite(median_seconds) else None
                ),
                "median_final_return": float(np.median([run.mean_returns[-1] for run in runs])),
                "median_retention": _median_or_none([run.retention(return_floor) for run in runs]),
                "median_share_at_threshold": (
                    float(np.median([run.share_at_or_above(threshold) for run in runs])) if threshold is not None else None
                ),
                # Timing is None for runs that did not train (a baseline derived from another run, the teacher)
                "median_train_seconds": float(np.median([run.train_seconds for run in runs])) if trained else None,
                "median_steps_per_second": (
                    float(np.median([run.timesteps[-1] / run.train_seconds for run in runs])) if trained else None
                ),
            }
        )
    return rows


def _median_or_none(values: Sequence[float | None]) -> float | None:
    """The median of the values, None if any is None (not every run measured it) or there are none."""
    if not values or any(value is None for value in values):
        return None
    return float(np.median(np.asarray(values, dtype=np.float64)))


def format_table(rows: Sequence[dict[str, Any]], threshold: float | None) -> str:
    """
    :param rows: rows from :func:`summarize`
    :param threshold: the solved threshold shown in the header (None: the threshold columns are left out)
    :return: a Markdown table
    """

    def fmt(value: Any, pattern: str) -> str:
        return "-" if value is None else pattern.format(value)

    columns: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("method", lambda row: str(row["method"])),
        ("seeds", lambda row: str(row["seeds"])),
    ]
    if threshold is not None:
        columns += [
            (f"reached {threshold}", lambda row: str(row["reached"])),
            (f"median steps to {threshold}", lambda row: fmt(row["median_steps_to_threshold"], "{:,.0f}")),
            (f"median train seconds to {threshold}", lambda row: fmt(row.get("median_seconds_to_threshold"), "{:.1f}")),
            (f"median share of evals >= {threshold}", lambda row: fmt(row["median_share_at_threshold"], "{:.0%}")),
        ]
    columns += [
        ("median final return", lambda row: f"{row['median_final_return']:.1f}"),
        ("retention (lowest eval after pre-training / pre-trained)", lambda row: fmt(row.get("median_retention"), "{:.2f}")),
        ("median train time (s)", lambda row: fmt(row["median_train_seconds"], "{:.1f}")),
        ("env steps/s", lambda row: fmt(row["median_steps_per_second"], "{:.0f}")),
    ]
    lines = ["| " + " | ".join(name for name, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row) for _, cell in columns) + " |" for row in rows]
    return "\n".join(lines)


def plot_curves(curves: Sequence[LearningCurve], path: str | Path, title: str, threshold: float | None = None) -> None:
    """
    Plot the median evaluation return of each method over seeds, with the min-max range shaded.

    :param curves: the curves of all methods and seeds
    :param path: where to write the PNG
    :param title: the plot title
    :param threshold: draw a horizontal line at this return
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for label in dict.fromkeys(curve.label for curve in curves):
        runs = [curve for curve in curves if curve.label == label]
        # Seeds may evaluate at slightly different steps (vectorized envs): align on the shortest run
        length = min(len(run.timesteps) for run in runs)
        steps = np.asarray(runs[0].timesteps[:length])
        returns = np.asarray([run.mean_returns[:length] for run in runs])  # [n_seeds, n_evals]
        (line,) = axis.plot(steps, np.median(returns, axis=0), label=f"{label} (median of {len(runs)})")
        axis.fill_between(steps, returns.min(axis=0), returns.max(axis=0), color=line.get_color(), alpha=0.2)
    if threshold is not None:
        axis.axhline(threshold, color="gray", linestyle="--", linewidth=1, label=f"threshold {threshold}")
    axis.set_xlabel("environment steps")
    axis.set_ylabel("deterministic evaluation return")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="best", fontsize="small")
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


#: In a worker process of :func:`run_in_processes`: set by the first Ctrl-C, after which queued jobs do not start
_interrupted = False
#: Pools stopped by an error: kept alive so that their manager thread still cancels the queued jobs (it skips the
#: cancellation when the pool has been garbage collected)
_stopped_pools: list[ProcessPoolExecutor] = []


def _record_interrupt(signum: int, frame: Any) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def _install_interrupt_handler() -> None:
    """Worker initializer: a Ctrl-C stops the running job and marks the worker interrupted."""
    signal.signal(signal.SIGINT, _record_interrupt)


def _call_unless_interrupted(function: Callable[[JobT], ResultT], job: JobT) -> ResultT:
    """In a worker: run ``function(job)``, unless a Ctrl-C came first (the job was queued in the worker's pipe)."""
    if _interrupted:
        raise KeyboardInterrupt("not started: queued before a Ctrl-C")
    return function(job)


def run_in_processes(
    function: Callable[[JobT], ResultT],
    jobs: Sequence[JobT],
    max_workers: int,
    on_result: Callable[[list[ResultT]], None] | None = None,
) -> list[ResultT]:
    """
    Run ``function`` on every job in worker processes, ``max_workers`` at a time; results in the order of ``jobs``.

    ``on_result`` sees the results finished so far (in completion order) after each job: a long benchmark can save
    them, so that stopping it keeps every run that ended. On Ctrl-C (or a failed run) the queued jobs are cancelled
    rather than started (leaving a pool's ``with`` block would run every one of them, unsaved), and the jobs already
    handed to a worker do not start after a Ctrl-C.

    :param function: a module-level function (it is pickled into the workers)
    :param jobs: its arguments, one per run
    :param max_workers: processes at once
    :param on_result: called with the finished results after each job ends
    :return: the results, ``results[i]`` from ``jobs[i]``
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers}")
    results: dict[int, ResultT] = {}
    pool = ProcessPoolExecutor(max_workers=max_workers, initializer=_install_interrupt_handler)
    try:
        futures = {pool.submit(_call_unless_interrupted, function, job): index for index, job in enumerate(jobs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if on_result is not None:
                on_result(list(results.values()))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        _stopped_pools.append(pool)
        raise
    pool.shutdown()
    return [results[index] for index in range(len(jobs))]


#: The exit status of a program stopped by Ctrl-C (128 + SIGINT, as shells report it)
EXIT_CTRL_C = 128 + signal.SIGINT


def exit_on_ctrl_c(main: Callable[[], object], kept: str | None = None) -> None:
    """
    Run a benchmark's ``main``: a Ctrl-C ends it with one line saying what it kept and exit status 130, rather than a
    traceback after its results were saved (by :func:`run_in_processes`'s ``on_result``).

    :param main: the benchmark
    :param kept: what a stopped run keeps, e.g. "the finished runs in results/x.partial.json" (None: nothing)
    """
    try:
        main()
    except KeyboardInterrupt:
        print(f"\nstopped by Ctrl-C; kept: {kept or 'nothing'}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CTRL_C) from None


def save_results(path: str | Path, curves: Sequence[LearningCurve], metadata: dict[str, Any]) -> None:
    """
    Write the curves and the run's metadata (command, machine, settings) as JSON.

    :param path: the JSON file to write
    :param curves: the learning curves
    :param metadata: anything that says how the results were produced
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"metadata": metadata, "curves": [asdict(curve) for curve in curves]}, indent=2))
