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

``--compact`` measures instead the memory and speed of ``CompactDQfDReplayBuffer`` on 84x84 Atari frames stacked by 4
(uint8 ``(84, 84, 4)`` observations, channels last as ``VecFrameStack`` stacks ``AtariWrapper`` frames), filled step by
step through ``add`` from SB3's ``StackedObservations`` (the stacking of ``VecFrameStack``), 4 envs, episode ends every
~1,000 steps (30% of them timeouts), demonstrations of 1,000-step episodes; then, on the same data at a size that fits
twice, the plain ``DQfDReplayBuffer`` (bulk-filled). Resident memory is read from ``/proc/self/status`` (``VmRSS`` now,
``VmHWM`` the peak) before and after each fill; ``sample(32)`` (1-step and n-step stacks, n = 10) + ``update_priorities``
is timed call by call on one thread::

    OMP_NUM_THREADS=1 python benchmarks/bench_buffer.py --compact --agent 1000000 --demonstrations 50000
"""

import argparse
import ctypes
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
from stable_baselines3.common.vec_env.stacked_observations import StackedObservations

from sb3_dqfd.common.buffers import CompactDQfDReplayBuffer, DQfDReplayBuffer
from sb3_dqfd.common.demonstrations import Demonstrations, Episode
from sb3_dqfd.common.experiment import exit_on_ctrl_c

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


ATARI_FRAME = spaces.Box(0, 255, shape=(84, 84, 1), dtype=np.uint8)
ATARI_ACTIONS = spaces.Discrete(6)
N_STACK = 4
N_ENVS = 4


def release_free_heap() -> None:
    """
    Give the C heap's free memory back to the OS (glibc keeps it: building the demonstrations leaves gigabytes of freed
    heap resident), so that the resident memory measured is the buffer's.
    """
    if platform.system() == "Linux":
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def array_bytes(obj: Any) -> int:
    """Bytes of the numpy arrays an object owns (views excluded), through dicts and attribute-holding objects."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes if obj.base is None else 0
    if isinstance(obj, dict):
        return sum(array_bytes(value) for value in obj.values())
    if hasattr(obj, "__dict__") and not isinstance(obj, (type, th.device, spaces.Space)):
        return sum(array_bytes(value) for value in vars(obj).values())
    return 0


def resident_gib() -> dict[str, float]:
    """Resident memory of this process now (``VmRSS``) and at its peak (``VmHWM``), in GiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[name].split()[0]) / 2**20 for key, name in (("now", "VmRSS"), ("peak", "VmHWM"))}


class AtariStream:
    """Stacked observations of 4 envs as VecFrameStack produces them, from a pool of random frames."""

    def __init__(self, rng: np.random.Generator, n_envs: int = N_ENVS) -> None:
        self.rng, self.n_envs = rng, n_envs
        self.pool = rng.integers(0, 256, size=(4099, *ATARI_FRAME.shape), dtype=np.uint8)
        self.stacker = StackedObservations(n_envs, N_STACK, ATARI_FRAME, "last")
        self.space = self.stacker.stacked_observation_space
        self.count = 0
        self.obs = self.stacker.reset(self.frames())

    def frames(self) -> np.ndarray:
        self.count += self.n_envs
        return self.pool[np.arange(self.count - self.n_envs, self.count) % len(self.pool)]

    def step(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """``obs, next_obs, done, infos`` of one step, as SB3's ``_store_transition`` passes them to ``add``."""
        done = self.rng.random(self.n_envs) < 1e-3
        terminal = self.frames()
        infos: list[dict[str, Any]] = [
            {"terminal_observation": terminal[env], "TimeLimit.truncated": bool(self.rng.random() < 0.3)} if done[env] else {}
            for env in range(self.n_envs)
        ]
        stacked, infos = self.stacker.update(self.frames(), done, infos)
        next_obs = stacked.copy()
        for env in np.flatnonzero(done):
            next_obs[env] = infos[env]["terminal_observation"]
        obs, self.obs = self.obs, stacked
        return obs, next_obs, done, infos


def atari_demonstrations(n_transitions: int, rng: np.random.Generator) -> Demonstrations:
    """Terminated 1,000-step episodes (the last one shorter) of zero-padded stacks."""
    episodes = []
    for start in range(0, n_transitions, 1000):
        length = min(1000, n_transitions - start)
        stream = AtariStream(rng, n_envs=1)
        stream.rng = np.random.default_rng(0)  # no episode end inside a demonstration
        observations = np.empty((length + 1, *stream.space.shape), dtype=np.uint8)
        observations[0] = stream.obs[0]
        for t in range(length):
            observations[t + 1] = stream.stacker.update(stream.frames(), np.zeros(1, dtype=bool), [{}])[0][0]
        episodes.append(Episode(observations, rng.integers(0, 6, size=length), np.ones(length, dtype=np.float32), True, False))
    return Demonstrations(episodes, stream.space, ATARI_ACTIONS)


def measure_buffer(
    buffer: DQfDReplayBuffer, stream: AtariStream, n_demo: int, rng: np.random.Generator, repeats: int
) -> dict[str, Any]:
    """
    Fill ``buffer`` (demonstrations, then ``add`` until the agent ring is full), then time ``sample(32)`` +
    ``update_priorities`` and each part; resident memory before and after the fill.
    """
    release_free_heap()
    before = resident_gib()
    start = time.perf_counter()
    # Built here so that its memory is freed before the measurement after the fill
    buffer.add_demonstrations(atari_demonstrations(n_demo, rng))
    demo_seconds = time.perf_counter() - start
    actions, rewards = np.zeros((stream.n_envs, 1)), np.ones(stream.n_envs, dtype=np.float32)
    add_seconds = 0.0
    for _ in range(buffer.buffer_size):
        obs, next_obs, done, infos = stream.step()
        start = time.perf_counter()
        buffer.add(obs, next_obs, actions, rewards, done, infos)
        add_seconds += time.perf_counter() - start
    after_untrimmed = resident_gib()
    release_free_heap()
    after = resident_gib()
    buffer.update_priorities(np.arange(buffer.size()), rng.exponential(size=buffer.size()))
    batch = buffer.sample(32)
    td_errors = rng.normal(size=32)

    def sample_and_update() -> None:
        sampled = buffer.sample(32)
        buffer.update_priorities(sampled.indices, td_errors)

    times = {
        "sample(32) + update_priorities": time_calls(sample_and_update, repeats),
        "sample(32)": time_calls(lambda: buffer.sample(32), repeats),
        "update_priorities(32)": time_calls(lambda: buffer.update_priorities(batch.indices, td_errors), repeats),
    }
    row = {
        "buffer": type(buffer).__name__,
        "agent_transitions": buffer.n_agent_transitions,
        "demonstrations": buffer.n_demonstrations,
        "add_demonstrations_seconds (incl. building them)": demo_seconds,
        "add_us_per_call (n_envs transitions)": add_seconds / buffer.buffer_size * 1e6,
        "resident_gib_before_fill": before["now"],
        "resident_gib_after_fill": after["now"],
        "resident_gib_after_fill_before_malloc_trim": after_untrimmed["now"],
        "peak_resident_gib_after_fill": after["peak"],
        "resident_bytes_per_transition": (after["now"] - before["now"]) * 2**30 / buffer.size(),
        "array_bytes_per_transition": array_bytes(buffer) / buffer.size(),
        **{f"{op} median_us": float(np.median(t)) for op, t in times.items()},
        **{f"{op} p10_us": float(np.percentile(t, 10)) for op, t in times.items()},
    }
    print(json.dumps(row, indent=2), flush=True)
    return row


def run_compact(n_agent: int, n_demo: int, n_plain_agent: int, n_plain_demo: int, repeats: int) -> list[dict[str, Any]]:
    """Compact buffer at full size, then compact and plain buffers at a size where the plain one fits."""
    rng = np.random.default_rng(0)
    np.random.seed(0)
    rows = []
    for compact, n_agent_transitions, n_demo_transitions in (
        (True, n_agent, n_demo),
        (True, n_plain_agent, n_plain_demo),
        (False, n_plain_agent, n_plain_demo),
    ):
        stream = AtariStream(rng)
        kwargs: dict[str, Any] = {"device": "cpu", "n_envs": N_ENVS, "n_steps": 10, "gamma": 0.99}
        capacity = n_demo_transitions + n_agent_transitions
        buffer: DQfDReplayBuffer
        if compact:
            buffer = CompactDQfDReplayBuffer(capacity, stream.space, ATARI_ACTIONS, n_stack=N_STACK, **kwargs)
        else:
            buffer = DQfDReplayBuffer(capacity, stream.space, ATARI_ACTIONS, **kwargs)
        rows.append(measure_buffer(buffer, stream, n_demo_transitions, rng, repeats))
        del buffer
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="5 seeds x 20,000 calls instead of 3 x 2,000")
    parser.add_argument("--capacity", type=int, default=1_000_000, help="total transitions, demonstrations included")
    parser.add_argument("--demonstrations", type=int, default=50_000, help="demonstration transitions")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-steps", type=int, default=10)
    parser.add_argument("--compact", action="store_true", help="CompactDQfDReplayBuffer memory and speed on Atari frames")
    parser.add_argument("--agent", type=int, default=1_000_000, help="--compact: agent transitions of the full-size fill")
    parser.add_argument("--plain-agent", type=int, default=40_000, help="--compact: agent transitions, side by side")
    parser.add_argument("--plain-demonstrations", type=int, default=4_000, help="--compact: demonstrations, side by side")
    args = parser.parse_args()
    th.set_num_threads(1)
    if args.compact:
        main_compact(args)
        return
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


def main_compact(args: argparse.Namespace) -> None:
    repeats = 20_000 if args.full else 2_000
    load_before = os.getloadavg()
    rows = run_compact(args.agent, args.demonstrations, args.plain_agent, args.plain_demonstrations, repeats)
    load_after = os.getloadavg()
    result = {
        "command": "OMP_NUM_THREADS=1 python " + " ".join(sys.argv),
        "observation": "uint8 (84, 84, 4), 4 stacked 84x84 frames (channels last)",
        "n_envs": N_ENVS,
        "n_steps": 10,
        "batch_size": 32,
        "calls": repeats,
        "load_average_before_after": [load_before[0], load_after[0]],
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "bench_buffer_compact.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"\nWritten {path}. Reproduce: {result['command']}")


if __name__ == "__main__":
    exit_on_ctrl_c(main)
