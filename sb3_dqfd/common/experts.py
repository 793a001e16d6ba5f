"""
Scripted experts for classic tasks: each maps one observation to one action that ``env.step`` accepts.

They are teachers for DQfD, good but not all perfect (MountainCar's is imperfect on purpose, so that learning can
beat it). Their returns were measured with the built-in recorder, which resets episode ``i`` with
``seed + i`` (here seeds 0..199)::

    from sb3_dqfd.common.demonstrations import record_demonstrations
    record_demonstrations("CartPole-v1", "CartPole-v1", n_episodes=200, seed=0).episode_returns

Teacher scores move with the seeds: compare against them on the same seeds.
"""

from collections.abc import Callable
from types import SimpleNamespace

import numpy as np

Expert = Callable[[np.ndarray], int]


def cartpole_expert(observation: np.ndarray) -> int:
    """
    CartPole-v1: a PD rule on the pole, push towards the side the pole falls to (angle + 0.5 * angular velocity).

    Measured over seeds 0..199: mean 500.0, min 500, max 500 (the time limit, every episode).

    :param observation: ``[cart position, cart velocity, pole angle, pole angular velocity]``
    :return: 1 (push right) or 0 (push left)
    """
    return int(observation[2] + 0.5 * observation[3] > 0)


def mountain_car_expert(observation: np.ndarray) -> int:
    """
    MountainCar-v0: push along the velocity (accelerate right when moving right or still, left otherwise).

    Imperfect on purpose (near-optimal play is about -101). Measured over seeds 0..199: mean -119.9, min -125,
    max -113; every episode reaches the flag.

    :param observation: ``[position, velocity]``
    :return: 2 (accelerate right) or 0 (accelerate left)
    """
    return 2 if observation[1] >= 0 else 0


def acrobot_expert(observation: np.ndarray) -> int:
    """
    Acrobot-v1: pump energy by applying the torque in the direction the elbow (joint 2) is turning.

    Measured over seeds 0..199: mean -85.6, min -210, max -64.

    :param observation: ``[cos θ1, sin θ1, cos θ2, sin θ2, dθ1, dθ2]``
    :return: 2 (torque +1) or 0 (torque -1)
    """
    return 2 if observation[5] > 0 else 0


# gymnasium's heuristic only reads ``env.unwrapped.continuous``; a stand-in spares building an environment
_DISCRETE_LANDER = SimpleNamespace(unwrapped=SimpleNamespace(continuous=False))


def lunar_lander_expert(observation: np.ndarray) -> int:
    """
    LunarLander-v3 (discrete actions): gymnasium's own ``heuristic`` controller.

    Measured over seeds 0..199: mean 244.8, min -196.3, max 324.8 (occasional crashes).

    :param observation: the 8 lander features (position, velocity, angle, angular velocity, leg contacts)
    :return: 0 (nothing), 1 (left engine), 2 (main engine) or 3 (right engine)
    """
    # Imported here: box2d is an optional dependency (sb3-dqfd[box2d])
    from gymnasium.envs.box2d.lunar_lander import heuristic

    return int(heuristic(_DISCRETE_LANDER, observation))


#: Built-in experts by environment id.
EXPERTS: dict[str, Expert] = {
    "CartPole-v1": cartpole_expert,
    "MountainCar-v0": mountain_car_expert,
    "Acrobot-v1": acrobot_expert,
    "LunarLander-v3": lunar_lander_expert,
}


def get_expert(env_id: str) -> Expert:
    """
    The built-in scripted expert of an environment.

    :param env_id: a key of :data:`EXPERTS`, e.g. ``"CartPole-v1"``
    :return: the expert, a function ``observation -> action``
    :raises ValueError: there is no built-in expert for ``env_id``
    """
    if env_id not in EXPERTS:
        raise ValueError(f"No built-in expert for {env_id!r}; known: {sorted(EXPERTS)}")
    return EXPERTS[env_id]
