"""
How much does DQfD + noisy explore? The share of states at which a fresh draw of the NoisyNet noise changes the greedy
action, against the epsilon-greedy exploration of DQfD as shipped, measured on the models of ``bench_ablation.py``
(same settings, demonstrations and seeds) before pre-training, after it and along the interaction.

Why: the ablation's goal (MountainCar, DQfD + noisy holds -110 at >= 50% of the evaluations after it first reaches it)
assumed that the noise explores where epsilon 0.01 does not, i.e. tries the other push direction at the start state.
Measured per model, at start states (200 seeded resets) and demonstration states (up to 500 drawn from the
demonstrations), each over 50 noise draws:

* ``noisy_share``: the share of (state, draw) pairs whose noisy greedy action differs from the mean-weight greedy action
  (what ``predict(deterministic=True)`` plays): how often acting with noise explores;
* ``epsilon_share``: the same for DQfD as shipped, ``epsilon x (n_actions - 1) / n_actions`` at that step of its
  schedule (a random action that differs from the greedy one);
* ``q_gap``: the median gap between the best and the second-best Q-value (mean weights), which the noise must cross;
* ``sigma``: the mean |sigma| of the noisy layers' weights (NoisyNet's learned noise scale; it starts at
  ``sigma_0 / sqrt(fan_in)``).

Also measured after pre-training: the same model trained with ``l2_coef=0`` (DQfD's L2 is Adam's ``weight_decay``,
which also decays sigma towards 0).

Reproduce (about 20 CPU-minutes)::

    OMP_NUM_THREADS=1 python benchmarks/bench_noisy_exploration.py --seeds 3

Results: ``benchmarks/results/noisy_exploration.{json,png}`` (or ``--output``).
"""

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from sb3_dqfd.common.demonstrations import Demonstrations
from sb3_dqfd.common.experiment import exit_on_ctrl_c
from sb3_dqfd.dqfd import DQfD

sys.path.insert(0, str(Path(__file__).parent))
from bench_ablation import make_dqfd, task_demonstrations, task_settings, variant_hyperparameters
from bench_dqfd import RESULTS

#: The tasks and the interaction steps at which each is measured (MountainCar: its whole budget)
CHECKPOINTS: dict[str, list[int]] = {"MountainCar-v0": [5_000, 10_000, 20_000, 30_000], "LunarLander-v3": [5_000, 20_000]}
N_START_STATES, N_DEMO_STATES, N_DRAWS = 200, 500, 50


def probe_states(env_id: str, demonstrations: Demonstrations, seed: int) -> dict[str, np.ndarray]:
    """
    :return: ``start``: observations of seeded resets; ``demo``: observations drawn from the demonstrations (their
        final observations left out)
    """
    env = gym.make(env_id)
    starts = np.stack([env.reset(seed=10_000 * (seed + 1) + i)[0] for i in range(N_START_STATES)])
    demo = np.concatenate([episode.observations[:-1] for episode in demonstrations.episodes])
    chosen = np.random.default_rng(seed).choice(len(demo), min(N_DEMO_STATES, len(demo)), replace=False)
    return {"start": starts, "demo": demo[chosen]}


def exploration(model: DQfD, states: np.ndarray, epsilon: float) -> dict[str, float]:
    """
    :param model: a noisy DQfD
    :param states: observations, shape ``[S, obs_dim]``
    :param epsilon: DQfD as shipped's epsilon at this point of its schedule
    :return: ``noisy_share``, ``epsilon_share`` and ``q_gap`` (see the module docstring)
    """
    observations = model.policy.obs_to_tensor(states)[0]
    n_actions = int(model.action_space.n)
    with th.no_grad():
        with model.q_net.mean_weights():
            greedy_q = model.q_net(observations)  # [S, n_actions]
        greedy = greedy_q.argmax(dim=1)
        changed = []
        for _ in range(N_DRAWS):
            model.q_net.reset_noise()
            changed.append((model.q_net(observations).argmax(dim=1) != greedy).float().mean().item())
        best_two = greedy_q.topk(2, dim=1).values  # [S, 2]
    return {
        "noisy_share": float(np.mean(changed)),
        "epsilon_share": epsilon * (n_actions - 1) / n_actions,
        "q_gap": float((best_two[:, 0] - best_two[:, 1]).median()),
    }


def sigma(model: DQfD) -> float:
    """The mean |sigma| of the noisy layers' weights."""
    return float(np.mean([layer.weight_sigma.abs().mean().item() for layer in model.q_net._noisy_layers()]))


def measure(model: DQfD, stage: str, states: dict[str, np.ndarray], epsilon: float) -> dict[str, Any]:
    row = {"stage": stage, "timesteps": int(model.num_timesteps), "sigma": sigma(model)}
    return row | {kind: exploration(model, observations, epsilon) for kind, observations in states.items()}


class MeasureAt(BaseCallback):
    """
    Append a measurement to ``rows`` at the given interaction steps; stop learning after the last (the schedules keep
    the full budget).

    :param steps: the steps to measure at
    :param rows: where the measurements go, each ``tag`` plus :func:`measure`'s row
    :param tag: what identifies the run
    :param states: the probe states (:func:`probe_states`)
    :param epsilon: DQfD as shipped's epsilon at a model's current step
    """

    def __init__(
        self,
        steps: list[int],
        rows: list[dict[str, Any]],
        tag: dict[str, Any],
        states: dict[str, np.ndarray],
        epsilon: Callable[[DQfD], float],
    ) -> None:
        super().__init__()
        self.steps, self.rows, self.tag, self.states, self.epsilon = list(steps), rows, tag, states, epsilon

    def _on_step(self) -> bool:
        if self.steps and self.num_timesteps >= self.steps[0]:
            self.steps.pop(0)
            model = cast(DQfD, self.model)
            self.rows.append(self.tag | measure(model, "interaction", self.states, self.epsilon(model)))
        return bool(self.steps)


def run_task(env_id: str, seed: int, checkpoints: list[int], pretrain_steps: int | None = None) -> list[dict[str, Any]]:
    """
    The measurements of one seed: the ablation's DQfD + noisy before and after pre-training and at ``checkpoints``,
    and the same after pre-training with ``l2_coef=0``.

    :param pretrain_steps: override the entry's pre-training updates (tests)
    """
    th.set_num_threads(1)
    demonstrations = task_demonstrations(env_id, seed)
    states = probe_states(env_id, demonstrations, seed)
    override = {} if pretrain_steps is None else {"pretrain_steps": pretrain_steps}
    shipped = make_dqfd(env_id, demonstrations, seed=seed, **variant_hyperparameters("DQfD", env_id) | override)
    budget = task_settings(env_id)["full"]

    def epsilon(model: DQfD) -> float:
        return float(shipped.exploration_schedule(1.0 - model.num_timesteps / budget))

    rows = []
    for l2_coef in (None, 0.0):
        settings = variant_hyperparameters("DQfD + noisy", env_id) | override
        settings |= {} if l2_coef is None else {"l2_coef": l2_coef}
        model = make_dqfd(env_id, demonstrations, seed=seed, **settings)
        label = "DQfD + noisy" if l2_coef is None else "DQfD + noisy, l2_coef 0"
        tag = {"variant": label, "seed": seed, "env_id": env_id}
        if l2_coef is None:
            rows.append(tag | measure(model, "initial", states, epsilon(model)))
        model.pretrain(model.pretrain_steps)
        rows.append(tag | measure(model, "pre-trained", states, epsilon(model)))
        if l2_coef is None and checkpoints:
            model.learn(budget, callback=MeasureAt(checkpoints, rows, tag, states, epsilon))
        print(f"{env_id} seed {seed} {label}: done", flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Medians over seeds per task, variant and step, as Markdown."""
    header = (
        "| task | variant | stage | step | sigma | start: noisy / epsilon share | demo: noisy / epsilon share | start Q gap |"
    )
    lines = [header, "|" + "---|" * 8]
    groups: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["env_id"], row["variant"], row["stage"], row["timesteps"]), []).append(row)
    for (env_id, variant, stage, step), group in groups.items():
        start, demo = (_medians(group, kind) for kind in ("start", "demo"))
        lines.append(
            f"| {env_id} | {variant} | {stage} | {step:,} | {np.median([row['sigma'] for row in group]):.4f} "
            f"| {start['noisy_share']:.3f} / {start['epsilon_share']:.3f} "
            f"| {demo['noisy_share']:.3f} / {demo['epsilon_share']:.3f} | {start['q_gap']:.2f} |"
        )
    return "\n".join(lines)


def _medians(group: list[dict[str, Any]], kind: str) -> dict[str, float]:
    """:return: the medians over ``group``'s rows of their ``kind`` (``start``, ``demo``) measurements"""
    return {key: float(np.median([row[kind][key] for row in group])) for key in group[0][kind]}


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Per task: the share of start states explored by the noise (each seed) and by the shipped epsilon, over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(row["env_id"] for row in rows))
    figure, axes = plt.subplots(1, len(envs), figsize=(6 * len(envs), 4), squeeze=False)
    for axis, env_id in zip(axes[0], envs, strict=True):
        ours = [
            row for row in rows if row["env_id"] == env_id and row["variant"] == "DQfD + noisy" and row["stage"] != "initial"
        ]
        for seed in sorted({row["seed"] for row in ours}):
            points = [(row["timesteps"], row["start"]["noisy_share"]) for row in ours if row["seed"] == seed]
            axis.plot(*zip(*points, strict=True), marker="o", label=f"noise, seed {seed}")
        epsilon = sorted({(row["timesteps"], row["start"]["epsilon_share"]) for row in ours})
        axis.plot(*zip(*epsilon, strict=True), "k--", label="epsilon of DQfD as shipped")
        axis.set(title=env_id, xlabel="environment steps after pre-training", ylabel="share of start states explored")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(CHECKPOINTS), choices=list(CHECKPOINTS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS / "noisy_exploration.json")
    args = parser.parse_args(argv)
    command = "OMP_NUM_THREADS=1 python benchmarks/bench_noisy_exploration.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    print("reproduce: " + command, flush=True)
    rows = [row for env_id in args.envs for seed in range(args.seeds) for row in run_task(env_id, seed, CHECKPOINTS[env_id])]
    print(table(rows))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    plot(rows, args.output.with_suffix(".png"))
    return rows


if __name__ == "__main__":
    exit_on_ctrl_c(main)
