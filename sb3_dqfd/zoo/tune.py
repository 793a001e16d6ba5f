"""
The engine of ``sb3-dqfd tune``: Optuna search through rl-zoo3's experiment manager, shareable across machines.

rl-zoo3 builds the environments, the model and the pruned evaluation of each trial (``ExperimentManager.objective``);
Optuna samples, prunes and keeps the study. Several worker processes, on one machine or many, that are given the
same ``--storage`` URL and ``--study-name`` share one study: each asks the database for its next trial.
"""

import argparse
import contextlib
import io
import os
import socket
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.distributions import CategoricalDistribution
from optuna.samplers import BaseSampler, PartialFixedSampler, RandomSampler
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
from stable_baselines3.common.utils import LinearSchedule, set_random_seed

from sb3_dqfd.zoo.registration import ZooError, algorithm_class, check_env_id, default_config, read_zoo_entry

#: Trials counted by --max-total-trials, as rl-zoo3 counts them: running ones too (they may be another worker's), so
#: the study does not overshoot by one trial per worker; failed ones not, so a retried trial still runs
_COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
# rl-zoo3 passes these to every sampler; only its HER-aware samplers read them
_SAMPLER_ARGS = {"using_her_replay_buffer": False, "her_kwargs": {}}


def _safe_url(url: str) -> str:
    """:return: ``url`` with its password hidden, for messages"""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy can parse: nothing to hide that we could find
        return url


def _first_line(error: BaseException) -> str:
    """:return: the first line of an exception's message (sqlalchemy appends background links and SQL)"""
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__


def open_storage(url: str | None, heartbeat_interval: int = 60) -> BaseStorage | None:
    """
    Open (and create the tables of) the Optuna storage shared by the workers, failing fast with one readable line.

    RDB storages get a heartbeat: a trial whose worker died (machine lost, process killed) is marked failed after
    ``2 * heartbeat_interval`` seconds and queued once more for another worker, so no trial is silently lost.

    :param url: an SQLAlchemy URL, a journal file path ending in ``.log``, or ``None`` for an in-memory study
    :param heartbeat_interval: seconds between a running trial's heartbeats in an RDB storage
    :return: the storage, or ``None`` (in memory)
    """
    if url is None:
        return None
    if url.endswith(".log") and "://" not in url:
        path = Path(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as error:
            raise ZooError(f"cannot use journal storage {url!r}: {error.strerror or error}") from None
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    engine_kwargs: dict[str, Any] = {}
    if url.startswith(("postgresql", "mysql")):
        # An unreachable host should fail in seconds, not after the operating system's TCP timeout (minutes)
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    retries = 2
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=2 * heartbeat_interval,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
                )
        except (IntegrityError, ProgrammingError) as error:
            # Workers started together race to create the tables; the loser finds them on its next attempt
            if retries == 0:
                raise ZooError(f"cannot create the Optuna tables in {_safe_url(url)!r}: {_first_line(error)}") from None
            retries -= 1
            time.sleep(1.0)
        except Exception as error:  # any driver or URL error: the user needs its first line, not a traceback
            raise ZooError(f"cannot open Optuna storage {_safe_url(url)!r}: {_first_line(error)}") from None


def parse_fixed_params(items: Sequence[str]) -> dict[str, Any]:
    """
    :param items: ``NAME=VALUE`` strings; values are YAML scalars (``null``, ``true``, ``64``) or floats (``1e-3``)
    :return: the fixed raw parameters
    """
    fixed: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ZooError(f"--fix {item!r}: expected NAME=VALUE, e.g. pretrain_steps=1000")
        value = yaml.safe_load(text)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)  # YAML 1.1 reads "1e-3" as a string
        fixed[name] = value
    return fixed


def check_fixed_params(algo: str, fixed: dict[str, Any]) -> None:
    """
    Check ``--fix`` values against the algorithm's search space by sampling it once in a throwaway study.

    :param algo: an algorithm with a sampler in rl-zoo3's table
    :param fixed: the fixed raw parameters
    """
    if algo not in HYPERPARAMS_SAMPLER:
        tunable = ", ".join(sorted(HYPERPARAMS_SAMPLER))
        raise ZooError(f"algorithm {algo!r} has no Optuna sampler in rl-zoo3 (tunable: {tunable})")
    if not fixed:
        return
    # A throwaway in-memory study: keep Optuna from announcing it next to the study the user asked for
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        trial = optuna.create_study(sampler=RandomSampler(seed=0)).ask()
    finally:
        optuna.logging.set_verbosity(verbosity)
    HYPERPARAMS_SAMPLER[algo](trial, 1, 1, dict(_SAMPLER_ARGS))
    distributions = trial.distributions
    unknown = sorted(set(fixed) - set(distributions))
    if unknown:
        sampled = ", ".join(sorted(distributions))
        raise ZooError(f"--fix: {algo} samples no parameter {', '.join(unknown)} (it samples: {sampled})")
    for name, value in fixed.items():
        distribution = distributions[name]
        if isinstance(distribution, CategoricalDistribution):
            if value not in distribution.choices:
                raise ZooError(f"--fix {name}={value!r}: not one of the choices {list(distribution.choices)}")
        elif not isinstance(value, int | float) or isinstance(value, bool):
            raise ZooError(f"--fix {name}={value!r}: expected a number for {distribution}")


def _make_sampler(exp_manager: ExperimentManager, args: argparse.Namespace, fixed: dict[str, Any]) -> BaseSampler:
    """:return: rl-zoo3's sampler for ``args.sampler`` (TPE multivariate or random), with ``fixed`` params pinned"""
    sampler = exp_manager._create_sampler(args.sampler)
    if not fixed:
        return sampler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return PartialFixedSampler(fixed, sampler)


def _yaml_value(value: Any) -> Any:
    """
    :param value: a hyperparameter value from a trial
    :return: the value as plain YAML data; a linear decay to 0 becomes ``"lin_<start>"``; a ``policy_kwargs``
        holding classes (rl-zoo3's own samplers pick ``nn.Tanh`` etc.) becomes rl-zoo3's ``"dict(...)"`` string, the
        only form rl-zoo3 reads classes from
    """
    if isinstance(value, dict):
        if any(isinstance(item, type) for item in value.values()):
            items = ", ".join(
                f"{key}=nn.{item.__name__}" if isinstance(item, type) else f"{key}={_yaml_value(item)!r}"
                for key, item in value.items()
            )
            return f"dict({items})"
        return {key: _yaml_value(item) for key, item in value.items()}
    if isinstance(value, LinearSchedule) and value.end == 0.0 and value.end_fraction == 1.0:
        return f"lin_{value.start}"  # rl-zoo3's (and our readers') linear decay to 0
    if isinstance(value, list | tuple):
        return [_yaml_value(item) for item in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def best_hyperparameters(study: optuna.Study, algo: str, base_entry: dict[str, Any]) -> dict[str, Any]:
    """
    The YAML entry that reproduces the best trial: the fixed settings of the tuned entry with the trial's sampled
    hyperparameters replacing them (as rl-zoo3's objective does, ``policy_kwargs`` included).

    :param study: the study
    :param algo: the algorithm name (selects rl-zoo3's converter from raw trial parameters)
    :param base_entry: the raw YAML entry the study was run with
    :return: the entry, plain YAML data
    """
    entry = dict(base_entry)
    entry.update(HYPERPARAMS_CONVERTER[algo](study.best_trial.params))
    return {key: _yaml_value(value) for key, value in entry.items()}


def _state_counts(study: optuna.Study) -> str:
    """:return: the number of trials per state, e.g. ``"4 trials: 3 complete, 1 pruned"``"""
    states = Counter(trial.state.name.lower() for trial in study.get_trials(deepcopy=False))
    return f"{sum(states.values())} trials: " + ", ".join(f"{count} {state}" for state, count in sorted(states.items()))


def write_best_yaml(
    study: optuna.Study,
    algo: str,
    env_id: str,
    base_entry: dict[str, Any],
    output: Path,
    storage: str | None,
    trial_timesteps: int | None = None,
) -> dict[str, Any]:
    """
    Write the best trial's hyperparameters as a ready-to-use rl-zoo3 YAML file (atomically: workers may share it).

    :param study: the study
    :param algo: the algorithm name
    :param env_id: the environment id (the YAML entry's key)
    :param base_entry: the raw YAML entry the study was run with
    :param output: the file to write
    :param storage: the storage URL, for the header (password hidden)
    :param trial_timesteps: the budget of each trial (``--n-timesteps``), said in the header where it differs from the
        entry's ``n_timesteps``: schedules (learning rate, epsilon) stretch over the budget they are trained with
    :return: the written entry
    """
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        raise ZooError(f"study {study.study_name!r} has no completed trial yet ({_state_counts(study)}): nothing to write")
    entry = best_hyperparameters(study, algo, base_entry)
    best = study.best_trial
    header = (
        f"# Best trial of Optuna study {study.study_name!r} ({_safe_url(storage) if storage else 'in memory'}, "
        f"{_state_counts(study)}):\n"
        f"# trial #{best.number}, last mean evaluation return {best.value:.2f}, run by {best.user_attrs.get('worker', '?')}.\n"
        f"# Written by: {' '.join(sys.orig_argv)}\n"
        f"# Train with: python -m sb3_dqfd.zoo train --algo {algo} --env {env_id} --conf-file {output}\n"
    )
    if trial_timesteps and trial_timesteps != entry.get("n_timesteps"):
        header += (
            f"# The trials ran {trial_timesteps:,} steps each; n_timesteps below is the tuned entry's budget. Schedules "
            f"stretch over n_timesteps: set it to {trial_timesteps} to reproduce the trial.\n"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=output.parent, suffix=".tmp", delete=False) as file:
        file.write(header + yaml.safe_dump({env_id: entry}, sort_keys=True))
    os.replace(file.name, output)
    return entry


def tune(args: argparse.Namespace) -> tuple[optuna.Study, dict[str, Any]]:
    """
    Run this worker's share of the study described by ``args`` (the options of :func:`add_tune_arguments`).

    :param args: the parsed options
    :return: the study (all workers' trials) and the raw YAML entry it tunes
    """
    # `sb3-dqfd train` spells it transformer-a2c, rl-zoo3 transformer_a2c: accept both
    args.algo = args.algo.replace("-", "_")
    algorithm = algorithm_class(args.algo)
    check_env_id(args.env)
    config = Path(args.conf_file) if args.conf_file else default_config(args.algo)
    base_entry = read_zoo_entry(config, args.env, algorithm)
    if args.n_timesteps is None and "n_timesteps" not in base_entry:
        raise ZooError(f"{config}: the entry for {args.env!r} has no n_timesteps; give --n-timesteps")
    for name in ("n_trials", "n_jobs", "n_evaluations", "eval_episodes"):
        if getattr(args, name) < 1:
            raise ZooError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    fixed = parse_fixed_params(args.fix)
    check_fixed_params(args.algo, fixed)
    storage = open_storage(args.storage)
    study_name = args.study_name or f"{args.algo}-{args.env}"
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    set_random_seed(seed)
    if args.num_threads > 0:
        import torch as th

        th.set_num_threads(args.num_threads)
    if args.verbose < 1:
        optuna.logging.set_verbosity(optuna.logging.WARNING)

    exp_manager = ExperimentManager(
        args,
        args.algo,
        args.env,
        args.log_folder,
        n_timesteps=args.n_timesteps or 0,
        n_eval_episodes=args.eval_episodes,
        optimize_hyperparameters=True,
        storage=args.storage,
        study_name=study_name,
        n_trials=args.n_trials,
        max_total_trials=args.max_total_trials,
        n_jobs=args.n_jobs,
        sampler=args.sampler,
        pruner=args.pruner,
        n_startup_trials=args.n_startup_trials,
        n_evaluations=args.n_evaluations,
        seed=seed,
        verbose=args.verbose,
        device=args.device,
        config=str(config),
        no_optim_plots=True,
    )
    # Reads and preprocesses the YAML (rl-zoo3 prints it), creates nothing to train when optimizing
    with contextlib.redirect_stdout(io.StringIO()) if args.verbose < 1 else contextlib.nullcontext():
        exp_manager.setup_experiment()
    study = optuna.create_study(
        storage=storage,
        sampler=_make_sampler(exp_manager, args, fixed),
        pruner=exp_manager._create_pruner(args.pruner),
        study_name=study_name,
        load_if_exists=True,
        direction="maximize",
    )
    owner = (study.user_attrs.get("algo"), study.user_attrs.get("env_id"))
    if owner == (None, None):
        study.set_user_attr("algo", args.algo)
        study.set_user_attr("env_id", args.env)
    elif owner != (args.algo, args.env):
        raise ZooError(f"study {study_name!r} belongs to {owner[0]} on {owner[1]}, not {args.algo} on {args.env}")

    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial: optuna.Trial) -> float:
        # Record which worker ran the trial: with many machines on one study, that is how to trace a result
        trial.set_user_attr("worker", worker)
        return exp_manager.objective(trial)

    callbacks = []
    if args.max_total_trials is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(args.max_total_trials, states=_COUNTED_STATES))
        if len(study.get_trials(deepcopy=False, states=_COUNTED_STATES)) >= args.max_total_trials:
            return study, base_entry
    with warnings.catch_warnings():
        # --fix values are the user's choice (checked by check_fixed_params): an off-grid value is not a mistake
        warnings.filterwarnings("ignore", message="Fixed parameter .* is out of range", category=UserWarning)
        study.optimize(objective, n_trials=args.n_trials, n_jobs=args.n_jobs, callbacks=callbacks, gc_after_trial=True)
    return study, base_entry


def plot_study(study: optuna.Study, path: Path) -> None:
    """
    Plot a study as a person reads it: each trial's objective with the best so far, and each trial's evaluations.

    Left: the final evaluation of every finished trial by trial number (pruned ones at their last evaluation, as x)
    and the best value so far. Right: the intermediate evaluations (pruning points) of every trial, pruned ones
    dashed, so one sees where the pruner cut trials off.

    :param study: the study (every worker's trials)
    :param path: the PNG to write
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    figure, (history, curves) = plt.subplots(1, 2, figsize=(11, 4.2))
    for trial in trials:
        steps = sorted(trial.intermediate_values)
        pruned = trial.state == TrialState.PRUNED
        value = trial.value if not pruned else (trial.intermediate_values[steps[-1]] if steps else None)
        if value is not None:
            history.scatter(trial.number, value, marker="x" if pruned else "o", color="gray" if pruned else "tab:blue")
        if steps:
            values = [trial.intermediate_values[step] for step in steps]
            curves.plot(steps, values, linestyle="--" if pruned else "-", color="gray" if pruned else None, alpha=0.8)
    # get_trials returns them by number; a completed trial always has its value
    completed = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    if completed:
        numbers = [trial.number for trial in completed]
        best_so_far = np.maximum.accumulate(np.array([trial.value for trial in completed], dtype=np.float64))
        history.step(numbers, best_so_far, where="post", color="tab:red", label="best so far")
        history.legend(loc="lower right", fontsize="small")
    history.set(xlabel="trial", ylabel="last mean evaluation return", title=f"{study.study_name}: {_state_counts(study)}")
    curves.set(xlabel="environment steps", ylabel="mean evaluation return", title="evaluations per trial (pruned: dashed)")
    for axis in (history, curves):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run_tune(args: argparse.Namespace) -> None:
    """
    The ``tune`` command: run the search, print a summary and write the best hyperparameters as YAML.

    :param args: the parsed options of :func:`add_tune_arguments`
    """
    study, base_entry = tune(args)
    output = Path(args.output) if args.output else Path(args.log_folder) / f"{study.study_name}.yml"
    write_best_yaml(study, args.algo, args.env, base_entry, output, args.storage, args.n_timesteps)
    best = study.best_trial
    print(f"Study {study.study_name!r}: {_state_counts(study)}")
    print(f"Best: trial #{best.number}, value {best.value:.2f}, sampled parameters {best.params}")
    print(f"Best hyperparameters written to {output} (as constructor arguments, e.g. a linear schedule as lin_<x>)")
    plot_study(study, output.with_suffix(".png"))
    print(f"Study plot: {output.with_suffix('.png')}")
