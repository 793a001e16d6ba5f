"""
DQfD on Atari (ALE) from the built-in Breakout expert's demonstrations, against SB3 DQN with rl-zoo3's Atari settings.

Both modes record ``--demo-episodes`` full games of the expert (``AleScreenExpert(env, atari_breakout_expert)``: it
reads the raw RGB screen) through SB3's Atari preprocessing (``AtariWrapper(env, terminal_on_life_loss=False)``: 84x84
grey frames, clipped rewards; full games, so that the expert's own serves after a lost life are in the
demonstrations, see below) and train behind ``VecFrameStack(make_atari_env(game), 4)`` (``AtariWrapper``'s
defaults). DQfD stores each frame once (``CompactDQfDReplayBuffer``) and uses NatureCNN (dueling). Evaluation
follows the usual Atari protocol: up to 30 no-op starts, the greedy policy (``deterministic=True``), life loss NOT
terminal, unclipped rewards, full games up to ``--max-episode-frames`` emulator frames
(``make_atari_env(..., wrapper_kwargs=dict(terminal_on_life_loss=False, clip_reward=False))``). The expert is
measured on that same evaluation env (``--expert-episodes`` games), and every curve is drawn against it.

The DQN baseline is rl-zoo3's ``atari`` entry of ``hyperparams/dqn.yml`` (CnnPolicy, replay 100k, lr 1e-4, batch 32,
learning starts at 100k steps, target sync every 1k steps, an update every 4 steps, epsilon 1 -> 0.01 over the first
10% of the run) on the same env and budget (environment steps = agent steps, 4 frames each).

``--cpu`` (this machine: about 15 minutes of CPU time for pre-training and as much for the interaction runs and
evaluations; much longer in wall time on a core shared with other jobs)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_atari.py --cpu

pre-trains DQfD alone (``DQfD.pretrain``, ``--pretrain-steps`` updates, 10,000 by default: about 400 s of CPU time,
~25 updates per CPU second; 709 s wall with 57% of a core), evaluates the greedy pre-trained policy (goal: at least 50% of the
expert's return), then continues with a short interaction run (``--budget`` 25,000 steps) next to DQN on the same
budget. DQfD keeps ``ATARI_PAPER_HYPERPARAMS`` but a 100k replay buffer. With its 100k learning starts, DQN does not
update once within such a budget: its curve is that of an untrained network, shown for the protocol, not as a result.
Results: ``benchmarks/results/bench_atari_cpu.json`` and ``.png``.

``--gpu`` (the paper's scale, NOT run here)::

    python benchmarks/bench_atari.py --gpu --seeds 3 --device cuda

DQfD with ``ATARI_PAPER_HYPERPARAMS`` (750k pre-training updates, 1M replay buffer, prioritized, n-step 10, margin
0.8) against the zoo's DQN, ``--budget`` 2.5M agent steps (10M frames) each, evaluated every ``--eval-freq`` 100k
steps. Needs a CUDA GPU, about 8 GiB of RAM per DQfD run (the compact buffer holds ~7 GiB for 1M transitions;
DQN's 100k SB3 buffer, with its separate next observations, about 5.3 GiB), and hours: 750k pre-training updates
plus 625k interaction updates per DQfD run, 625k updates per DQN run (a few hours per run on a recent GPU, one run
at a time by default, ``--jobs``). Results: ``benchmarks/results/bench_atari_gpu.json`` and ``.png``. Any other ALE
game works with ``--game <Game>NoFrameskip-v4 --demos <file>``: demonstrations of single 84x84x1 frames recorded
through ``AtariWrapper`` (only Breakout has a built-in expert).

Why full games: ``AtariWrapper``'s defaults end an episode at a lost life and serve the next ball in ``reset``
(``FireResetEnv``), so demonstrations recorded that way (``--demos-per-life``, README's snippet) never show the expert
serving, which the evaluation protocol asks of the agent: there a lost life does not end the game, and Breakout
waits for FIRE before the next ball (a policy that never presses it plays on to the frame cap). The agent's own
transitions keep ``AtariWrapper``'s defaults, as SB3 and rl-zoo3 train.

Measured with ``--cpu`` (seed 0, ``benchmarks/results/bench_atari_cpu.json``): the expert scores 81.1 on the
evaluation env; after 10,000 pre-training updates the greedy policy scores 1.2 (the 50% goal is not met at this
scale), 4.6 after 25k steps of interaction; DQN stays at 0 (it does not update before 100k steps).

Progress: one line per evaluation. Each finished run is saved at once to ``<output>_partial.json`` and a running one
after each evaluation to ``<output>_running_<method>_<seed>.json``, so Ctrl-C keeps what finished.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.atari_wrappers import AtariWrapper
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecFrameStack

from sb3_dqfd.common.demonstrations import (
    Demonstrations,
    frame_stack_demonstrations,
    load_demonstrations,
    record_demonstrations,
)
from sb3_dqfd.common.experiment import (
    LearningCurve,
    exit_on_ctrl_c,
    format_table,
    plot_curves,
    run_in_processes,
    save_results,
    summarize,
)
from sb3_dqfd.common.experts import AleScreenExpert, atari_breakout_expert
from sb3_dqfd.dqfd import ATARI_PAPER_HYPERPARAMS, DQfD

RESULTS = Path(__file__).parent / "results"
DQN_LABEL = "DQN (rl-zoo3 Atari)"
#: Games with a built-in expert (reading the raw RGB screen); others need ``--demos``
EXPERTS = {"BreakoutNoFrameskip-v4": atari_breakout_expert}
#: Share of the expert's return the greedy pre-trained policy must reach
PRETRAINED_GOAL = 0.5

#: Per mode: the defaults of the options it leaves unset
MODES: dict[str, dict[str, Any]] = {
    "cpu": dict(
        seeds=1,
        budget=25_000,
        pretrain_steps=10_000,
        eval_freq=5_000,
        eval_episodes=5,
        expert_episodes=10,
        demo_episodes=10,
        heldout_episodes=2,
        buffer_size=100_000,
        max_episode_frames=18_000,
        jobs=1,
        device="cpu",
    ),
    "gpu": dict(
        seeds=3,
        budget=2_500_000,
        pretrain_steps=ATARI_PAPER_HYPERPARAMS["pretrain_steps"],
        eval_freq=100_000,
        eval_episodes=10,
        expert_episodes=30,
        demo_episodes=10,
        heldout_episodes=2,
        buffer_size=ATARI_PAPER_HYPERPARAMS["buffer_size"],
        max_episode_frames=108_000,
        jobs=1,
        device="auto",
    ),
}


def zoo_atari_dqn_hyperparameters() -> dict[str, Any]:
    """rl-zoo3's ``atari`` entry of ``hyperparams/dqn.yml`` (with ``AtariWrapper`` and ``frame_stack: 4``)."""
    return dict(
        buffer_size=100_000,
        learning_rate=1e-4,
        batch_size=32,
        learning_starts=100_000,
        target_update_interval=1_000,
        train_freq=4,
        gradient_steps=1,
        exploration_fraction=0.1,
        exploration_final_eps=0.01,
        optimize_memory_usage=False,  # the zoo's explicit choice: next observations stored apart (2x the memory)
    )


def register_ale() -> None:
    if "BreakoutNoFrameskip-v4" not in gym.registry:
        import ale_py

        gym.register_envs(ale_py)


def make_train_env(game: str, seed: int) -> VecEnv:
    """SB3's Atari training pipeline: ``AtariWrapper`` defaults (life loss terminal, clipped rewards), 4 frames."""
    register_ale()
    return VecFrameStack(make_atari_env(game, n_envs=1, seed=seed), n_stack=4)


#: The evaluation protocol's ``AtariWrapper`` settings (its no-op starts, up to 30, are the default)
EVAL_WRAPPER_KWARGS = dict(terminal_on_life_loss=False, clip_reward=False)


def make_eval_env(game: str, seed: int, max_episode_frames: int) -> VecEnv:
    """The evaluation env: full games (life loss not terminal), unclipped rewards, capped at ``max_episode_frames``."""
    register_ale()
    env_kwargs = dict(max_episode_steps=max_episode_frames)  # NoFrameskip: one env step is one frame
    return VecFrameStack(
        make_atari_env(game, n_envs=1, seed=seed, wrapper_kwargs=EVAL_WRAPPER_KWARGS, env_kwargs=env_kwargs), n_stack=4
    )


def expert_returns(game: str, n_episodes: int, max_episode_frames: int) -> list[float]:
    """The expert's returns on the evaluation env (the wrappers ``make_eval_env`` builds, one env; seeds 77,000 + i)."""
    register_ale()
    env = AtariWrapper(Monitor(gym.make(game, max_episode_steps=max_episode_frames)), **EVAL_WRAPPER_KWARGS)
    demos = record_demonstrations(AleScreenExpert(env, EXPERTS[game]), env, n_episodes, seed=77_000)
    return [float(value) for value in demos.episode_returns]


def demonstrations_for(game: str, n_episodes: int, seed: int, path: Path | None, per_life: bool = False) -> Demonstrations:
    """
    The expert's demonstrations through ``AtariWrapper`` (84x84x1 frames, clipped rewards), or a file.

    By default full games (``terminal_on_life_loss=False``): the expert serves each new ball itself after a lost life,
    as the evaluation protocol asks of the agent. With ``per_life`` (``AtariWrapper``'s default, README's snippet) a
    lost life ends an episode and the wrapper's reset serves the next ball: the demonstrations never show a serve.
    """
    register_ale()
    recording_env = AtariWrapper(gym.make(game), terminal_on_life_loss=per_life)
    if path is not None:
        return load_demonstrations(path, env=recording_env)
    return record_demonstrations(AleScreenExpert(recording_env, EXPERTS[game]), recording_env, n_episodes, seed=seed)


def action_agreement(model: DQfD, demonstrations: Demonstrations, n_stack: int = 4, batch_size: int = 256) -> float:
    """
    Share of the demonstrations' steps where the greedy policy picks the demonstrated action, the frames stacked as
    the training env's ``VecFrameStack`` stacks them: high on the training demonstrations and low on held-out games
    means too little variety; low on both means too few updates.

    :param model: the (pre-trained) model
    :param demonstrations: single 84x84x1 frames, as recorded through ``AtariWrapper``
    :param n_stack: frames per observation, as in training
    :param batch_size: observations per ``predict`` call
    :return: the agreement, between 0 and 1
    """
    transitions = frame_stack_demonstrations(demonstrations, n_stack).to_transitions()
    observations = np.asarray(transitions.observations)  # [N, 84, 84, n_stack], channel last as VecFrameStack
    greedy = np.concatenate(
        [model.predict(observations[start : start + batch_size], deterministic=True)[0] for start in
         range(0, len(observations), batch_size)]
    )  # fmt: skip
    return float(np.mean(greedy == transitions.actions.reshape(-1)))


class EvaluationReporter(VecEnvWrapper):
    """
    Watches the evaluation env: every ``n_eval_episodes`` finished games make one evaluation of
    :func:`~sb3_dqfd.common.experiment.train_with_curve` (which plays exactly that many, one env), so it can print a
    line and save the run so far without touching the training loop.

    :param venv: the evaluation env (one env)
    :param n_eval_episodes: episodes per evaluation
    :param on_evaluation: called with the episode returns of each evaluation
    """

    def __init__(self, venv: VecEnv, n_eval_episodes: int, on_evaluation: Any) -> None:
        super().__init__(venv)
        self.n_eval_episodes = n_eval_episodes
        self.on_evaluation = on_evaluation
        self.returns: list[float] = []

    def reset(self) -> np.ndarray:
        return self.venv.reset()

    def step_wait(self) -> Any:
        observations, rewards, dones, infos = self.venv.step_wait()
        for done, info in zip(dones, infos, strict=True):
            if done and "episode" in info:  # Monitor's game return (unclipped here)
                self.returns.append(float(info["episode"]["r"]))
                if len(self.returns) == self.n_eval_episodes:
                    self.on_evaluation(self.returns)
                    self.returns = []
        return observations, rewards, dones, infos


def run_one(job: tuple[str, int, dict[str, Any]]) -> tuple[LearningCurve, dict[str, Any]]:
    """
    One training run in its own process.

    :param job: method ("DQfD" or "DQN"), seed, and the settings
    :return: the learning curve and what else the run measured (pre-training updates and seconds)
    """
    from sb3_dqfd.common.experiment import train_with_curve

    method, seed, settings = job
    if settings["device"] == "cpu" or not th.cuda.is_available():
        th.set_num_threads(1)  # one core per run: parallel runs give the curves of serial ones
    game, budget, eval_freq = settings["game"], settings["budget"], settings["eval_freq"]
    eval_episodes = settings["eval_episodes"]
    label = "DQfD" if method == "DQfD" else DQN_LABEL
    running = LearningCurve(label, seed)
    running_path = Path(settings["output"]).with_name(f"{Path(settings['output']).stem}_running_{method}_{seed}.json")
    clock = time.perf_counter()
    model: Any = None

    def report(returns: list[float]) -> None:
        running.timesteps.append(int(model.num_timesteps))
        running.mean_returns.append(float(np.mean(returns)))
        running.std_returns.append(float(np.std(returns)))
        print(
            f"{game} {label} seed {seed}: step {model.num_timesteps:,} return {np.mean(returns):.1f} +- {np.std(returns):.1f}"
            f" ({time.perf_counter() - clock:.0f} s)",
            flush=True,
        )
        save_results(running_path, [running], {"complete": False, "settings": settings})

    eval_env = EvaluationReporter(make_eval_env(game, 1_000 + seed, settings["max_episode_frames"]), eval_episodes, report)
    extras: dict[str, Any] = {"method": label, "seed": seed}
    if method == "DQfD":
        demos = demonstrations_for(
            game, settings["demo_episodes"], 10_000 * (seed + 1), settings["demos"], settings["demos_per_life"]
        )
        extras |= {"demo_episodes": len(demos), "demo_transitions": int(demos.n_transitions)}
        kwargs = dict(ATARI_PAPER_HYPERPARAMS) | dict(buffer_size=settings["buffer_size"], pretrain_steps=0)
        env = make_train_env(game, seed)
        model = DQfD("CnnPolicy", env, demonstrations=demos, seed=seed, device=settings["device"], **kwargs)

        def pretrain() -> None:
            start = time.perf_counter()
            model.pretrain(settings["pretrain_steps"])
            extras["pretrain_updates"] = settings["pretrain_steps"]
            extras["pretrain_seconds"] = time.perf_counter() - start
            print(f"{game} DQfD seed {seed}: {settings['pretrain_steps']:,} pre-training updates in "
                  f"{extras['pretrain_seconds']:.0f} s", flush=True)  # fmt: skip
            measure_agreement(model, demos, settings, seed, extras)

        curve = train_with_curve(model, label, seed, budget, eval_env, eval_freq, eval_episodes, before_learning=pretrain)
        extras["pretrained_return"] = curve.mean_returns[0]
    else:
        kwargs = zoo_atari_dqn_hyperparameters()
        model = DQN("CnnPolicy", make_train_env(game, seed), seed=seed, device=settings["device"], **kwargs)
        curve = train_with_curve(model, label, seed, budget, eval_env, eval_freq, eval_episodes)
    interaction_seconds = curve.train_seconds - extras.get("pretrain_seconds", 0.0)
    extras["interaction_steps_per_second"] = curve.timesteps[-1] / interaction_seconds if interaction_seconds > 0 else None
    running_path.unlink(missing_ok=True)
    print(f"{game} {label} seed {seed}: {np.round(curve.mean_returns, 1).tolist()}", flush=True)
    return curve, extras


def measure_agreement(model: DQfD, demos: Demonstrations, settings: dict[str, Any], seed: int, extras: dict[str, Any]) -> None:
    """Greedy agreement with the training demonstrations and with ``heldout_episodes`` other games of the expert."""
    extras["demo_agreement"] = action_agreement(model, demos)
    message = f"agreement with the demonstrated actions {extras['demo_agreement']:.3f}"
    if settings["heldout_episodes"] > 0 and settings["demos"] is None:
        heldout = demonstrations_for(
            settings["game"], settings["heldout_episodes"], 50_000 + seed, None, settings["demos_per_life"]
        )
        extras["heldout_agreement"] = action_agreement(model, heldout)
        message += f", with {len(heldout)} held-out expert games {extras['heldout_agreement']:.3f}"
    print(f"{settings['game']} DQfD seed {seed}: {message}", flush=True)


def goals(curves: list[LearningCurve], extras: list[dict[str, Any]], expert: float) -> dict[str, Any]:
    """Pre-trained share of the expert's return, and the end of the interaction run (medians over seeds)."""
    dqfd = [curve for curve in curves if curve.label == "DQfD"]
    dqn = [curve for curve in curves if curve.label == DQN_LABEL]
    result: dict[str, Any] = {"expert_mean_return": expert}
    if dqfd:
        pretrained = float(np.median([curve.mean_returns[0] for curve in dqfd]))
        pretrain_runs = [extra for extra in extras if "pretrain_seconds" in extra]
        result |= {
            "pretrain_updates": pretrain_runs[0]["pretrain_updates"] if pretrain_runs else None,
            "median_pretrain_seconds": float(np.median([extra["pretrain_seconds"] for extra in pretrain_runs])),
            "median_pretrained_return": pretrained,
            "pretrained_share_of_expert": pretrained / expert if expert else None,
            f"pretrained_at_least_{PRETRAINED_GOAL:.0%}": bool(expert and pretrained / expert >= PRETRAINED_GOAL),
            "median_final_dqfd": float(np.median([curve.mean_returns[-1] for curve in dqfd])),
            "dqfd_retention_per_seed": [curve.retention() for curve in dqfd],
            "demo_agreement_per_seed": [extra.get("demo_agreement") for extra in pretrain_runs],
            "heldout_agreement_per_seed": [extra.get("heldout_agreement") for extra in pretrain_runs],
        }
    if dqn:
        result["median_final_dqn"] = float(np.median([curve.mean_returns[-1] for curve in dqn]))
        result["dqn_trained"] = any(curve.timesteps[-1] > zoo_atari_dqn_hyperparameters()["learning_starts"] for curve in dqn)
    result["interaction_steps_per_second"] = {
        extra["method"]: extra["interaction_steps_per_second"] for extra in extras if extra["seed"] == extras[0]["seed"]
    }
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--cpu", action="store_true", help="this machine: pre-training alone, then a short interaction run")
    mode.add_argument("--gpu", action="store_true", help="the paper's scale: 750k pre-training updates, 10M frames")
    parser.add_argument("--game", default="BreakoutNoFrameskip-v4", help="a NoFrameskip-v4 ALE game")
    parser.add_argument("--demos", type=Path, default=None, help="demonstrations file (games without a built-in expert)")
    parser.add_argument(
        "--demos-per-life", action="store_true", help="record lives (AtariWrapper's default), not full games: no serves"
    )
    parser.add_argument("--no-dqn", action="store_true", help="run DQfD only")
    parser.add_argument("--output", type=Path, default=None, help="results JSON (default: results/bench_atari_<mode>.json)")
    defaults = MODES["gpu"]
    for name, kind, text in [
        ("seeds", int, "seeds per method"),
        ("budget", int, "environment (agent) steps per run, after pre-training"),
        ("pretrain_steps", int, "DQfD's pre-training updates"),
        ("eval_freq", int, "evaluate every this many environment steps"),
        ("eval_episodes", int, "greedy games per evaluation"),
        ("expert_episodes", int, "games to measure the expert on, under the evaluation protocol"),
        ("demo_episodes", int, "demonstration episodes (full games; lives with --demos-per-life) to record"),
        ("heldout_episodes", int, "other expert games to measure the pre-trained policy's agreement on (0: none)"),
        ("buffer_size", int, "DQfD's replay buffer, demonstrations included"),
        ("max_episode_frames", int, "evaluation games end after this many emulator frames"),
        ("jobs", int, "runs in parallel processes"),
        ("device", str, "torch device"),
    ]:
        flag = "--" + name.replace("_", "-")
        mode_defaults = f"--cpu: {MODES['cpu'][name]}, --gpu: {defaults[name]}"
        parser.add_argument(flag, type=kind, default=None, help=f"{text} ({mode_defaults})")
    args = parser.parse_args(argv)
    mode_name = "cpu" if args.cpu else "gpu"
    for name, value in MODES[mode_name].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    positive = ("seeds", "eval_freq", "eval_episodes", "expert_episodes", "demo_episodes", "buffer_size")
    for name in (*positive, "max_episode_frames", "jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("budget", "pretrain_steps", "heldout_episodes"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be at least 0, got {getattr(args, name)}")
    if args.demos is None and args.game not in EXPERTS:
        parser.error(f"no built-in expert for {args.game!r} (only {sorted(EXPERTS)}): pass --demos")
    if args.demos is not None and not args.demos.exists():
        parser.error(f"--demos {args.demos}: no such file")
    args.mode = mode_name
    if args.output is None:
        args.output = RESULTS / f"bench_atari_{mode_name}.json"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    run_settings = ("game", "budget", "pretrain_steps", "eval_freq", "eval_episodes", "demo_episodes", "heldout_episodes")
    run_settings = (*run_settings, "buffer_size")
    settings = {key: getattr(args, key) for key in (*run_settings, "max_episode_frames", "device", "demos", "output")}
    settings["demos_per_life"] = args.demos_per_life
    settings["output"], settings["demos"] = str(args.output), args.demos and str(args.demos)
    metadata: dict[str, Any] = {
        "command": " ".join(["python", *(sys.argv if argv is None else ["benchmarks/bench_atari.py", *argv])]),
        "mode": args.mode,
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "machine": {
            "python": platform.python_version(),
            "torch": th.__version__,
            "cpus": os.cpu_count(),
            "cuda": th.cuda.get_device_name(0) if th.cuda.is_available() else None,
        },
        "dqfd_hyperparameters": {key: repr(value) for key, value in ATARI_PAPER_HYPERPARAMS.items()}
        | {"buffer_size": args.buffer_size, "pretrain_steps": args.pretrain_steps},
        "dqn_hyperparameters": zoo_atari_dqn_hyperparameters(),
        "eval_protocol": dict(EVAL_WRAPPER_KWARGS, noop_max=30, deterministic=True, max_frames=args.max_episode_frames),
    }
    start = time.perf_counter()
    expert: float | None = None
    if args.demos is None:
        returns = expert_returns(args.game, args.expert_episodes, args.max_episode_frames)
        expert = round(float(np.mean(returns)), 1)
        metadata["expert"] = {"mean": expert, "std": float(np.std(returns)), "returns": returns}
        print(f"{args.game} expert under the evaluation protocol: {expert} +- {np.std(returns):.1f} {returns}", flush=True)
    methods = ["DQfD"] if args.no_dqn else ["DQfD", "DQN"]
    jobs = [(method, seed, settings) for seed in range(args.seeds) for method in methods]
    partial_path = args.output.with_name(args.output.stem + "_partial.json")

    def save_partial(done: list[tuple[LearningCurve, dict[str, Any]]]) -> None:
        extras = [extra for _, extra in done]
        save_results(partial_path, [curve for curve, _ in done], metadata | {"complete": False, "runs": extras})

    results = run_in_processes(run_one, jobs, args.jobs, on_result=save_partial)
    curves, extras = [curve for curve, _ in results], [extra for _, extra in results]
    reference: list[LearningCurve] = []
    if expert is not None:
        std = metadata["expert"]["std"]
        reference = [LearningCurve("expert", 0, [0, args.budget], [expert, expert], [std, std])]
    report = goals(curves, extras, expert) if expert is not None else {}
    table = format_table(summarize([*reference, *curves], expert), expert)
    plot_curves([*reference, *curves], args.output.with_suffix(".png"), f"{args.game}: DQfD vs DQN ({args.mode})")
    metadata |= {"complete": True, "wall_seconds": time.perf_counter() - start, "runs": extras, "goals": report}
    metadata["table"] = table
    save_results(args.output, curves, metadata)
    partial_path.unlink(missing_ok=True)
    print(f"\n{table}\n{json.dumps(report, indent=1, default=str)}\nresults: {args.output}")
    return metadata


if __name__ == "__main__":
    exit_on_ctrl_c(
        main,
        "the finished runs in <output>_partial.json, each running one up to its last evaluation in "
        "<output>_running_<method>_<seed>.json",
    )
