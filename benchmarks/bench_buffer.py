"""
Cost of DQfDReplayBuffer sampling and priority updates on a full 1M-transition buffer, side by side with SB3's
``ReplayBuffer`` (uniform, 1-step) and ``NStepReplayBuffer`` (uniform, n-step) in the same run.

CartPole-sized data (observation ``(4,)`` float32, ``Discrete(2)``), 50k demonstration transitions in 200-step
episodes, the rest agent data with random episode ends, batch 256, n = 10. Each operation is timed call by call
(``time.perf_counter``) on a warm buffer whose priorities change every iteration; the table shows the median over
seeds of the per-seed median (and of the 10th percentile, less sensitive to other processes on shared cores).
Buffers are filled in bulk through SB3's public array attributes (``observations[row, env]``, ``pos``, ``full``)
and ``update_priorities`` so that the 1M fill takes seconds; the per-step ``add`` cost is timed separately.

Small default budget (about a minute)::

    OMP_NUM_THREADS=1 python benchmarks/bench_buffer.py

More repetitions and seeds::

    OMP_NUM_THREADS=1 python benchmarks/bench_buffer.py --full
"""

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer

from sb3_dqfd.common.buffers import DQfDReplayBuffer
from sb3_dqfd.common.demonstrations import Demonstrations, Episode

RESULTS = Path(__file__).parent / "results"
OBS_SPACE = spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
ACTION_SPACE = spaces.Discrete(2)


def make_demonstrations(n_transitions: int, rng: np.random.Generator) -> Demonstrations:
    """Terminated 200-step episodes of random CartPole-shaped data."""
    episodes = [
        Episode(
            observations=rng.normal(size=(201, 4)).astype(np.float32),
            actions=rng.integers(0, 2, size=200),
            rewards=np.ones(200, dtype=np.float32),
            terminated=True,
            truncated=False,
        )
        for _ in range(n_transitions // 200)
    ]
    return Demonstrations(episodes, OBS_SPACE, ACTION_SPACE)


def fill(buffer: ReplayBuffer, rng: np.random.Generator) -> None:
    """Fill the (agent) ring completely: random observations, episode ends every ~100 steps, some of them timeouts."""
    shape = buffer.observations.shape[:2]
    buffer.observations[:] = rng.normal(size=buffer.observations.shape)
    buffer.next_observations[:] = rng.normal(size=buffer.next_observations.shape)
    buffer.actions[:] = rng.integers(0, 2, size=buffer.actions.shape)
    buffer.rewards[:] = 1.0
    buffer.dones[:] = rng.random(shape) < 0.01
    buffer.timeouts[:] = buffer.dones * (rng.random(shape) < 0.3)
    buffer.pos, buffer.full = int(rng.integers(0, shape[0])), True
    if isinstance(buffer, DQfDReplayBuffer) and buffer.prioritized:
        buffer.update_priorities(np.arange(buffer.size()), rng.exponential(size=buffer.size()))


def time_calls(function: Callable[[], object], repeats: int) -> np.ndarray:
    """Wall time of each call, in microseconds."""
    for _ in range(min(50, repeats)):  # warm-up
        function()
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        function()
        times[i] = time.perf_counter() - start
    return times * 1e6


def run_seed(seed: int, capacity: int, n_demo: int, batch_size: int, n_steps: int, repeats: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    np.random.seed(seed)
    demonstrations = make_demonstrations(n_demo, rng)
    kwargs: dict[str, Any] = {"device": "cpu", "n_steps": n_steps, "gamma": 0.99}

    prioritized = DQfDReplayBuffer(capacity, OBS_SPACE, ACTION_SPACE, **kwargs)
    prioritized.add_demonstrations(demonstrations)
    fill(prioritized, rng)
    mixed = DQfDReplayBuffer(capacity, OBS_SPACE, ACTION_SPACE, demo_ratio=0.25, **kwargs)
    mixed.add_demonstrations(demonstrations)
    fill(mixed, rng)
    uniform = DQfDReplayBuffer(capacity, OBS_SPACE, ACTION_SPACE, prioritized=False, **kwargs)
    uniform.add_demonstrations(demonstrations)
    fill(uniform, rng)
    sb3 = ReplayBuffer(capacity, OBS_SPACE, ACTION_SPACE, device="cpu")
    fill(sb3, rng)
    sb3_n_step = NStepReplayBuffer(capacity, OBS_SPACE, ACTION_SPACE, device="cpu", n_steps=n_steps, gamma=0.99)
    fill(sb3_n_step, rng)

    def sample_and_update(buffer: DQfDReplayBuffer) -> Callable[[], None]:
        def step() -> None:
            batch = buffer.sample(batch_size)
            buffer.update_priorities(batch.indices, rng.normal(size=batch_size))

        return step

    batch = prioritized.sample(batch_size)
    td_errors = rng.normal(size=batch_size)
    step_obs, step_action = rng.normal(size=(1, 4)), np.array([1])
    step_reward, step_done = np.array([1.0]), np.array([False])

    def add(buffer: ReplayBuffer) -> Callable[[], None]:
        return lambda: buffer.add(step_obs, step_obs, step_action, step_reward, step_done, [{}])

    operations: dict[str, Callable[[], object]] = {
        "DQfD prioritized: sample + update_priorities": sample_and_update(prioritized),
        "DQfD prioritized: sample": lambda: prioritized.sample(batch_size),
        "DQfD prioritized: update_priorities": lambda: prioritized.update_priorities(batch.indices, td_errors),
        "DQfD prioritized demo_ratio=0.25: sample + update_priorities": sample_and_update(mixed),
        "DQfD uniform: sample": lambda: uniform.sample(batch_size),
        "SB3 ReplayBuffer (1-step): sample": lambda: sb3.sample(batch_size),
        f"SB3 NStepReplayBuffer (n={n_steps}): sample": lambda: sb3_n_step.sample(batch_size),
        "DQfD prioritized: add (1 env step)": add(prioritized),
        "SB3 ReplayBuffer: add (1 env step)": add(sb3),
    }
    return {name: time_calls(operation, repeats) for name, operation in operations.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="5 seeds x 20,000 calls instead of 3 x 2,000")
    parser.add_argument("--capacity", type=int, default=1_000_000, help="total transitions, demonstrations included")
    parser.add_argument("--demonstrations", type=int, default=50_000, help="demonstration transitions")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-steps", type=int, default=10)
    args = parser.parse_args()
    th.set_num_threads(1)
    seeds, repeats = (range(5), 20_000) if args.full else (range(3), 2_000)
    load_before = os.getloadavg()
    per_seed = [run_seed(seed, args.capacity, args.demonstrations, args.batch_size, args.n_steps, repeats) for seed in seeds]
    load_after = os.getloadavg()

    reference = "SB3 ReplayBuffer (1-step): sample"
    rows: list[dict[str, Any]] = []
    for name in per_seed[0]:
        median = float(np.median([np.median(times[name]) for times in per_seed]))
        p10 = float(np.median([np.percentile(times[name], 10) for times in per_seed]))
        rows.append({"operation": name, "median_us": median, "p10_us": p10})
    reference_median = next(row["median_us"] for row in rows if row["operation"] == reference)
    for row in rows:
        row["ratio_to_sb3_sample"] = row["median_us"] / reference_median

    print(
        f"capacity {args.capacity:,} ({args.demonstrations:,} demonstrations), batch {args.batch_size}, n = {args.n_steps}, "
        f"{len(seeds)} seeds x {repeats:,} calls; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print("| operation | median (us) | 10th percentile (us) | median / SB3 ReplayBuffer.sample |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['operation']} | {row['median_us']:.0f} | {row['p10_us']:.0f} | {row['ratio_to_sb3_sample']:.2f} |")
    RESULTS.mkdir(exist_ok=True)
    result = {
        "command": "OMP_NUM_THREADS=1 python " + " ".join(sys.argv),
        "capacity": args.capacity,
        "demonstrations": args.demonstrations,
        "batch_size": args.batch_size,
        "n_steps": args.n_steps,
        "seeds": len(seeds),
        "calls_per_seed": repeats,
        "load_average_before_after": [load_before[0], load_after[0]],
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "rows": rows,
    }
    path = RESULTS / "bench_buffer.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"\nWritten {path}. Reproduce: {result['command']}")


if __name__ == "__main__":
    main()
