"""Runs that continue after a stop: train_with_curve's checkpoint_dir, save_checkpoint and load_checkpoint."""

import gymnasium as gym
import pytest
from sb3_contrib import QRDQN
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_dqfd.common.demonstrations import record_demonstrations
from sb3_dqfd.common.experiment import LATEST_CHECKPOINT, LearningCurve, load_checkpoint, save_checkpoint, train_with_curve
from sb3_dqfd.common.experts import get_expert
from sb3_dqfd.dqfd import DQfD

BUDGET, EVAL_FREQ = 600, 250


class StopAt(BaseCallback):
    """A Ctrl-C at ``step`` environment steps."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.step:
            raise KeyboardInterrupt
        return True


def make_model(algo: str) -> BaseAlgorithm:
    env = make_vec_env("CartPole-v1", n_envs=1, seed=0)
    if algo == "DQfD":
        demonstrations = record_demonstrations(get_expert("CartPole-v1"), gym.make("CartPole-v1"), 1, seed=1)
        return DQfD("MlpPolicy", env, demonstrations=demonstrations, pretrain_steps=50, batch_size=16, seed=0)
    return PPO("MlpPolicy", env, n_steps=64, batch_size=32, seed=0)


def run(algo: str, checkpoint_dir, pretrainings: list, stop_at: int | None = None) -> LearningCurve:
    model = make_model(algo)

    def before_learning() -> None:
        pretrainings.append(model.num_timesteps)
        if isinstance(model, DQfD):
            model.pretrain(model.pretrain_steps)

    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=100)
    stop = StopAt(stop_at) if stop_at is not None else None
    return train_with_curve(
        model, algo, 0, BUDGET, eval_env, EVAL_FREQ, 1, before_learning=before_learning, extra_callback=stop,
        checkpoint_dir=checkpoint_dir,
    )  # fmt: skip


@pytest.mark.parametrize("algo", ["DQfD", "PPO"])
def test_a_stopped_run_continues_from_its_last_evaluation(tmp_path, algo):
    pretrainings: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        run(algo, tmp_path, pretrainings, stop_at=400)
    assert sorted(path.name for path in tmp_path.iterdir()) == [LATEST_CHECKPOINT, "step_250"]
    curve = run(algo, tmp_path, pretrainings)
    saved_at = 250  # PPO's too, in the middle of a rollout: the resumed run collects a new one
    assert pretrainings == [0]  # not again after the stop
    assert curve.resumed_at == [saved_at] and curve.pretrained
    assert curve.timesteps[:2] == [0, saved_at] and curve.timesteps[-1] >= BUDGET
    assert len(curve.train_seconds_at) == len(curve.timesteps) and curve.train_seconds_at == sorted(curve.train_seconds_at)
    model, last = load_checkpoint(tmp_path, make_model(algo))
    assert last.timesteps == curve.timesteps[: len(last.timesteps)] and model.num_timesteps == last.timesteps[-1] > saved_at
    # The schedules stretch over the run's budget, not over what was left of it at the stop
    assert model._total_timesteps == BUDGET
    if algo == "DQfD":
        assert model.pretrained and model.replay_buffer.n_demonstrations == make_model(algo).replay_buffer.n_demonstrations > 0
        # The agent rows of both parts, but the transition of each checkpoint's own step (250, 500): SB3 calls the
        # callbacks before it stores a step's transition (as with its CheckpointCallback)
        assert model.replay_buffer.n_agent_transitions == model.num_timesteps - 2


def test_an_uninterrupted_run_with_checkpoints_is_the_run_without(tmp_path):
    with_checkpoints = run("PPO", tmp_path, [])
    without = run("PPO", None, [])
    assert with_checkpoints.timesteps == without.timesteps and with_checkpoints.mean_returns == without.mean_returns
    assert with_checkpoints.resumed_at == [] and (tmp_path / LATEST_CHECKPOINT).read_text() == "step_500"


def test_a_save_stopped_midway_keeps_the_previous_checkpoint(tmp_path):
    model = QRDQN("MlpPolicy", "CartPole-v1", learning_starts=0, seed=0)
    model.learn(100)
    save_checkpoint(tmp_path, model, LearningCurve("QR-DQN", 0, [100], [9.0], [0.0]))
    (tmp_path / "step_200").mkdir()  # a later save stopped before it named its folder in `latest`
    loaded, curve = load_checkpoint(tmp_path, QRDQN("MlpPolicy", "CartPole-v1"))
    assert loaded.num_timesteps == 100 and curve.mean_returns == [9.0] and loaded.replay_buffer.size() == 100
    (tmp_path / "step_100" / "replay_buffer.pkl").unlink()
    with pytest.raises(ValueError, match=r"step_100 is incomplete \(no replay_buffer.pkl\)"):
        load_checkpoint(tmp_path, QRDQN("MlpPolicy", "CartPole-v1"))
    assert load_checkpoint(tmp_path / "nothing", QRDQN("MlpPolicy", "CartPole-v1")) is None


def test_a_curve_saved_before_resumed_at_existed_loads():
    fields = {"label": "DQfD", "seed": 0, "timesteps": [0], "mean_returns": [1.0], "std_returns": [0.0]}
    assert LearningCurve(**fields).resumed_at == []
