"""
DQfD on CartPole-v1 from 5 episodes of a scripted expert, with the shipped hyperparameters (hyperparams/dqfd.yml).

Records the expert, pre-trains on its demonstrations, then learns from interaction. Prints the number of training
episodes until the mean return of the last 20 training episodes reaches 475 (the user's reference report 000 needed
82 episodes with its own window), and writes a plot of the training episode returns.

    python examples/cartpole_dqfd.py --timesteps 20000 --seed 0 --output cartpole_dqfd.png
"""

import argparse

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_dqfd.common.demonstrations import record_demonstrations
from sb3_dqfd.common.experts import get_expert
from sb3_dqfd.common.hyperparams import shipped_hyperparameters
from sb3_dqfd.dqfd import DQfD

WINDOW = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=20_000, help="environment steps after pre-training")
    parser.add_argument("--seed", type=int, default=0, help="seed of the demonstrations, the model and the env")
    parser.add_argument("--demo-episodes", type=int, default=5, help="expert episodes to record")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="demo-only updates (default: the shipped value)")
    parser.add_argument("--output", default="cartpole_dqfd.png", help="where to write the plot")
    args = parser.parse_args()

    demonstrations = record_demonstrations(
        get_expert("CartPole-v1"), gym.make("CartPole-v1"), args.demo_episodes, seed=10_000 * (args.seed + 1)
    )
    print(demonstrations)
    env = make_vec_env("CartPole-v1", n_envs=1, seed=args.seed)  # Monitor-wrapped: episode returns in infos
    # The shipped hyperparameters for this task (sb3_dqfd/hyperparams/dqfd.yml), as the benchmarks run them
    hyperparameters = shipped_hyperparameters(DQfD, "CartPole-v1")
    if args.pretrain_steps is not None:
        hyperparameters["pretrain_steps"] = args.pretrain_steps
    model = DQfD("MlpPolicy", env, demonstrations=demonstrations, seed=args.seed, verbose=0, **hyperparameters)
    model.learn(args.timesteps)

    returns = np.array([float(info["r"]) for info in model.ep_info_buffer])
    if len(model.ep_info_buffer) == model.ep_info_buffer.maxlen:
        print(f"(only the last {model.ep_info_buffer.maxlen} training episodes are kept in ep_info_buffer)")
    running = np.array([returns[max(0, i + 1 - WINDOW) : i + 1].mean() for i in range(len(returns))])
    reached = np.flatnonzero((running >= 475) & (np.arange(len(returns)) + 1 >= WINDOW))
    episodes_to_475 = int(reached[0]) + 1 if reached.size else None
    mean_eval, std_eval = evaluate_policy(model, make_vec_env("CartPole-v1", n_envs=1, seed=args.seed + 100), 10)
    print(f"training episodes: {len(returns)}; mean of the last {WINDOW} reached 475 after: {episodes_to_475} episodes")
    print(f"deterministic evaluation (10 episodes): {mean_eval:.1f} +/- {std_eval:.1f}")

    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(np.arange(1, len(returns) + 1), returns, alpha=0.4, label="training episode return")
    axis.plot(np.arange(1, len(returns) + 1), running, label=f"mean of last {WINDOW}")
    axis.axhline(475, color="gray", linestyle="--", linewidth=1, label="475")
    axis.set_xlabel("training episode (after pre-training)")
    axis.set_ylabel("return")
    axis.set_title(f"DQfD on CartPole-v1 from {args.demo_episodes} expert episodes")
    axis.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(args.output, dpi=110)
    print(f"plot written to {args.output}")


if __name__ == "__main__":
    main()
