"""
The reference experiment of report 004, with a transformer that really attends over time: TransformerA2C on
Walker2d-v5 (10 envs, 32 steps per update, 600-step episodes) with the report's reward-weight domain randomization,
then the "higher healthy reward" retraining stage that continues from the first stage's weights.

Reward weights (forward_reward_weight, ctrl_cost_weight, healthy_reward, reset_noise_scale) are drawn with the
report's distributions from ``sb3_dqfd.wrappers.PRESETS["walker2d_reward"]`` (retraining:
``"walker2d_reward_retrain"``, healthy reward ~ N(3, 0.5) clipped to [2.5, 3.5]). Unlike the report, which drew them
once per env, the preset redraws them at every episode. Evaluation uses the nominal (unrandomized) Walker2d-v5.

    OMP_NUM_THREADS=1 python examples/walker2d_transformer_a2c.py --timesteps 20000 --seed 0

Needs ``gymnasium[mujoco]``. The default budget is a smoke run; the report trained for millions of steps.
"""

import argparse
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

from sb3_dqfd.transformer_a2c import TransformerA2C
from sb3_dqfd.wrappers import PRESETS

ENV_ID = "Walker2d-v5"
ENV_KWARGS = dict(max_episode_steps=600)


class EvalCurve(BaseCallback):
    """Deterministic evaluation on the nominal env every ``eval_freq`` steps, appended to a shared curve."""

    def __init__(self, eval_env: VecEnv, eval_freq: int, n_episodes: int, curve: list[tuple[int, float, str]], stage: str):
        super().__init__()
        self.eval_env, self.eval_freq, self.n_episodes = eval_env, eval_freq, n_episodes
        self.curve, self.stage = curve, stage
        self.next_eval = 0

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            mean_reward, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.n_episodes, deterministic=True)
            self.curve.append((self.num_timesteps, float(mean_reward), self.stage))
            print(f"[{self.stage}] {self.num_timesteps:>8d} steps: eval return {mean_reward:8.1f}", flush=True)
            self.next_eval = self.num_timesteps + self.eval_freq
        return True


def plot(curve: list[tuple[int, float, str]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for stage in dict.fromkeys(stage for _, _, stage in curve):
        points = np.array([(steps, reward) for steps, reward, s in curve if s == stage])
        ax.plot(points[:, 0], points[:, 1], marker="o", label=stage)
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return (nominal Walker2d-v5)")
    ax.set_title("TransformerA2C on Walker2d-v5 with reward-weight randomization")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=20_000, help="env steps per stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-freq", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=3)
    parser.add_argument("--context-len", type=int, default=16)
    parser.add_argument("--state-dependent-std", action="store_true", help="the report's log-std head")
    parser.add_argument("--output", type=Path, default=Path("walker2d_transformer_a2c"))
    args = parser.parse_args()
    th.set_num_threads(1)
    args.output.mkdir(parents=True, exist_ok=True)

    def train_env(preset: str) -> VecEnv:
        return make_vec_env(ENV_ID, n_envs=10, seed=args.seed, env_kwargs=ENV_KWARGS, wrapper_class=PRESETS[preset])

    eval_env = make_vec_env(ENV_ID, n_envs=1, seed=args.seed + 1_000, env_kwargs=ENV_KWARGS)
    curve: list[tuple[int, float, str]] = []

    # Stage 1: the report's randomized reward weights; separate actor and critic encoders, as the report used.
    model = TransformerA2C(
        "MlpPolicy",
        train_env("walker2d_reward"),
        n_steps=32,
        seed=args.seed,
        policy_kwargs=dict(
            context_len=args.context_len,
            share_encoder=False,
            state_dependent_std=args.state_dependent_std,
        ),
    )
    model.learn(args.timesteps, callback=EvalCurve(eval_env, args.eval_freq, args.eval_episodes, curve, "stage 1"))
    model.save(args.output / "stage1")

    # Stage 2: continue from stage 1's weights with a larger healthy reward (N(3, 0.5) clipped to [2.5, 3.5]).
    model.set_env(train_env("walker2d_reward_retrain"))
    callback = EvalCurve(eval_env, args.eval_freq, args.eval_episodes, curve, "stage 2: healthy reward ~3")
    model.learn(args.timesteps, callback=callback, reset_num_timesteps=False)
    model.save(args.output / "stage2")

    plot(curve, args.output / "learning_curve.png")
    print(f"models and learning curve written to {args.output}/")


if __name__ == "__main__":
    main()
