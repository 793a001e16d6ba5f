"""
Scripted experts for classic tasks, MinAtar and Atari: each maps one observation to one action that ``env.step`` accepts.

They are teachers for DQfD, good but not all perfect (MountainCar's is imperfect on purpose, so that learning can
beat it). Their returns were measured with the built-in recorder, which resets episode ``i`` with
``seed + i`` (here seeds 0..199)::

    from sb3_dqfd.common.demonstrations import record_demonstrations
    record_demonstrations("CartPole-v1", "CartPole-v1", n_episodes=200, seed=0).episode_returns

Teacher scores move with the seeds: compare against them on the same seeds. The MinAtar and Atari experts were
measured the same way over seeds 0..99 (their episodes are longer), after registering the environments
(``minatar.gym.register_envs()``; ``gym.register_envs(ale_py)``).
"""

import pickle
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecNormalize

#: ``observation -> action``: an index for Discrete actions, an array for Box actions
Expert = Callable[[np.ndarray], int | np.ndarray]


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


# The same stand-in for the continuous-action lander
_CONTINUOUS_LANDER = SimpleNamespace(unwrapped=SimpleNamespace(continuous=True))


def lunar_lander_continuous_expert(observation: np.ndarray) -> np.ndarray:
    """
    LunarLanderContinuous-v3 (Box actions): gymnasium's own ``heuristic`` controller in its continuous mode.

    gymnasium 1.x registers the continuous lander as ``LunarLanderContinuous-v3`` (``LunarLander-v3`` with
    ``continuous=True`` is the same env, but an expert is looked up by id, and ``expert:N`` records in a fresh
    ``gym.make(id)`` without keyword arguments: use the ``LunarLanderContinuous-v3`` id).

    Measured over seeds 0..99: mean 280.3, min -168.8, max 315.8 (occasional crashes, as in the discrete mode).

    :param observation: the 8 lander features (position, velocity, angle, angular velocity, leg contacts)
    :return: ``[main engine, lateral engine]``, float32 in ``[-1, 1]``
    """
    from gymnasium.envs.box2d.lunar_lander import heuristic

    return np.asarray(heuristic(_CONTINUOUS_LANDER, observation), dtype=np.float32)


def _cell(channel: np.ndarray) -> tuple[int, int] | None:
    """The ``(row, column)`` of the first lit cell of a MinAtar channel, ``None`` when it is empty."""
    cells = np.argwhere(channel)
    return None if len(cells) == 0 else (int(cells[0][0]), int(cells[0][1]))


def _breakout_landing_column(observation: np.ndarray) -> int | None:
    """
    The column where MinAtar Breakout's ball reaches the paddle row, following its wall bounces (not brick hits).

    The direction comes from the trail channel (the ball's previous cell); while the ball rises, or has no direction
    yet (first step), the paddle just follows its column.
    """
    ball, trail = _cell(observation[:, :, 1]), _cell(observation[:, :, 2])
    if ball is None:
        return None
    row, column = ball
    d_column = 0 if trail is None else column - trail[1]
    if trail is None or row <= trail[0] or d_column == 0:
        return column
    while row < 9:
        row, column = row + 1, column + d_column
        if not 0 <= column <= 9:  # the game clamps the ball to the wall and reverses it
            column, d_column = min(max(column, 0), 9), -d_column
    return column


def minatar_breakout_expert(observation: np.ndarray) -> int:
    """
    MinAtar/Breakout-v1: move the paddle to the column where the falling ball will reach the bottom row.

    Imperfect (MinAtar's sticky actions and brick bounces make it miss; the ball never stops otherwise). Measured
    over seeds 0..99: mean 9.1, min 0, max 29 (random play: 0.4).

    :param observation: the ``10x10x4`` channels (paddle, ball, trail, brick), bool or uint8
        (:class:`sb3_dqfd.wrappers.MinAtarImage`)
    :return: 0 (stay), 1 (left) or 2 (right)
    """
    paddle = int(np.argmax(observation[9, :, 0]))
    target = _breakout_landing_column(observation)
    if target is None or target == paddle:
        return 0
    return 1 if target < paddle else 2


def _car_near_chicken(observation: np.ndarray, row: int) -> bool:
    """A car drives in lane ``row`` (rows 1..8; 0 is the goal, 9 the start) within one column of the chicken's (4)."""
    return 1 <= row <= 8 and bool(observation[row, 3:6, 1].any())


def minatar_freeway_expert(observation: np.ndarray) -> int:
    """
    MinAtar/Freeway-v1: walk up, but wait while a car in the next lane is within one column of the chicken, unless
    one is as close in the chicken's own lane (then going on is the safer move).

    Imperfect (it ignores the cars' speeds and directions, so it still gets hit; always walking up scores 15.7).
    Measured over seeds 0..99: mean 47.5, min 2, max 57.

    :param observation: the ``10x10x7`` channels (chicken, car, then the cars' trails by speed), bool or uint8
    :return: 0 (wait) or 1 (up)
    """
    row = int(np.argmax(observation[:, 4, 0]))  # the chicken always walks up column 4
    return 0 if _car_near_chicken(observation, row - 1) and not _car_near_chicken(observation, row) else 1


# ALE Breakout on the raw RGB frame (210x160x3): the ball and the paddle share one colour; between the bricks'
# bottom (row 93) and the paddle (row 189) only the ball has it, and the walls leave columns 8..151 to play in.
_BREAKOUT_RED = np.array([200, 72, 72], dtype=np.uint8)
_BREAKOUT_COLUMNS = slice(8, 152)
_BREAKOUT_BALL_ROWS = slice(93, 189)
_BREAKOUT_PADDLE_ROWS = slice(189, 193)
_BREAKOUT_DEAD_ZONE = 4  # pixels: closer than this the paddle stays, so that it does not jitter around the ball


def _red_columns(frame: np.ndarray, rows: slice) -> np.ndarray:
    return np.flatnonzero((frame[rows, _BREAKOUT_COLUMNS] == _BREAKOUT_RED).all(axis=2).any(axis=0))


def atari_breakout_expert(frame: np.ndarray) -> int:
    """
    ALE/Breakout-v5 (RGB frames, the default ``obs_type``): keep the paddle's centre under the ball; press FIRE
    whenever no ball is below the bricks, which serves a new ball after a lost life.

    Imperfect (it follows the ball instead of predicting its landing, and v5's sticky actions make it late).
    Measured over seeds 0..99: mean 35.3, min 8, max 272 (random play: about 1.7).

    :param frame: the ``210x160x3`` RGB screen (``env.unwrapped.ale.getScreenRGB()`` in a preprocessed pipeline,
        see :class:`AleScreenExpert`)
    :return: 0 (NOOP), 1 (FIRE), 2 (RIGHT) or 3 (LEFT)
    """
    ball, paddle = _red_columns(frame, _BREAKOUT_BALL_ROWS), _red_columns(frame, _BREAKOUT_PADDLE_ROWS)
    if len(ball) == 0 or len(paddle) == 0:
        return 1
    offset = ball.mean() - paddle.mean()
    if abs(offset) < _BREAKOUT_DEAD_ZONE:
        return 0
    return 2 if offset > 0 else 3


class AleScreenExpert:
    """
    An ALE expert for preprocessed Atari pipelines: it ignores the observation it is given (downscaled, grey,
    frame-stacked...) and reads the raw RGB screen of the environment it holds instead.

    Use it with a single ``gymnasium.Env`` (not a VecEnv, whose expert is called once per env with no way to tell
    which): ``record_demonstrations(AleScreenExpert(env, atari_breakout_expert), env, n_episodes=...)``.

    :param env: the environment the expert plays, any wrapper of an ALE environment
    :param expert: a built-in expert of an ALE game, ``RGB frame -> action``
    """

    def __init__(self, env: gym.Env, expert: Callable[[np.ndarray], int]) -> None:
        if not hasattr(env.unwrapped, "ale"):
            raise TypeError(f"AleScreenExpert needs an ALE environment (with .unwrapped.ale), got {env.unwrapped}")
        self.env = env
        self.expert = expert

    def __call__(self, observation: np.ndarray) -> int:
        return self.expert(self.env.unwrapped.ale.getScreenRGB())  # type: ignore[attr-defined]


#: The file of ``VecNormalize`` statistics saved with a model, next to it (``sb3-dqfd train``) or in the folder named
#: after it (rl-zoo3's ``<run>/<env id>.zip`` and ``<run>/<env id>/vecnormalize.pkl``)
VECNORMALIZE_FILE = "vecnormalize.pkl"


def find_vecnormalize_statistics(model_path: str | Path) -> Path | None:
    """
    :param model_path: a saved model, with or without ``.zip``
    :return: the ``VecNormalize`` statistics saved with it (see :data:`VECNORMALIZE_FILE`), None when there are none
    """
    model_file = Path(model_path)
    stem = model_file.stem if model_file.suffix == ".zip" else model_file.name
    candidates = (model_file.parent / VECNORMALIZE_FILE, model_file.parent / stem / VECNORMALIZE_FILE)
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def load_vecnormalize_statistics(path: str | Path) -> VecNormalize:
    """
    Load the ``VecNormalize`` statistics saved with a model (``VecNormalize.save``), frozen, without an environment.

    They are a pickle, as SB3 writes them: load only files you trust (your own training runs).

    :param path: the ``vecnormalize.pkl`` file
    :return: the statistics, ``training`` and ``norm_reward`` off; their ``normalize_obs`` scales observations as in
        training
    :raises TypeError: the file holds something else
    """
    with open(path, "rb") as file:
        statistics = pickle.load(file)  # a trusted file, as in SB3's VecNormalize.load
    if not isinstance(statistics, VecNormalize):
        raise TypeError(f"{path}: expected VecNormalize statistics (VecNormalize.save), got {type(statistics).__name__}")
    statistics.training, statistics.norm_reward = False, False
    return statistics


class NormalizedExpert:
    """
    A model trained under ``VecNormalize``, playing raw observations: it scales them with the training statistics
    (frozen) before ``predict``. Demonstrations recorded with it hold the raw observations, as DQfD stores them.

    ``record_demonstrations(NormalizedExpert(model, load_vecnormalize_statistics(path)), env, n_episodes)``

    :param model: the model (anything with SB3's ``predict``)
    :param statistics: its ``VecNormalize`` statistics, e.g. from :func:`load_vecnormalize_statistics`
    """

    def __init__(self, model: Any, statistics: VecNormalize) -> None:
        if statistics.observation_space != model.observation_space:
            raise ValueError(
                f"VecNormalize statistics of {statistics.observation_space} do not fit the model's observations "
                f"{model.observation_space}"
            )
        self.model = model
        self.statistics = statistics
        self.observation_space = model.observation_space
        self.action_space = model.action_space

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """SB3's ``predict`` on the observations scaled as in training."""
        return self.model.predict(self.statistics.normalize_obs(observation), state, episode_start, deterministic)


#: Built-in experts by environment id.
EXPERTS: dict[str, Expert] = {
    "CartPole-v1": cartpole_expert,
    "MountainCar-v0": mountain_car_expert,
    "Acrobot-v1": acrobot_expert,
    "LunarLander-v3": lunar_lander_expert,
    "LunarLanderContinuous-v3": lunar_lander_continuous_expert,
    "MinAtar/Breakout-v1": minatar_breakout_expert,
    "MinAtar/Freeway-v1": minatar_freeway_expert,
    "ALE/Breakout-v5": atari_breakout_expert,
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
