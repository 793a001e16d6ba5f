"""Runs that continue after a stop: train_with_curve's checkpoint_dir, save_checkpoint and load_checkpoint."""

import gymnasium as gym
import pytest
from sb3_contrib import QRDQN
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

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
    """A run of ``algo`` that continues from ``checkpoint_dir`` if it holds a checkpoint (as bench_ablation.py's)."""
    model = make_model(algo)
    resumed = load_checkpoint(checkpoint_dir, model) if checkpoint_dir is not None else None
    model, curve = resumed if resumed is not None else (model, None)

    def before_learning() -> None:
        pretrainings.append(model.num_timesteps)
        if isinstance(model, DQfD):
            model.pretrain(model.pretrain_steps)

    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=100)
    stop = StopAt(stop_at) if stop_at is not None else None
    return train_with_curve(
        model, algo, 0, BUDGET, eval_env, EVAL_FREQ, 1, before_learning=before_learning, extra_callback=stop,
        checkpoint_dir=checkpoint_dir, curve=curve,
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
    assert last.timesteps == curve.timesteps and model.num_timesteps == curve.timesteps[-1]  # saved at the end too
    # The schedules stretch over the run's budget, not over what was left of it at the stop
    assert model._total_timesteps == BUDGET and model._current_progress_remaining <= 0.0
    if algo == "DQfD":
        assert model.pretrained and model.replay_buffer.n_demonstrations == make_model(algo).replay_buffer.n_demonstrations > 0
        # The agent rows of both parts but the transition of step 250: SB3 calls the callbacks (which saved the
        # checkpoint) before it stores a step's transition, as with its CheckpointCallback
        assert model.replay_buffer.n_agent_transitions == model.num_timesteps - 1


def test_a_finished_run_trains_longer_from_its_checkpoint(tmp_path):
    curve = run("DQfD", tmp_path, [])
    model, saved = load_checkpoint(tmp_path, make_model("DQfD"))
    longer = train_with_curve(
        model, "DQfD", 0, 900, make_vec_env("CartPole-v1", n_envs=1), EVAL_FREQ, 1, checkpoint_dir=tmp_path, curve=saved
    )
    assert longer.timesteps == [*curve.timesteps, 750, 900] and longer.resumed_at == [600] and model.num_timesteps == 900
    assert model._total_timesteps == 900


def test_vecnormalize_statistics_come_back_into_the_shared_objects(tmp_path):
    env = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=0))
    eval_env = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=1), training=False, norm_reward=False)
    eval_env.obs_rms = env.obs_rms  # as the command line's train shares them
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=32, seed=0)
    train_with_curve(model, "PPO", 0, 128, eval_env, 64, 1, checkpoint_dir=tmp_path)
    trained_mean, trained_count = env.obs_rms.mean.copy(), env.obs_rms.count

    fresh_env = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=0))
    fresh_eval_env = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=1), training=False, norm_reward=False)
    fresh_eval_env.obs_rms = fresh_env.obs_rms
    loaded, _ = load_checkpoint(tmp_path, PPO("MlpPolicy", fresh_env, n_steps=64, batch_size=32))
    assert loaded.get_vec_normalize_env() is fresh_env and fresh_eval_env.obs_rms is fresh_env.obs_rms
    assert fresh_env.obs_rms.count == trained_count and (fresh_env.obs_rms.mean == trained_mean).all()
    (tmp_path / "step_128" / "vecnormalize.pkl").unlink()
    with pytest.raises(ValueError, match=r"incomplete \(no vecnormalize.pkl\)"):
        load_checkpoint(tmp_path, PPO("MlpPolicy", fresh_env))


def test_an_uninterrupted_run_with_checkpoints_is_the_run_without(tmp_path):
    with_checkpoints = run("PPO", tmp_path, [])
    without = run("PPO", None, [])
    assert with_checkpoints.timesteps == without.timesteps and with_checkpoints.mean_returns == without.mean_returns
    assert with_checkpoints.resumed_at == [] and (tmp_path / LATEST_CHECKPOINT).read_text() == "step_640"


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
