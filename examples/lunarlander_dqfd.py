"""
DQfD on LunarLander-v3 from 20 episodes of gymnasium's heuristic lander (about 245).

The agent's rewards are scaled by a fixed factor with :class:`sb3_dqfd.wrappers.RewardScaling`; DQfD finds that
wrapper on the training env and applies the same transform to the demonstration rewards, so both share one scale in
the replay buffer. Evaluation uses the raw rewards. Prints the teacher's and DQfD's mean return on the same seeds and
writes a plot of DQfD's evaluations during training. Needs box2d (``pip install sb3-dqfd[box2d]``).

    python examples/lunarlander_dqfd.py --timesteps 50000 --seed 0 --output lunarlander_dqfd.png
"""

import argparse

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_vec_env

from sb3_dqfd.common.demonstrations import record_demonstrations
from sb3_dqfd.common.experiment import LearningCurve, plot_curves, train_with_curve
from sb3_dqfd.common.experts import get_expert
from sb3_dqfd.common.hyperparams import shipped_hyperparameters
from sb3_dqfd.dqfd import DQfD
from sb3_dqfd.wrappers.reward_scaling import RewardScaling

ENV_ID = "LunarLander-v3"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=50_000, help="environment steps after pre-training")
    parser.add_argument("--seed", type=int, default=0, help="seed of the demonstrations, the model and the env")
    parser.add_argument("--demo-episodes", type=int, default=20, help="heuristic episodes to record")
    parser.add_argument("--reward-scale", type=float, default=0.01, help="fixed reward scale for agent and demos")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="demo-only updates (default: the shipped value)")
    parser.add_argument("--eval-freq", type=int, default=2_500, help="evaluate every this many environment steps")
    parser.add_argument("--final-episodes", type=int, default=100, help="episodes of the final comparison")
    parser.add_argument("--output", default="lunarlander_dqfd.png", help="where to write the plot")
    args = parser.parse_args()

    teacher = get_expert(ENV_ID)
    # Raw rewards in the demonstrations: DQfD scales them like the training env's rewards
    demonstrations = record_demonstrations(teacher, gym.make(ENV_ID), args.demo_episodes, seed=10_000 * (args.seed + 1))
    print(demonstrations)
    env = make_vec_env(
        ENV_ID, n_envs=1, seed=args.seed, wrapper_class=RewardScaling, wrapper_kwargs=dict(scale=args.reward_scale)
    )
    # The shipped hyperparameters for this task (sb3_dqfd/hyperparams/dqfd.yml), as the benchmarks run them
    hyperparameters = shipped_hyperparameters(DQfD, ENV_ID)
    if args.pretrain_steps is not None:
        hyperparameters["pretrain_steps"] = args.pretrain_steps
    model = DQfD("MlpPolicy", env, demonstrations=demonstrations, seed=args.seed, **hyperparameters)
    eval_env = make_vec_env(ENV_ID, n_envs=1, seed=1_000 + args.seed)  # raw rewards
    curve = train_with_curve(
        model,
        "DQfD",
        args.seed,
        args.timesteps,
        eval_env,
        args.eval_freq,
        n_eval_episodes=10,
        before_learning=lambda: model.pretrain(model.pretrain_steps),
    )

    # The same evaluation seeds (50_000 + seed + i) for the teacher and the trained agent, raw env rewards
    same_seeds = dict(n_episodes=args.final_episodes, seed=50_000 + args.seed)
    teacher_score = record_demonstrations(teacher, ENV_ID, **same_seeds).episode_returns.mean()
    dqfd_score = record_demonstrations(model, ENV_ID, **same_seeds).episode_returns.mean()
    print(f"evaluations during training: {np.round(curve.mean_returns, 1).tolist()}")
    print(f"same {args.final_episodes} seeds: teacher {teacher_score:.1f}, DQfD {dqfd_score:.1f}")

    # The teacher's score on the same seeds, drawn flat over the budget beside DQfD's evaluations
    teacher_line = LearningCurve("teacher, same seeds", args.seed, [0, args.timesteps], [teacher_score] * 2, [0.0] * 2)
    title = f"DQfD on {ENV_ID} from {args.demo_episodes} heuristic episodes (rewards x{args.reward_scale})"
    plot_curves([curve, teacher_line], args.output, title, threshold=200)
    print(f"plot written to {args.output}")


if __name__ == "__main__":
    main()
