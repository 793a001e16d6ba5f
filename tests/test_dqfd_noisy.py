"""NoisyNet heads in DQfD (``policy_kwargs=dict(noisy=True)``): the factorized noisy layer against a brute-force
reference, when the noise is drawn and when it is off, epsilon's defaults, save/load, every policy, learning."""

import math

import numpy as np
import pytest
import torch as th
from image_env import BrightSideEnv, lit_side
from stable_baselines3.common.evaluation import evaluate_policy
from test_dqfd_dict import LitSideDictEnv, lit_half

from sb3_dqfd.common.demonstrations import record_demonstrations
from sb3_dqfd.dqfd import DQfD, DuelingQNetwork, NoisyLinear


def f(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.sqrt(np.abs(x))


def noisy_model(demonstrations="expert:2", **kwargs) -> DQfD:
    policy_kwargs = dict(net_arch=[32], noisy=True) | kwargs.pop("policy_kwargs", {})
    settings = dict(buffer_size=5_000, batch_size=16, pretrain_steps=0, learning_starts=0, seed=0) | kwargs
    return DQfD("MlpPolicy", "CartPole-v1", demonstrations=demonstrations, policy_kwargs=policy_kwargs, **settings)


def heads(q_net: DuelingQNetwork) -> list[NoisyLinear]:
    return list(q_net._noisy_layers())


def noise(q_net: DuelingQNetwork) -> list[np.ndarray]:
    return [buffer.clone().numpy() for layer in heads(q_net) for buffer in (layer.epsilon_in, layer.epsilon_out)]


def test_noisy_linear_is_the_factorized_noise_of_the_paper() -> None:
    layer = NoisyLinear(5, 3, std_init=0.5)
    # Paper's initialization (section 3.2): mu ~ U[-1/sqrt(p), 1/sqrt(p)], sigma = 0.5 / sqrt(p)
    bound = 1 / math.sqrt(5)
    assert layer.weight_mu.abs().max() <= bound and layer.bias_mu.abs().max() <= bound
    np.testing.assert_allclose(layer.weight_sigma.detach().numpy(), np.full((3, 5), 0.5 * bound), rtol=1e-6)
    np.testing.assert_allclose(layer.bias_sigma.detach().numpy(), np.full(3, 0.5 * bound), rtol=1e-6)
    with th.no_grad():  # sigma learned away from its initial constant
        layer.weight_sigma.uniform_(0.0, 1.0)
        layer.bias_sigma.uniform_(0.0, 1.0)
    th.manual_seed(7)
    layer.reset_noise()
    th.manual_seed(7)
    eps_in, eps_out = th.randn(5).double().numpy(), th.randn(3).double().numpy()  # the same draws, in the same order
    mu_w, sigma_w = layer.weight_mu.detach().double().numpy(), layer.weight_sigma.detach().double().numpy()
    mu_b, sigma_b = layer.bias_mu.detach().double().numpy(), layer.bias_sigma.detach().double().numpy()
    weight = np.empty((3, 5))
    for i in range(3):
        for j in range(5):
            weight[i, j] = mu_w[i, j] + sigma_w[i, j] * f(eps_out[i]) * f(eps_in[j])
    bias = mu_b + sigma_b * f(eps_out)
    x = th.randn(4, 5)
    expected = x.double().numpy() @ weight.T + bias
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    layer.use_noise = False
    np.testing.assert_allclose(layer(x).detach().numpy(), x.double().numpy() @ mu_w.T + mu_b, rtol=1e-5, atol=1e-6)
    # Means and standard deviations are saved, the noise is not
    assert set(layer.state_dict()) == {"weight_mu", "weight_sigma", "bias_mu", "bias_sigma"}
    with pytest.raises(ValueError, match="std_init must be >= 0"):
        NoisyLinear(5, 3, std_init=-0.1)


def test_noise_is_redrawn_per_gradient_step_for_each_network_independently() -> None:
    model = noisy_model()
    assert [type(layer) for layer in heads(model.q_net)] == [NoisyLinear, NoisyLinear]  # value and advantage heads
    observations = th.as_tensor(np.random.default_rng(0).normal(size=(8, 4)), dtype=th.float32)
    model.policy.set_training_mode(True)
    with th.no_grad():
        first = model.q_net(observations)
        assert th.equal(model.q_net(observations), first)  # the same noise until it is drawn again
    online_before, target_before = noise(model.q_net), noise(model.q_net_target)
    model.train(gradient_steps=1, batch_size=16)
    online_after, target_after = noise(model.q_net), noise(model.q_net_target)
    with th.no_grad():
        assert not th.allclose(model.q_net(observations), first)
    for before, after in zip([*online_before, *target_before], [*online_after, *target_after], strict=True):
        assert not np.allclose(before, after)
    for online, target in zip(online_after, target_after, strict=True):
        assert not np.allclose(online, target)  # independent draws


def test_acting_draws_noise_and_deterministic_predict_uses_the_mean_weights() -> None:
    model = noisy_model()
    observations = np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32)
    with th.no_grad():
        for layer in heads(model.q_net):  # noise large enough to change greedy actions
            layer.weight_sigma.fill_(1.0)
            layer.bias_sigma.fill_(1.0)
        with model.q_net.mean_weights():
            mean_actions = model.q_net(th.as_tensor(observations)).argmax(dim=1).numpy()
    before = noise(model.q_net)
    for _ in range(3):
        np.testing.assert_array_equal(model.predict(observations, deterministic=True)[0], mean_actions)
        model.q_net.reset_noise()
    assert all(layer.use_noise for layer in heads(model.q_net))  # back on after predict
    before = noise(model.q_net)
    noisy_actions, _ = model.predict(observations, deterministic=False)
    assert not any(np.allclose(old, new) for old, new in zip(before, noise(model.q_net), strict=True))  # a new draw
    assert not np.array_equal(noisy_actions, mean_actions)


def test_noisy_defaults_epsilon_to_zero_and_keeps_the_users_values() -> None:
    model = noisy_model()
    assert (model.exploration_initial_eps, model.exploration_final_eps) == (0.0, 0.0)
    model.learn(20)
    assert model.exploration_rate == 0.0
    without_demos = noisy_model(demonstrations=None)  # noise explores: no epsilon 1.0 start either
    assert (without_demos.exploration_initial_eps, without_demos.exploration_final_eps) == (0.0, 0.0)
    given = noisy_model(exploration_initial_eps=0.3, exploration_final_eps=0.05)
    assert (given.exploration_initial_eps, given.exploration_final_eps) == (0.3, 0.05)
    assert noisy_model(exploration_final_eps=0.05).exploration_initial_eps == 0.05
    plain = noisy_model(policy_kwargs=dict(noisy=False))
    assert (plain.exploration_initial_eps, plain.exploration_final_eps) == (0.01, 0.01)  # unchanged without noise


def test_save_load_round_trip_predicts_the_same(tmp_path) -> None:
    model = noisy_model(policy_kwargs=dict(noisy_std_init=0.3))
    model.learn(50)
    observations = np.random.default_rng(2).normal(size=(32, 4)).astype(np.float32)
    actions, _ = model.predict(observations, deterministic=True)
    model.save(tmp_path / "noisy")
    loaded = DQfD.load(tmp_path / "noisy")
    assert loaded.q_net.noisy and loaded.q_net.noisy_std_init == 0.3 and loaded.exploration_final_eps == 0.0
    state = loaded.q_net.state_dict()
    assert "value_head.weight_sigma" in state and not any("epsilon" in key for key in state)
    for key, value in model.q_net.state_dict().items():
        assert th.equal(state[key], value), key
    np.testing.assert_array_equal(loaded.predict(observations, deterministic=True)[0], actions)
    with th.no_grad(), model.q_net.mean_weights(), loaded.q_net.mean_weights():
        th.testing.assert_close(loaded.q_net(th.as_tensor(observations)), model.q_net(th.as_tensor(observations)))
    loaded.set_env(model.get_env())
    loaded.learn(20)


def test_plain_head_cnn_and_multi_input_policies() -> None:
    plain = noisy_model(policy_kwargs=dict(dueling=False, net_arch=[16, 16]))
    assert isinstance(plain.q_net.q_net[-1], NoisyLinear) and len(heads(plain.q_net)) == 1
    plain.learn(20)
    image_demos = record_demonstrations(lit_side, BrightSideEnv(), n_episodes=2, seed=0)
    cnn = DQfD("CnnPolicy", BrightSideEnv(), demonstrations=image_demos, buffer_size=200, batch_size=8, pretrain_steps=2,
               learning_starts=0, seed=0, policy_kwargs=dict(noisy=True, n_quantiles=4, features_extractor_kwargs=dict(
                   features_dim=16)))  # fmt: skip
    assert len(heads(cnn.q_net)) == 2 and cnn.exploration_final_eps == 0.0
    cnn.learn(10)
    dict_demos = record_demonstrations(lit_half, LitSideDictEnv(), n_episodes=2, seed=0)
    multi = DQfD("MultiInputPolicy", LitSideDictEnv(), demonstrations=dict_demos, buffer_size=200, batch_size=8,
                 pretrain_steps=2, learning_starts=0, seed=0, policy_kwargs=dict(noisy=True, net_arch=[16],
                 features_extractor_kwargs=dict(cnn_output_dim=8)))  # fmt: skip
    assert len(heads(multi.q_net)) == 2
    multi.learn(10)
    observation, _ = LitSideDictEnv().reset(seed=0)
    assert multi.predict(observation, deterministic=True)[0] in (0, 1)


def test_learns_cartpole_from_demonstrations() -> None:
    model = noisy_model(demonstrations="expert:5", pretrain_steps=2_000, batch_size=32, policy_kwargs=dict(net_arch=[64, 64]))
    model.learn(300)
    assert model.num_timesteps == 300 and model._n_updates == 2_300
    mean_return, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=3, deterministic=True)
    assert mean_return >= 200  # random play: ~20; the teacher balances to 500
