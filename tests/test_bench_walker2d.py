"""benchmarks/bench_walker2d.py: the rl-zoo3 PPO baseline, the models it builds and the stability ratio."""

from pathlib import Path

import pytest
import yaml
from benchmark_helpers import load_benchmark
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecNormalize

from sb3_dqfd.common.experiment import LearningCurve
from sb3_dqfd.transformer_ppo import TransformerPPO


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_walker2d")


def test_zoo_ppo_settings_are_the_installed_rl_zoo3_entry(bench):
    rl_zoo3 = pytest.importorskip("rl_zoo3")
    entry = yaml.safe_load((Path(rl_zoo3.__file__).parent / "hyperparams" / "ppo.yml").read_text())["Walker2d-v4"]
    # The env keys are what make_zoo_baseline builds: one env under VecNormalize
    assert (entry.pop("normalize"), entry.pop("n_envs"), entry.pop("policy")) == (True, 1, "MlpPolicy")
    assert entry.pop("n_timesteps") == 1_000_000
    assert entry == bench.ZOO_PPO_WALKER2D


def test_zoo_baseline_and_transformer_ppo_models(bench):
    model, eval_env = bench.make_zoo_baseline("PPO (rl-zoo3)", seed=3)
    assert isinstance(model, PPO) and model.n_envs == 1 and (model.n_steps, model.batch_size, model.n_epochs) == (512, 32, 20)
    assert isinstance(model.get_env(), VecNormalize) and isinstance(eval_env, VecNormalize)
    # Evaluation reads the training statistics (the same object) and raw rewards
    assert eval_env.obs_rms is model.get_env().obs_rms and not eval_env.training and not eval_env.norm_reward
    model, eval_env = bench.make_transformer(TransformerPPO, seed=3)
    assert isinstance(model, TransformerPPO) and model.n_envs == 8 and not model.policy.share_encoder
    assert not isinstance(eval_env, VecNormalize)


def test_last_over_best(bench):
    curves = [
        LearningCurve("A", 0, mean_returns=[100.0, 400.0, 300.0, 200.0, 200.0, 200.0, 200.0]),  # last 5: 220 / 400
        LearningCurve("A", 1, mean_returns=[500.0, 500.0]),  # fewer evaluations than 5: all of them
        LearningCurve("A", 2, mean_returns=[10.0, 1000.0, 800.0]),
        LearningCurve("B", 0, mean_returns=[-5.0, -1.0]),  # no positive best: undefined
    ]
    ratios = bench.last_over_best(curves)
    assert ratios["A"]["per_seed"] == pytest.approx([0.55, 1.0, 0.6033333])
    assert ratios["A"]["median"] == pytest.approx(0.6033333)
    assert ratios["B"]["per_seed"][0] != ratios["B"]["per_seed"][0]  # NaN
