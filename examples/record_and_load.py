"""
Record expert demonstrations, then write and read them in every supported format.

Formats shown: our ``.npz``, a Stable-Baselines2 ``ExpertDataset`` ``.npz``, a Minari dataset (created locally in a
temporary folder; nothing is downloaded), imitation-style trajectories and plain episode dicts. Runs in seconds::

    python examples/record_and_load.py --seed 0 --episodes 3
"""

import argparse
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from sb3_dqfd.common.demonstrations import Demonstrations, load_demonstrations, record_demonstrations, save_demonstrations


@dataclass
class TrajectoryWithRew:
    """Same fields as imitation's ``TrajectoryWithRew``; imitation itself is not needed."""

    obs: np.ndarray
    acts: np.ndarray
    infos: list[dict[str, Any]]
    terminal: bool
    rews: np.ndarray


def same_episodes(first: Demonstrations, second: Demonstrations) -> bool:
    return len(first) == len(second) and all(
        np.array_equal(a.observations, b.observations)
        and np.array_equal(a.actions, b.actions)
        and np.array_equal(a.rewards, b.rewards)
        and (a.terminated, a.truncated) == (b.terminated, b.truncated)
        for a, b in zip(first, second, strict=True)
    )


def sb2_arrays(demos: Demonstrations) -> dict[str, np.ndarray]:
    """What SB2's ``generate_expert_traj`` wrote: no observation after an episode's last step, actions as a column."""
    return {
        "obs": np.concatenate([episode.observations[:-1] for episode in demos]),
        "actions": np.concatenate([episode.actions for episode in demos])[:, None],
        "rewards": np.concatenate([episode.rewards for episode in demos]),
        "episode_returns": demos.episode_returns,
        "episode_starts": np.concatenate([np.arange(len(episode)) == 0 for episode in demos]),
    }


def minari_round_trip(demos: Demonstrations, env_id: str, folder: Path) -> None:
    try:
        import minari
        from minari.data_collector import EpisodeBuffer
    except ImportError:
        print("minari    : skipped (pip install 'minari[hdf5]')")
        return
    os.environ["MINARI_DATASETS_PATH"] = str(folder / "minari")  # a private, local dataset folder
    buffers = [
        EpisodeBuffer(
            id=index,
            observations=episode.observations,
            actions=episode.actions,
            rewards=list(episode.rewards),
            terminations=[False] * (len(episode) - 1) + [episode.terminated],
            truncations=[False] * (len(episode) - 1) + [episode.truncated],
        )
        for index, episode in enumerate(demos)
    ]
    dataset = minari.create_dataset_from_buffers(
        "example/expert-v0",
        buffers,
        env=env_id,
        eval_env=env_id,
        algorithm_name="scripted expert",
        author="sb3-dqfd example",
        author_email="none@example.com",
        code_permalink="examples/record_and_load.py",
        description="demonstrations recorded by the sb3-dqfd example",
    )
    by_id = load_demonstrations("example/expert-v0", env=env_id)
    print(f"minari    : {dataset.total_episodes} episodes written, read back by id: same = {same_episodes(demos, by_id)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1", help="environment with a built-in expert")
    parser.add_argument("--episodes", type=int, default=3, help="episodes to record")
    parser.add_argument("--max-episode-steps", type=int, default=100, help="time limit (short, to show truncation)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode (episode i uses seed + i)")
    args = parser.parse_args()

    env = gym.make(args.env, max_episode_steps=args.max_episode_steps)
    demos = record_demonstrations(args.env, env, n_episodes=args.episodes, seed=args.seed)
    print(demos)
    transitions = demos.to_transitions()
    print(f"transitions: observations {transitions.observations.shape}, actions {transitions.actions.shape}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        save_demonstrations(demos, folder / "demos.npz")
        print(f"our .npz  : read back: same = {same_episodes(demos, load_demonstrations(folder / 'demos.npz'))}")

        np.savez(folder / "sb2.npz", **sb2_arrays(demos))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sb2 = load_demonstrations(folder / "sb2.npz", env=env)
        print(f"SB2 .npz  : {sb2.n_transitions} of {demos.n_transitions} transitions kept ({caught[0].message})")

        minari_round_trip(demos, args.env, folder)

    # imitation marks every end terminal; SB3 VecEnvs put the truncation in the last info, where it is read from
    trajectories = [
        TrajectoryWithRew(e.observations, e.actions, [{"TimeLimit.truncated": e.truncated}] * len(e), True, e.rewards)
        for e in demos
    ]
    print(f"imitation : read back: same = {same_episodes(demos, load_demonstrations(trajectories, env=env))}")

    dicts = [
        {
            "observations": episode.observations,
            "actions": episode.actions,
            "rewards": episode.rewards,
            "terminated": episode.terminated,
            "truncated": episode.truncated,
        }
        for episode in demos
    ]
    print(f"dicts     : read back: same = {same_episodes(demos, load_demonstrations(dicts, env=env))}")


if __name__ == "__main__":
    main()
